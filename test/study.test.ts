// Studies: the study file's validation and expansion (grid product, paired values, baselines,
// seeds), and `graft study` killed with SIGKILL twice in the middle of cells continuing to the
// table of an uninterrupted study, every cell trained to completion once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../src/backends/all.js';
import '../src/models/all.js';
import { loadStudyFile, parseStudy } from '../src/study/study-file.js';
import { demoStudy } from '../src/cli/demo.js';
import { ConfigError } from '../src/errors.js';
import { writeTwoClassFolder } from './helpers/tiny-runs.js';

const root = mkdtempSync(join(tmpdir(), 'graft-study-'));
const p = (...parts: string[]) => join(root, ...parts);
const CLI = 'dist/src/cli/main.js';

const base = { model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, adapter: { targets: 'conv1' }, data: { source: '/nowhere', perClass: 3, imageSize: 32 }, train: { epochs: 3, batchSize: 2 } };

test('study file: the grid is the product of its keys, paired keys give rows, baselines and seeds', () => {
  const s = parseStudy({
    name: 'x', base,
    grid: { 'method+adapter.targets+adapter.r': [['lora', ['conv1'], 8], ['dora', 'conv1', 16]], 'data.perClass': [3, 4] },
    baselines: { frozen: { method: 'linear-probe' }, full: { method: 'full', 'train.lr': 1e-4 } },
    seeds: [0, 5],
  });
  assert.deepEqual(s.axes, ['method', 'adapter.targets', 'adapter.r', 'data.perClass']);
  assert.deepEqual(s.rows.map((r) => r.label), ['lora conv1 8 3', 'lora conv1 8 4', 'dora conv1 16 3', 'dora conv1 16 4', 'frozen', 'full']);
  assert.equal(s.cells.length, 12);
  const c = s.cells.find((x) => x.id === 'dora_conv1_16_4-s5')!;
  assert.equal(c.config.method, 'dora');
  assert.equal(c.config.adapter.r, 16);
  assert.equal(c.config.data.perClass, 4);
  assert.equal(c.config.train.seed, 5);
  assert.equal(c.config.train.batchSize, 2);
  const full = s.cells.find((x) => x.id === 'full-s0')!;
  assert.equal(full.baseline, true);
  assert.equal(full.config.train.lr, 1e-4);
  assert.equal(full.config.data.perClass, 3);
  // No grid and no baselines: the base configuration once per seed.
  assert.deepEqual(parseStudy({ base, seeds: [1, 2] }).cells.map((x) => x.id), ['base-s1', 'base-s2']);
});

test('study file: errors name the field', () => {
  const bad = (raw: unknown, re: RegExp) => assert.throws(() => parseStudy(raw, 's.json'), (e: unknown) => e instanceof ConfigError && re.test((e as Error).message), String(re));
  bad({ base, grid: { 'adapter.rr': [1] } }, /grid cell adapter\.rr\[0\] → adapter: Unrecognized key: "rr"/);
  bad({ base, grid: { 'adapter.r': [8, -1] } }, /grid cell adapter\.r\[1\] → adapter\.r: Too small/);
  bad({ base, grid: { 'method+adapter.r': [['lora', 8], ['lora']] } }, /grid\["method\+adapter\.r"\]\[1\]: paired values must be a list of 2/);
  bad({ base, grid: { 'nonsense.x': [1] } }, /'nonsense\.x' is no field of the run configuration/);
  bad({ base, grid: { 'train.seed': [1] } }, /'train\.seed' is set by the study itself/);
  bad({ base, grid: { method: ['lora', 'nope'] } }, /grid cell method\[1\] → method: Invalid option/);
  bad({ base, grid: { method: [] } }, /grid\.method: give at least one value/);
  bad({ base, seeds: [1, 1] }, /seeds: \[1,1\] repeats a seed/);
  bad({ base: { ...base, output: 'x' } }, /base\.output: a study places each cell/);
  bad({ base, baselines: { s: { method: 'scratch', weights: 'w.safetensors' } } }, /baselines\.s → weights: method 'scratch'/);
  bad({ base, colums: [] }, /\(study\): Unrecognized key: "colums"/);
  bad({ base, columns: ['accuracy', 'not a path'] }, /columns: 'not a path' is neither a result/);
});

test('examples: the first paper\'s QLoRA/DoRA table and the demo as study files', () => {
  const paper = loadStudyFile('examples/qlora-dora-table.json');
  assert.deepEqual(paper.rows.map((r) => r.label), [
    'lora nf4 q_proj 8', 'lora nf4 q_proj 16', 'lora nf4 all-linear 16', 'lora nf4 all-linear 64', 'dora q_proj 8', 'dora q_proj 16', 'dora all-linear 16', 'dora all-linear 64',
    'resnet18-scratch', 'vit-small-scratch', 'frozen', 'full',
  ]);
  const cell = (id: string) => paper.cells.find((c) => c.id === id)!.config;
  assert.deepEqual(cell('dora_all-linear_64-s0').adapter.targets, 'all-linear');
  assert.equal(cell('dora_all-linear_64-s0').adapter.r, 64);
  assert.deepEqual(cell('lora_nf4_q_proj_8-s0').adapter.targets, ['q_proj']);
  assert.deepEqual(cell('lora_nf4_q_proj_8-s0').quantize, { type: 'nf4', doubleQuant: false, blocksize: 64 });
  assert.equal(cell('dora_q_proj_8-s0').quantize, undefined);
  assert.equal(cell('lora_nf4_q_proj_8-s0').train.lr, 1e-4);
  assert.equal(cell('lora_nf4_q_proj_8-s0').train.gradAccumulation, 8);
  assert.deepEqual(cell('lora_nf4_q_proj_8-s0').data.ratio, [98, 1]);
  // null removes a base field: the scratch rows have no weights and graft's default learning rate.
  assert.equal(cell('resnet18-scratch-s0').weights, undefined);
  assert.equal(cell('resnet18-scratch-s0').train.lr, undefined);
  assert.equal(cell('resnet18-scratch-s0').model, 'resnet18');
  assert.equal(cell('full-s0').weights, 'hf:facebook/dinov2-small');
  // The demo builds the same study as its file.
  const file = loadStudyFile('examples/demo-comparison.json');
  const built = demoStudy({ perClass: 10, methods: ['linear-probe', 'lora', 'dora', 'full', 'scratch'], output: 'x', seed: 0 });
  assert.deepEqual(file.cells.map((c) => [c.id, c.config]), built.cells.map((c) => [c.id, c.config]));
});

interface Done { status: number | null; signal: NodeJS.Signals | null; out: string }

/** Runs `graft study`; `killWhen` is polled every 20 ms and a true answer kills the process with SIGKILL. */
function study(args: string[], killWhen?: () => boolean): Promise<Done> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, 'study', ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = killWhen ? setInterval(() => { if (killWhen()) child.kill('SIGKILL'); }, 20) : null;
    child.on('close', (status, signal) => {
      if (timer) clearInterval(timer);
      done({ status, signal, out });
    });
  });
}

/** The table without the columns that measure time. */
function table(dir: string): unknown {
  const t = JSON.parse(readFileSync(join(dir, 'table.json'), 'utf8')) as { rows: { cells: Record<string, unknown> }[] };
  for (const r of t.rows) delete r.cells['trainSeconds'];
  return t.rows;
}

const hasCheckpoint = (dir: string) => existsSync(dir) && readdirSync(dir).some((n) => /^checkpoint-\d+$/.test(n));

test('graft study: killed with SIGKILL twice mid-cell, it continues to the uninterrupted table, each cell trained once', async () => {
  await writeTwoClassFolder(p('img'));
  writeFileSync(p('study.json'), JSON.stringify({
    name: 'tiny', base: { ...base, data: { ...base.data, source: p('img') }, adapter: { targets: 'conv1', dropout: 0.3 } },
    grid: { 'method+adapter.r': [['lora', 4], ['dora', 8]] }, baselines: { frozen: { method: 'linear-probe' } }, seeds: [1, 2],
  }));
  const ref = await study([p('study.json'), '--output', p('ref')]);
  assert.equal(ref.status, 0, ref.out);
  for (const f of ['table.md', 'table.csv', 'table.json', 'table.tex', 'report.html', 'figures/pareto.svg', 'figures/pareto.png', 'cells/frozen-s2/report.html', 'cells/lora_4-s1/figures/loss.png']) assert.ok(existsSync(p('ref', f)), f);

  const cells = ['lora_4-s1', 'lora_4-s2', 'dora_8-s1', 'dora_8-s2', 'frozen-s1', 'frozen-s2'];
  const first = await study([p('study.json'), '--output', p('cut')], () => hasCheckpoint(p('cut', 'cells', cells[2]!)));
  assert.equal(first.signal, 'SIGKILL', first.out);
  const second = await study([p('study.json'), '--output', p('cut')], () => hasCheckpoint(p('cut', 'cells', cells[4]!)));
  assert.equal(second.signal, 'SIGKILL', second.out);
  assert.match(second.out, /2 finished before/);
  assert.match(second.out, new RegExp(`cell ${cells[2]} \\(resuming from checkpoint-\\d+\\)`));
  const third = await study([p('study.json'), '--output', p('cut')]);
  assert.equal(third.status, 0, third.out);
  assert.match(third.out, new RegExp(`cell ${cells[4]} \\(resuming from checkpoint-\\d+\\)`));
  assert.match(third.out, /· \d+ left · ETA \d+s/);
  const all = first.out + second.out + third.out;
  for (const c of cells) assert.equal(all.split(`cell ${c} finished in`).length - 1, 1, `${c} trained to completion once`);
  assert.deepEqual(table(p('cut')), table(p('ref')));
  // A finished study run again trains nothing.
  const again = await study([p('study.json'), '--output', p('cut')]);
  assert.equal(again.status, 0, again.out);
  assert.doesNotMatch(again.out, /finished in/);
  assert.match(again.out, /6 finished before/);
});
