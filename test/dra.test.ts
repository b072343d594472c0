// DRA (src/adapters/dra): rank allocation from layer similarity and parameter share, the
// re-allocation that folds the trained pair into an exact frozen history, the update trigger, and
// a run trained through two re-allocations that reloads to the same logits and resumes exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema, type TrainingContext } from '../src/adapters/method.js';
import { allocateRanks } from '../src/adapters/dra/allocate.js';
import { draLayers } from '../src/adapters/dra/method.js';
import type { DraConfig } from '../src/adapters/dra/config.js';
import type { Batch, BatchSource } from '../src/data/batch.js';
import { train } from '../src/train/trainer.js';
import { buildRunModel, loadRun, saveTrainedModel, writeRunManifest } from '../src/train/run.js';
import { runConfigSchema } from '../src/train/run-config.js';
import '../src/models/all.js';

const dra = getAdapterMethod('dra');
const configOf = (targets: string[], own: Record<string, unknown> = {}, shared: Record<string, unknown> = {}) =>
  dra.configFromRun(SharedAdapterOptionsSchema.parse({ r: 4, alpha: 8, targets, ...shared }), dra.optionsSchema.parse(own)) as DraConfig;

test('dra allocation: ranks follow dissimilarity to the next layer and parameter share, clipped to [rMin, rMax]', () => {
  const layers = ['a', 'b', 'c', 'd'];
  // Equal sizes: only 1 − c decides. c is most dissimilar, then b, d, a.
  const byDissim = allocateRanks({ layers, similarity: [0.9, 0.5, 0.1, 0.7], params: [100, 100, 100, 100] }, { wImp: 1, wBias: 0, rMin: 2, rMax: 16 });
  assert.deepEqual(byDissim.ranks, { a: 2, b: 9, c: 16, d: 6 });
  // Equal similarities: only the parameter share decides.
  const bySize = allocateRanks({ layers, similarity: [0.5, 0.5, 0.5, 0.5], params: [10, 40, 20, 30] }, { wImp: 0, wBias: 1, rMin: 4, rMax: 8 });
  assert.deepEqual(bySize.ranks, { a: 4, b: 8, c: 5, d: 7 });
  // The defaults' mix (0.15, 0.85): s = 0.15·norm(1 − c) + 0.85·norm(p).
  const mixed = allocateRanks({ layers: ['x', 'y'], similarity: [0.2, 0.9], params: [10, 30] }, { wImp: 0.15, wBias: 0.85, rMin: 2, rMax: 16 });
  assert.deepEqual(mixed.scores, [0.15, 0.85]);
  assert.deepEqual(mixed.ranks, { x: 4, y: 14 });
  // Weights summing above 1 are clipped at rMax; a constant layer (NaN similarity) counts as dissimilar.
  const clipped = allocateRanks({ layers: ['x', 'y'], similarity: [Number.NaN, 1], params: [30, 10] }, { wImp: 2, wBias: 2, rMin: 3, rMax: 9 });
  assert.deepEqual(clipped.ranks, { x: 9, y: 3 });
});

/** Four equal Linear layers in a chain: fc2 an orthogonal map of fc1 (CKA 1), fc3 a rank-1 projection (low CKA), fc4 orthogonal again. */
class Chain extends Module {
  fc1: Linear;
  fc2: Linear;
  fc3: Linear;
  fc4: Linear;
  constructor(gen: g.Generator) {
    super();
    const d = 8;
    this.fc1 = this.module('fc1', new Linear(d, d, { generator: gen }));
    this.fc2 = this.module('fc2', new Linear(d, d, { bias: false, generator: gen }));
    this.fc3 = this.module('fc3', new Linear(d, d, { bias: false, generator: gen }));
    this.fc4 = this.module('fc4', new Linear(d, d, { bias: false, generator: gen }));
    const perm = new Float32Array(d * d);
    for (let i = 0; i < d; i++) perm[i * d + ((i + 3) % d)] = i % 2 ? -2 : 2;
    const proj = new Float32Array(d * d);
    for (let i = 0; i < d; i++) proj[i * d] = 1;
    g.noGrad(() => {
      g.assign(this.fc2.weight, g.tensor(perm, [d, d]));
      g.assign(this.fc3.weight, g.tensor(proj, [d, d]));
      g.assign(this.fc4.weight, g.tensor(perm, [d, d]));
    });
  }
  forward(x: g.Tensor): g.Tensor {
    return this.fc4.forward(this.fc3.forward(this.fc2.forward(this.fc1.forward(x))));
  }
}

const ctxOf = (images: g.Tensor[], over: Partial<TrainingContext> = {}): TrainingContext & { changes: number } => {
  const c = {
    step: 0, totalSteps: 100, epoch: 0, totalEpochs: 10, changes: 0,
    calibrationImages: async function* () { yield* images; },
    ...over,
  };
  c.parametersChanged = () => { c.changes++; };
  return c as TrainingContext & { changes: number };
};

test('dra calibration: on a model with known layer similarities the most dissimilar layer gets the highest rank, the output stays the base one', async () => {
  const gen = new g.Generator(1);
  const base = new Chain(gen);
  const images = [g.keep(g.randn([32, 8], { generator: gen })), g.keep(g.randn([32, 8], { generator: gen }))];
  const want = g.noGrad(() => g.keep(base.forward(images[0]!)));
  const peft = new PeftModel(base, dra, configOf(['fc1', 'fc2', 'fc3', 'fc4'], { wImp: 1, wBias: 0, calibrationImages: 48 }));
  const config = peft.adapter().config as DraConfig;
  const hooks = peft.trainingHooks();
  const ctx = ctxOf(images);
  await hooks.beforeTraining!(ctx);
  // c = [CKA(fc1, fc2) = 1, CKA(fc2, fc3) low, CKA(fc3, fc4) = 1, last = its predecessor's]: fc2 alone is dissimilar.
  assert.deepEqual(config.rankPattern, { fc1: 2, fc2: 16, fc3: 2, fc4: 2 });
  assert.equal(ctx.changes, 1, 'the trainer is told to build a fresh optimizer');
  const report = hooks.report!().json as { allocations: { n: number; similarity: Record<string, number> }[] };
  assert.equal(report.allocations[0]!.n, 48);
  assert.ok(Math.abs(report.allocations[0]!.similarity['fc1']! - 1) < 1e-6);
  assert.ok(report.allocations[0]!.similarity['fc2']! < 0.6);
  for (const [p, l] of draLayers(base, 'default')) assert.equal(l.rank('default'), (config.rankPattern as Record<string, number>)[p]);
  peft.eval();
  assert.deepEqual(Array.from(g.noGrad(() => peft.forward(images[0]!)).toArray()), Array.from(want.toArray()));
});

/** A small CNN: a dilated conv, a depthwise (grouped) conv, a pointwise conv and a Linear head. */
class TinyCnn extends Module {
  stem: Conv2d;
  dw: Conv2d;
  pw: Conv2d;
  fc: Linear;
  constructor(gen: g.Generator) {
    super();
    this.stem = this.module('stem', new Conv2d(3, 8, 3, { padding: 2, dilation: 2, generator: gen }));
    this.dw = this.module('dw', new Conv2d(8, 8, 3, { padding: 1, groups: 8, generator: gen }));
    this.pw = this.module('pw', new Conv2d(8, 12, 1, { generator: gen }));
    this.fc = this.module('fc', new Linear(12, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    const h = g.relu(this.pw.forward(g.relu(this.dw.forward(g.relu(this.stem.forward(x))))));
    return this.fc.forward(g.mean(h, [2, 3]));
  }
}

const perturb = (m: Module, gen: g.Generator, std: number) => g.noGrad(() => {
  for (const p of m.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std, generator: gen })));
});

test('dra re-allocation: folding into the history leaves the output unchanged bit for bit, merged too; the trigger follows the relative change', async () => {
  const gen = new g.Generator(2);
  const base = new TinyCnn(gen);
  const peft = new PeftModel(base, dra, configOf(['stem', 'dw', 'pw', 'fc'], { rMin: 1, rMax: 6, calibrationImages: 16, maxReallocations: 2 }));
  const config = peft.adapter().config as DraConfig;
  const images = [g.keep(g.randn([16, 3, 8, 8], { generator: gen }))];
  const x = images[0]!;
  const hooks = peft.trainingHooks();
  const ctx = ctxOf(images);
  await hooks.beforeTraining!(ctx);
  const outputs = () => {
    peft.eval();
    const y = g.noGrad(() => g.keep(peft.forward(x)));
    return Array.from(y.toArray());
  };
  // Epoch 1 moves the factors a lot: it sets the threshold.
  perturb(peft, gen, 0.2);
  await hooks.afterEpoch!({ ...ctx, epoch: 1 });
  assert.equal(ctx.changes, 1, 'no re-allocation at epoch 1');
  // Epoch 2 moves them less than epoch 1: a re-allocation.
  perturb(peft, gen, 0.01);
  const before = outputs();
  const mergedBefore = await peft.withMerged(async () => outputs());
  const ranksBefore = { ...config.rankPattern! };
  await hooks.afterEpoch!({ ...ctx, epoch: 2 });
  assert.equal(ctx.changes, 2, 're-allocated at epoch 2');
  assert.deepEqual(outputs(), before, 'the output is unchanged at the re-allocation');
  assert.deepEqual(await peft.withMerged(async () => outputs()), mergedBefore, 'merged as well');
  for (const [p, l] of draLayers(base, 'default')) {
    assert.deepEqual(l.historyRanks('default'), [ranksBefore[p]], `${p}: the trained pair is the first history segment`);
    assert.deepEqual(Array.from(l.pair('default').B.toArray()).every((v) => v === 0), true, `${p}: a fresh B = 0`);
    assert.equal(l.pair('default').A.requiresGrad, true);
  }
  const m = hooks.epochMetrics!(ctx);
  assert.equal(m['dra_reallocated'], 1);
  assert.equal(m['dra_reallocations'], 1);
  // The fresh factors are trainable, the history is not.
  const trainable = new Set(peft.trainableParameters());
  for (const [, l] of draLayers(base, 'default')) for (const s of l.lora_history.get('default')!.segments()) assert.ok(!trainable.has(s.A.weight) && !trainable.has(s.B.weight));
  // A larger change than the threshold (now epoch 2's): no re-allocation.
  perturb(peft, gen, 0.3);
  await hooks.afterEpoch!({ ...ctx, epoch: 3 });
  assert.equal(ctx.changes, 2);
  // Smaller again: the second and last one.
  perturb(peft, gen, 0.0001);
  await hooks.afterEpoch!({ ...ctx, epoch: 4 });
  assert.equal(ctx.changes, 3);
  perturb(peft, gen, 0.00001);
  await hooks.afterEpoch!({ ...ctx, epoch: 5 });
  assert.equal(ctx.changes, 3, 'at most maxReallocations');
  for (const [, l] of draLayers(base, 'default')) assert.equal(l.historyRanks('default').length, 2);
});

/** Synthetic 3-class images: a class-dependent brightness per channel plus noise. */
class Blobs implements BatchSource {
  readonly size: number;
  private readonly x: g.Tensor;
  private readonly y: number[];
  constructor(n: number, private readonly batch: number, seed: number) {
    this.size = n;
    const gen = new g.Generator(seed);
    this.y = Array.from({ length: n }, (_, i) => i % 3);
    const noise = g.randn([n, 3, 32, 32], { generator: gen }).toArray() as Float32Array;
    const v = new Float32Array(noise.length);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) for (let k = 0; k < 1024; k++) v[(i * 3 + c) * 1024 + k] = noise[(i * 3 + c) * 1024 + k]! * 0.5 + (c === this.y[i] ? 1 : 0);
    this.x = g.keep(g.tensor(v, [n, 3, 32, 32]));
  }
  batchesPerEpoch(): number {
    return Math.ceil(this.size / this.batch);
  }
  async *epoch(_epoch: number, skip: number): AsyncIterable<Batch> {
    for (let b = skip; b < this.batchesPerEpoch(); b++) {
      const end = Math.min(this.size, (b + 1) * this.batch);
      yield { x: g.contiguous(g.slice(this.x, 0, b * this.batch, end)), y: g.tensor(Int32Array.from(this.y.slice(b * this.batch, end)), [end - b * this.batch], { dtype: 'int32' }) };
    }
  }
}

const runConfig = () => runConfigSchema().parse({
  model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, data: { source: 'unused', perClass: 1, imageSize: 32 }, method: 'dra',
  adapter: { r: 4, alpha: 8, targets: '.*conv\\d' }, dra: { rMin: 1, rMax: 6, calibrationImages: 24, maxReallocations: 2 }, train: { seed: 3 },
});

test('dra run: trained through two re-allocations, it reloads to the trained logits and a resume from after the first gives the same adapter', async () => {
  const c = runConfig();
  const data = new Blobs(24, 8, 4);
  const calibration = new Blobs(24, 12, 4);
  const opts = (dir: string, extra = {}) => ({ epochs: 8, lr: 0.02, schedule: 'linear' as const, outputDir: dir, keepCheckpoints: 10, calibration, log: () => {}, ...extra });
  const dir = mkdtempSync(join(tmpdir(), 'graft-dra-'));
  const { model } = await buildRunModel(c, ['a', 'b', 'c']);
  const hooks = (model as PeftModel).trainingHooks();
  g.manualSeed(9);
  const r = await train(model, data, null, { ...opts(dir), hooks });
  assert.equal(r.stoppedBy, 'completed');
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const epochs = lines.filter((l) => l['trainable_params'] !== undefined);
  assert.equal(epochs.length, 8, 'one entry per epoch');
  assert.equal(epochs.at(-1)!['dra_reallocations'], 2, `two re-allocations (deltas ${epochs.map((e) => e['dra_delta']).join(', ')})`);
  const end = lines.find((l) => l['avg_trainable_params'] !== undefined)!;
  const avg = epochs.reduce((a, e) => a + e['trainable_params']!, 0) / epochs.length;
  assert.ok(Math.abs(end['avg_trainable_params']! - avg) < 1e-6, 'Avg_Parm is the mean over epochs');
  const rep = hooks.report!();
  assert.match(rep.markdown, /Rank per layer during each epoch/);
  assert.match(rep.markdown, /\| layer \| ep 1 \| ep 2 \|/);
  hooks.afterTraining?.({ step: r.state.globalStep, totalSteps: r.state.globalStep, epoch: 8, totalEpochs: 8 });
  model.eval();
  writeRunManifest(dir, { config: c, classes: ['a', 'b', 'c'] });
  saveTrainedModel(dir, model);
  const saved = JSON.parse(readFileSync(join(dir, 'adapter', 'adapter_config.json'), 'utf8')) as { peft_type: string; rank_pattern: Record<string, number>; graft_dra: { history_pattern: Record<string, number[]> } };
  assert.equal(saved.peft_type, 'DRA');
  for (const h of Object.values(saved.graft_dra.history_pattern)) assert.equal(h.length, 2);
  const x = g.keep(g.randn([2, 3, 32, 32], { generator: new g.Generator(5) }));
  const logits = (m: Module) => (m as PeftModel).withMerged(() => Promise.resolve(Array.from(g.noGrad(() => m.forward(x)).toArray())));
  const unmerged = (m: Module) => Array.from(g.noGrad(() => m.forward(x)).toArray());
  const want = await logits(model);
  const wantUnmerged = unmerged(model);
  const loaded = await loadRun(dir);
  assert.deepEqual(await logits(loaded.model), want, 'reloaded logits (merged)');
  assert.deepEqual(unmerged(loaded.model), wantUnmerged, 'reloaded logits (unmerged)');

  // Resume from the checkpoint after the first re-allocation.
  const firstEpoch = epochs.findIndex((e) => e['dra_reallocated'] === 1) + 1;
  const stepsPerEpoch = data.batchesPerEpoch();
  const checkpoint = join(dir, `checkpoint-${firstEpoch * stepsPerEpoch}`);
  const dir2 = mkdtempSync(join(tmpdir(), 'graft-dra-'));
  const again = await buildRunModel(c, ['a', 'b', 'c']);
  const r2 = await train(again.model, data, null, { ...opts(dir2), hooks: (again.model as PeftModel).trainingHooks(), resume: checkpoint });
  assert.equal(r2.stoppedBy, 'completed');
  again.model.eval();
  assert.deepEqual(unmerged(again.model), wantUnmerged, 'the resumed run ends where the uninterrupted one did');
  model.dispose();
  loaded.model.dispose();
  again.model.dispose();
});

test('dra cli: graft train --method dra on an imported Keras MobileNetV2 with --rank-min, --rank-max, --dra-weights; flags checked', async () => {
  const { spawnSync } = await import('node:child_process');
  const { mkdirSync } = await import('node:fs');
  const sharp = (await import('sharp')).default;
  const root = mkdtempSync(join(tmpdir(), 'graft-dra-cli-'));
  const data = join(root, 'images');
  for (const c of ['dark', 'light']) mkdirSync(join(data, c), { recursive: true });
  for (let i = 0; i < 4; i++) {
    for (const [c, v] of [['dark', 30], ['light', 220]] as const) {
      const px = Buffer.alloc(32 * 32 * 3);
      for (let k = 0; k < px.length; k++) px[k] = Math.max(0, Math.min(255, v + ((k * 7 + i * 13) % 40) - 20));
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, c, `${i}.png`));
    }
  }
  const graft = (...args: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 240_000 });
  const run = join(root, 'run');
  const t = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '3', '--method', 'dra', '--rank-min', '2', '--rank-max', '5',
    '--dra-weights', '0.5,0.5', '--epochs', '3', '--batch-size', '3', '--output', run);
  assert.equal(t.status, 0, t.stderr + t.stdout);
  assert.match(t.stdout, /dra: calibration on 6 training images: ranks [2-5]–[2-5]/);
  const manifest = JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')) as { config: { dra: { rMin: number; rMax: number; wImp: number; wBias: number } } };
  assert.deepEqual([manifest.config.dra.rMin, manifest.config.dra.rMax, manifest.config.dra.wImp, manifest.config.dra.wBias], [2, 5, 0.5, 0.5]);
  const saved = JSON.parse(readFileSync(join(run, 'adapter', 'adapter_config.json'), 'utf8')) as { rank_pattern: Record<string, number> };
  for (const r of Object.values(saved.rank_pattern)) assert.ok(r >= 2 && r <= 5);
  const lines = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.equal(lines.filter((l) => l['trainable_params'] !== undefined).length, 3);
  assert.ok(lines.some((l) => l['avg_trainable_params'] !== undefined));
  const md = readFileSync(join(run, 'report.md'), 'utf8');
  assert.match(md, /## DRA/);
  assert.match(md, /Avg_Parm [\d,]+ \(\d+\.\d{4} M\)/);
  assert.match(md, /\| block_16_project \| \d \| \d \| \d \|/);
  const report = JSON.parse(readFileSync(join(run, 'report.json'), 'utf8')) as { summary: { avgTrainableParams: number }; dra: { trainableParamsPerEpoch: number[] } };
  assert.equal(report.dra.trainableParamsPerEpoch.length, 3);
  assert.ok(report.summary.avgTrainableParams > 0);
  const heat = JSON.parse(readFileSync(join(run, 'similarity.json'), 'utf8')) as { layers: string[]; matrix: (number | null)[][] };
  assert.equal(heat.layers.length, Object.keys(saved.rank_pattern).length);
  assert.ok(Math.abs(heat.matrix[0]![0]! - 1) < 1e-9);
  assert.match(readFileSync(join(run, 'similarity.svg'), 'utf8'), /^<svg /);
  const e = graft('eval', run, '--data', data);
  assert.equal(e.status, 0, e.stderr);
  const notDra = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '3', '--method', 'lora', '--rank-min', '3', '--output', join(root, 'x'));
  assert.equal(notDra.status, 2);
  assert.match(notDra.stderr, /--rank-min set DRA's options, but the method is lora/);
  const badWeights = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '3', '--method', 'dra', '--dra-weights', '0.5', '--output', join(root, 'y'));
  assert.equal(badWeights.status, 2);
  assert.match(badWeights.stderr, /--dra-weights takes two numbers/);
  const crossed = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '3', '--method', 'dra', '--rank-min', '8', '--rank-max', '4', '--output', join(root, 'z'));
  assert.equal(crossed.status, 2);
  assert.match(crossed.stderr, /dra\.rMin: 8 \(--rank-min\) is above dra\.rMax 4/);
});
