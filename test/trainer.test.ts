// The training loop: logs, checkpoints, resume, Ctrl-C, NaN stop, gradient accumulation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Linear } from '../src/nn/layers.js';
import { train, type Batch, type BatchSource } from '../src/train/trainer.js';
import { listCheckpoints } from '../src/train/checkpoint.js';

class Mlp extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(seed: number) {
    super();
    const gen = new g.Generator(seed);
    this.fc1 = this.module('fc1', new Linear(4, 16, { generator: gen }));
    this.fc2 = this.module('fc2', new Linear(16, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    return this.fc2.forward(g.relu(this.fc1.forward(x)));
  }
}

/** Three Gaussian blobs in 4-D; the order of an epoch depends only on (seed, epoch). */
function blobs(n: number, batchSize: number, seed: number, poison = -1): BatchSource {
  const gen = new g.Generator(seed);
  const xs = Array.from({ length: n }, (_, i) => Array.from({ length: 4 }, (__, d) => (d === i % 3 ? 3 : 0) + gen.normal()));
  return {
    size: n,
    batchesPerEpoch: () => Math.ceil(n / batchSize),
    async *epoch(epoch: number, skip: number): AsyncIterable<Batch> {
      const order = Array.from({ length: n }, (_, i) => i);
      const eg = new g.Generator(seed * 1000 + epoch);
      for (let i = n - 1; i > 0; i--) {
        const j = eg.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (let b = skip; b * batchSize < n; b++) {
        const idx = order.slice(b * batchSize, (b + 1) * batchSize);
        const x = g.tensor(idx.map((i) => xs[i]!));
        if (epoch === poison && b === 1) g.assign(x, g.mul(x, NaN));
        yield { x, y: g.tensor(idx.map((i) => i % 3), undefined, { dtype: 'int32' }) };
      }
    },
  };
}

const weightsOf = (m: Module) => m.parameters().flatMap((p) => Array.from(p.toArray()));

test('trainer: learns, writes metrics.jsonl with Trainer key names and one checkpoint per epoch', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-train-'));
  const model = new Mlp(1);
  const evalX = g.tensor(Array.from({ length: 30 }, (_, i) => [0, 1, 2, 3].map((d) => (d === i % 3 ? 3 : 0))));
  const evaluate = () => {
    const pred = g.argmax(model.forward(evalX), 1).toArray();
    return { accuracy: Array.from(pred).filter((p, i) => p === i % 3).length / 30 };
  };
  const r = await train(model, blobs(90, 10, 1), evaluate, { epochs: 3, lr: 0.05, outputDir: dir, warmupRatio: 0.1, maxGradNorm: 1, log: () => {} });
  assert.equal(r.stoppedBy, 'completed');
  assert.equal(r.state.globalStep, 27);
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const trainLogs = lines.filter((l) => 'loss' in l);
  assert.equal(trainLogs.length, 27);
  for (const k of ['loss', 'grad_norm', 'learning_rate', 'epoch', 'step']) assert.ok(k in trainLogs[0]!, `key ${k}`);
  assert.ok(trainLogs[26]!.loss! < trainLogs[0]!.loss! / 2, `loss fell: ${trainLogs[0]!.loss} → ${trainLogs[26]!.loss}`);
  const evals = lines.filter((l) => 'eval_accuracy' in l && 'eval_runtime' in l);
  assert.equal(evals.length, 3);
  assert.equal(evals[2]!.eval_accuracy, 1);
  assert.ok(lines.some((l) => 'train_runtime' in l && 'train_samples_per_second' in l));
  assert.deepEqual(listCheckpoints(dir), ['checkpoint-18', 'checkpoint-27']);
});

test('trainer: resuming from a checkpoint gives the same weights as an uninterrupted run', async () => {
  // Constant LR: the schedule of a 2-epoch run would differ from the 4-epoch one's.
  const a = new Mlp(3);
  await train(a, blobs(40, 8, 3), null, { epochs: 4, lr: 0.02, schedule: 'constant', outputDir: mkdtempSync(join(tmpdir(), 'graft-train-')), log: () => {} });
  const dirC = mkdtempSync(join(tmpdir(), 'graft-train-'));
  const b = new Mlp(3);
  await train(b, blobs(40, 8, 3), null, { epochs: 2, lr: 0.02, schedule: 'constant', outputDir: dirC, log: () => {} });
  const c = new Mlp(99);
  const rc = await train(c, blobs(40, 8, 3), null, { epochs: 4, lr: 0.02, schedule: 'constant', outputDir: dirC, resume: true, log: () => {} });
  assert.equal(rc.state.globalStep, 20);
  const wa = weightsOf(a);
  const wc = weightsOf(c);
  assert.ok(wa.every((v, i) => Math.abs(v - wc[i]!) < 1e-6), 'resumed weights equal the uninterrupted run');
});

test('trainer: Ctrl-C saves a checkpoint and stops; resume continues mid-epoch', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-train-'));
  const model = new Mlp(4);
  const data = blobs(40, 8, 4);
  let steps = 0;
  const r = await train(model, data, null, {
    epochs: 3, lr: 0.02, outputDir: dir, log: () => {},
    onProgress: () => {
      if (++steps === 7) process.emit('SIGINT');
    },
  });
  assert.equal(r.stoppedBy, 'interrupted');
  assert.equal(r.state.globalStep, 7);
  assert.equal(r.state.epoch, 1);
  assert.equal(r.state.batchInEpoch, 2);
  assert.ok(r.lastCheckpoint && existsSync(join(r.lastCheckpoint, 'optimizer.safetensors')));
  const again = await train(new Mlp(5), data, null, { epochs: 3, lr: 0.02, outputDir: dir, resume: true, log: () => {} });
  assert.equal(again.stoppedBy, 'completed');
  assert.equal(again.state.globalStep, 15);
});

test('trainer: a NaN loss stops the run with a message and keeps the last good checkpoint', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'graft-train-'));
  const r = await train(new Mlp(6), blobs(40, 8, 6, 1), null, { epochs: 3, lr: 0.02, outputDir: dir, log: () => {} });
  assert.equal(r.stoppedBy, 'diverged');
  assert.match(r.message!, /the loss became NaN at epoch 2.*Lower the learning rate.*last good checkpoint is .*checkpoint-5/);
  assert.deepEqual(listCheckpoints(dir), ['checkpoint-5']);
});

test('trainer: batch 4 with 2 accumulation steps equals batch 8 (SGD)', async () => {
  const a = new Mlp(7);
  const b = new Mlp(7);
  await train(a, blobs(32, 8, 7), null, { epochs: 2, lr: 0.05, optimizer: 'sgd', schedule: 'constant', log: () => {} });
  await train(b, blobs(32, 4, 7), null, { epochs: 2, lr: 0.05, optimizer: 'sgd', schedule: 'constant', gradAccumulation: 2, log: () => {} });
  const wa = weightsOf(a);
  const wb = weightsOf(b);
  assert.ok(wa.every((v, i) => Math.abs(v - wb[i]!) < 1e-5), 'accumulated gradients equal the large batch');
});

test('recalibrateBatchNorm: running statistics become the average batch statistics over the data; frozen layers and modes untouched', async () => {
  const { recalibrateBatchNorm } = await import('../src/train/batchnorm.js');
  const { BatchNorm2d } = await import('../src/nn/layers.js');
  const { Sequential } = await import('../src/nn/layers.js');
  const bn = new BatchNorm2d(2, 1e-3, 0.01);
  const frozen = new BatchNorm2d(2, 1e-3, 0.01);
  frozen.frozen = true;
  const model = new Sequential(bn, frozen).eval();
  const gen = new g.Generator(5);
  const batches = [0, 1, 2].map((i) => g.add(g.mul(g.randn([4, 2, 3, 3], { generator: gen }), 1 + i), i * 2));
  const source = {
    size: 12,
    batchesPerEpoch: () => 3,
    async *epoch() {
      for (const x of batches) yield { x: x.detach(), y: g.zeros([4], { dtype: 'int32' }) };
    },
  };
  const used = await recalibrateBatchNorm(model, source);
  assert.equal(used, 3);
  for (let c = 0; c < 2; c++) {
    let m = 0, v = 0;
    for (const x of batches) {
      const vals = Array.from(x.toArray()).filter((_, i) => Math.floor(i / 9) % 2 === c);
      const mu = vals.reduce((a, b) => a + b, 0) / vals.length;
      m += mu / 3;
      v += vals.reduce((a, b) => a + (b - mu) ** 2, 0) / (vals.length - 1) / 3;
    }
    assert.ok(Math.abs(bn.runningMean.toArray()[c]! - m) < 1e-4, `channel ${c} mean`);
    assert.ok(Math.abs(bn.runningVar.toArray()[c]! - v) < 1e-3, `channel ${c} variance`);
  }
  assert.deepEqual(Array.from(frozen.runningMean.toArray()), [0, 0]);
  assert.equal(bn.momentum, 0.01);
  assert.equal(model.training, false);
});
