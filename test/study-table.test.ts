// The study table against hand-made run results: means, sample standard deviations, the best
// value per column marked (ties too, lower-is-better for time), missing seeds noted, and the
// Markdown, CSV, JSON and LaTeX forms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStudyResults, writeStudyTables, type StudyPlanLike } from '../src/report/study-output.js';
import { sampleStd, type Stat } from '../src/report/study-table.js';

const root = mkdtempSync(join(tmpdir(), 'graft-table-'));

interface Made { method: string; target: string; rank: number | null; params: number; percent: number; seconds: number; acc: number; f1: number; map: number; perClass: number }

/** A finished run folder as graft train leaves it, as far as the table reads it. */
function makeRun(dir: string, m: Made): void {
  mkdirSync(dir, { recursive: true });
  const summary = { model: 'm', method: m.method, target: m.target, rank: m.rank, trainableParams: m.params, totalParams: 1000000, trainablePercent: m.percent, trainSeconds: m.seconds, accuracy: m.acc, weightedF1: m.f1, macroF1: m.f1, mAP: m.map, latencyMs: 1, throughput: 1, peakMemoryMB: 1, outputDir: dir };
  const metrics = { accuracy: m.acc, weightedF1: m.f1, macroF1: m.f1, mAP: m.map, perClass: [], confusion: [[1, 0], [0, 1]], count: 2 };
  writeFileSync(join(dir, 'report.json'), JSON.stringify({ summary, classes: ['a', 'b'], metrics }));
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ config: { method: m.method, data: { perClass: m.perClass } }, classes: ['a', 'b'] }));
}

const plan: StudyPlanLike = {
  name: 'hand_made', axes: ['method', 'adapter.r', 'data.perClass'], columns: ['macroF1'], seeds: [0, 1, 2],
  rows: [{ id: 'lora8', label: 'lora 8', baseline: false }, { id: 'dora16', label: 'dora 16', baseline: false }, { id: 'full', label: 'full', baseline: true }],
  cells: ['lora8', 'dora16', 'full'].flatMap((row) => [0, 1, 2].map((seed) => ({ id: `${row}-s${seed}`, row, seed, dir: `cells/${row}-s${seed}` }))),
};

test('study table: means, sample std, best per column, missing seeds, four formats', () => {
  const cell = (id: string, m: Partial<Made>) => makeRun(join(root, 'cells', id), { method: 'lora', target: 'q_proj', rank: 8, params: 1000, percent: 0.1, seconds: 10, acc: 0.8, f1: 0.8, map: 0.8, perClass: 10, ...m });
  cell('lora8-s0', { acc: 0.80, f1: 0.70, map: 0.90, seconds: 10 });
  cell('lora8-s1', { acc: 0.90, f1: 0.80, map: 0.90, seconds: 12 });
  cell('lora8-s2', { acc: 0.85, f1: 0.75, map: 0.90, seconds: 14 });
  cell('dora16-s0', { method: 'dora', rank: 16, params: 2500, percent: 0.25, acc: 0.70, f1: 0.85, map: 0.90, seconds: 30 });
  cell('dora16-s1', { method: 'dora', rank: 16, params: 2500, percent: 0.25, acc: 0.74, f1: 0.81, map: 0.90, seconds: 32 });
  // dora16-s2 did not finish.
  cell('full-s0', { method: 'full', target: 'all', rank: null, params: 1000000, percent: 100, acc: 0.5, f1: 0.5, map: 0.5, seconds: 5 });
  cell('full-s1', { method: 'full', target: 'all', rank: null, params: 1000000, percent: 100, acc: 0.6, f1: 0.6, map: 0.6, seconds: 7 });
  cell('full-s2', { method: 'full', target: 'all', rank: null, params: 1000000, percent: 100, acc: 0.7, f1: 0.7, map: 0.7, seconds: 9 });

  const { table, missing } = readStudyResults(root, plan);
  assert.deepEqual(missing, ['dora16-s2']);
  assert.deepEqual(table.columns.map((c) => c.header), ['method', 'target', 'rank', 'data.perClass', 'trainable params (%)', 'training time (s)', 'test accuracy (%)', 'weighted F1 (%)', 'mAP (%)', 'macro F1 (%)']);
  const [lora, dora, full] = table.rows;
  const acc = lora!.cells['accuracy'] as Stat;
  assert.ok(Math.abs(acc.mean - 0.85) < 1e-12);
  assert.ok(Math.abs(acc.std! - 0.05) < 1e-12); // sample std of .80 .90 .85
  assert.equal(acc.best, true);
  assert.equal((dora!.cells['accuracy'] as Stat).n, 2);
  assert.ok(Math.abs((dora!.cells['accuracy'] as Stat).std! - Math.sqrt(0.0008)) < 1e-12);
  assert.equal((dora!.cells['weightedF1'] as Stat).best, true);
  // mAP: lora and dora tie at 90.00 → both marked; full is not.
  assert.deepEqual(table.rows.map((r) => (r.cells['mAP'] as Stat).best), [true, true, false]);
  // Training time: lower is better.
  assert.deepEqual(table.rows.map((r) => (r.cells['trainSeconds'] as Stat).best), [false, false, true]);
  assert.equal(full!.cells['method'], 'full');
  assert.equal(full!.cells['rank'], '—');
  assert.equal(lora!.cells['data.perClass'], '10');
  assert.ok(Math.abs(sampleStd([2, 4, 4, 4, 5, 5, 7, 9])! - 2.138089935299395) < 1e-12);
  assert.equal(sampleStd([1]), null);

  writeStudyTables(root, table);
  const md = readFileSync(join(root, 'table.md'), 'utf8');
  assert.match(md, /\| lora \| q_proj \| 8 \| 10 \| 1,000 \(0\.10%\) \| 12\.0 ± 2\.0 \| \*\*85\.00 ± 5\.00\*\* \| 75\.00 ± 5\.00 \| \*\*90\.00 ± 0\.00\*\* \|/);
  assert.match(md, /\| dora \(2 of 3 seeds\) \| q_proj \| 16 \|/);
  assert.match(md, /\| full \| all \| — \| 10 \| 1,000,000 \(100\.00%\) \| \*\*7\.0 ± 2\.0\*\* \| 60\.00 ± 10\.00 \|/);
  const csv = readFileSync(join(root, 'table.csv'), 'utf8').trim().split('\n');
  assert.equal(csv[0], 'row,seeds,method,target,rank,data.perClass,trainable_params,trainable_percent,trainSeconds_mean,trainSeconds_std,trainSeconds_best,accuracy_mean,accuracy_std,accuracy_best,weightedF1_mean,weightedF1_std,weightedF1_best,mAP_mean,mAP_std,mAP_best,macroF1_mean,macroF1_std,macroF1_best');
  const loraCsv = csv[1]!.split(',');
  assert.equal(loraCsv[0], 'lora 8');
  assert.ok(Math.abs(Number(loraCsv[11]) - 0.85) < 1e-12 && Math.abs(Number(loraCsv[12]) - 0.05) < 1e-12 && loraCsv[13] === '1');
  const json = JSON.parse(readFileSync(join(root, 'table.json'), 'utf8')) as { rows: { cells: Record<string, { best?: boolean }> }[] };
  assert.equal(json.rows[1]!.cells['weightedF1']!.best, true);
  const tex = readFileSync(join(root, 'table.tex'), 'utf8');
  assert.match(tex, /\\textbf\{85\.00 \$\\pm\$ 5\.00\}/);
  assert.match(tex, /data\.perClass & trainable params \(\\%\)/);
  assert.match(tex, /\\begin\{tabular\}\{llllrrrrrr\}/);
});
