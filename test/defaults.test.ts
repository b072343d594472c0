// graft's defaults on data it was not tuned on: `graft train` with only the obvious flags learns
// on a folder of Adwaita device icons (test/helpers/icon-folder.ts); the watch on learning warns
// on a run made not to learn; --deterministic gives the metrics an AVX2-only CPU gives; and the
// rules of train/defaults.ts and the range test's suggestion, one by one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultImageSize, defaultValFraction, MIN_STEPS, planSteps } from '../src/train/defaults.js';
import { suggest } from '../src/train/lr-finder.js';
import { iconFolderUnavailable, makeIconFolder } from './helpers/icon-folder.js';

const root = mkdtempSync(join(tmpdir(), 'graft-defaults-'));
const icons = join(root, 'icons');
const skip = iconFolderUnavailable() ?? false;
let made: Promise<void> | null = null;
const iconFolder = () => (made ??= makeIconFolder(icons, 20));

function graft(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 400_000, env });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

const steps = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

test('defaults: steps have a floor however small the data; epochs and steps still choose', () => {
  assert.deepEqual(planSteps({ batchSize: 16, gradAccumulation: 1 }, 32), { steps: MIN_STEPS, epochs: MIN_STEPS / 2, stepsPerEpoch: 2 });
  assert.deepEqual(planSteps({ batchSize: 16, gradAccumulation: 1 }, 16_000), { steps: 10_000, epochs: 10, stepsPerEpoch: 1000 });
  assert.equal(planSteps({ epochs: 3, batchSize: 16, gradAccumulation: 1 }, 32).steps, 6);
  assert.equal(planSteps({ steps: 5, batchSize: 16, gradAccumulation: 1 }, 32).steps, 6, 'rounded up to whole epochs');
  assert.equal(defaultValFraction([10, 12]).valFraction, 0.2);
  const none = defaultValFraction([10, 3]);
  assert.equal(none.valFraction, 0);
  assert.match(none.note!, /no validation split: the smallest class has 3/);
  assert.equal(defaultImageSize(224, [28, 28]), 64);
  assert.equal(defaultImageSize(224, [48]), 96);
  assert.equal(defaultImageSize(299, [28, 28], 75), 96, "InceptionV3's smallest input (75) rounds up to 96");
  assert.equal(defaultImageSize(224, [200]), undefined, 'images near the model size run at its size');
});

test('lr finder: the steepest descent of the smoothed loss, fastai\'s min-loss/10 without one', () => {
  const lrs = Array.from({ length: 60 }, (_, i) => 1e-6 * 10 ** (i / 10));
  // Flat, then a steep fall around index 35, then a rise.
  const falling = lrs.map((lr, i) => ({ step: i, lr, loss: 0, smoothed: i < 30 ? 2.3 : i < 40 ? 2.3 - 0.2 * (i - 30) : 0.3 + 0.5 * (i - 40) }));
  const s = suggest(falling);
  assert.equal(s.rule, 'steepest-descent');
  assert.ok(s.lr > lrs[30]! && s.lr <= lrs[40]!, `suggested ${s.lr}`);
  const rising = lrs.map((lr, i) => ({ step: i, lr, loss: 0, smoothed: 1 + i }));
  const r = suggest(rising);
  assert.equal(r.rule, 'min-loss/10');
  assert.equal(r.lr, lrs[0]! / 10);
});

test('defaults: graft train with only the obvious flags learns on icons it was never tuned on', { skip }, async () => {
  await iconFolder();
  const run = join(root, 'run-defaults');
  const t = graft(['train', '--model', 'nsfwjs_mobilenet_v2', '--data', icons, '--per-class', '10', '--method', 'lora', '--output', run]);
  assert.equal(t.status, 0, t.err + t.out);
  assert.match(t.out, /^settings: method lora · lr 0\.003 · 150 steps .* val 0\.2 · head-from features · input 64 · targets 35 layers/m);
  assert.doesNotMatch(t.out, /warning: the training loss/);
  const report = JSON.parse(readFileSync(join(run, 'report.json'), 'utf8')) as { summary: { accuracy: number } };
  // 4 classes: chance is 25%.
  assert.ok(report.summary.accuracy >= 0.7, `test accuracy ${report.summary.accuracy}`);
  const saved = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as { config: { headFrom: string; train: { lr: number; steps: number; epochs: number }; data: { valFraction: number; imageSize: number }; adapter: { targets: string[] } } };
  assert.equal(saved.config.headFrom, 'features');
  assert.deepEqual([saved.config.train.lr, saved.config.train.steps, saved.config.data.valFraction, saved.config.data.imageSize], [0.003, 150, 0.2, 64]);
  assert.ok(saved.config.adapter.targets.includes('block_16_project') && !saved.config.adapter.targets.some((p) => p.includes('depthwise')));
  assert.match(t.out, /kept the best validation checkpoint: epoch \d+ of 75/);
});

test('learning watch: a run made not to learn (lr 1e-9) is told why and what to try', { skip }, async () => {
  await iconFolder();
  const run = join(root, 'run-stuck');
  const t = graft(['train', '--model', 'nsfwjs_mobilenet_v2', '--data', icons, '--per-class', '10', '--method', 'lora', '--lr', '1e-9', '--steps', '30', '--output', run]);
  assert.equal(t.status, 0, t.err + t.out);
  assert.match(t.out, /warning: the training loss has not fallen in 15 steps/);
  assert.match(t.out, /--lr auto/);
  assert.match(t.out, /--targets/);
  assert.match(t.out, /--head-from features/);
  assert.match(t.out, /--steps/);
});

test('--deterministic: the metrics an AVX2-only CPU gives, on a CPU with AVX-512 too', { skip }, async () => {
  await iconFolder();
  const args = (out: string) => ['train', '--model', 'nsfwjs_mobilenet_v2', '--data', icons, '--per-class', '4', '--test-per-class', '4', '--method', 'lora',
    '--steps', '4', '--batch-size', '8', '--val-fraction', '0', '--output', join(root, out)];
  const base: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: '2' };
  delete base['GRAFT_SIMD'];
  delete base['ONEDNN_MAX_CPU_ISA'];
  const det = graft([...args('det'), '--deterministic'], base);
  assert.equal(det.status, 0, det.err + det.out);
  // What an AVX2-only CPU runs without the flag: graft's AVX2 kernels and oneDNN's AVX2 code.
  const avx2 = graft(args('avx2'), { ...base, GRAFT_SIMD: 'avx2', ONEDNN_MAX_CPU_ISA: 'AVX2' });
  assert.equal(avx2.status, 0, avx2.err + avx2.out);
  const losses = (dir: string) => steps(join(root, dir)).filter((e) => e['loss'] !== undefined).map((e) => e['loss']);
  assert.deepEqual(losses('det'), losses('avx2'));
  const acc = (dir: string) => (JSON.parse(readFileSync(join(root, dir, 'report.json'), 'utf8')) as { metrics: unknown }).metrics;
  assert.deepEqual(acc('det'), acc('avx2'));
  const clash = graft([...args('clash'), '--deterministic'], { ...base, GRAFT_SIMD: 'avx512' });
  assert.equal(clash.status, 1);
  assert.match(clash.err, /--deterministic needs GRAFT_SIMD=avx2/);
});

test('--lr auto: the range test runs on the training split, its choice trains the run and is saved with its curve', { skip }, async () => {
  await iconFolder();
  const run = join(root, 'run-lr-auto');
  const t = graft(['train', '--model', 'nsfwjs_mobilenet_v2', '--data', icons, '--per-class', '10', '--test-per-class', '4', '--method', 'lora', '--lr', 'auto', '--steps', '20', '--output', run]);
  assert.equal(t.status, 0, t.err + t.out);
  const found = JSON.parse(readFileSync(join(run, 'lr_find.json'), 'utf8')) as { suggestion: number; rule: string; curve: { lr: number; loss: number }[] };
  assert.ok(found.curve.length >= 20, `${found.curve.length} points on the curve`);
  assert.ok(found.suggestion > 1e-7 && found.suggestion < 1, `suggested ${found.suggestion}`);
  assert.match(t.out, new RegExp(`lr auto: ${String(found.suggestion).replace('.', '\\.')} \\(${found.rule}`));
  assert.match(t.out, new RegExp(`^settings: method lora · lr ${String(found.suggestion).replace('.', '\\.')} · `, 'm'));
  const saved = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as { config: { train: { lr: number } } };
  assert.equal(saved.config.train.lr, found.suggestion);
  const svg = readFileSync(join(run, 'lr_find.svg'), 'utf8');
  assert.match(svg, /^<svg[^>]* viewBox=/);
  assert.match(svg, /<polyline [^>]*stroke-width="2" points="[\d., ]+"/);
  assert.match(svg, /learning rate \(log\)/);
  const logged = steps(run).filter((e) => e['learning_rate'] !== undefined).map((e) => e['learning_rate']!);
  assert.ok(Math.max(...logged) <= found.suggestion * (1 + 1e-6) && Math.max(...logged) > found.suggestion / 2, `learning rates ${logged.slice(0, 3).join(', ')}…`);
});
