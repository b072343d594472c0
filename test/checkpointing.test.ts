// Gradient checkpointing (ops/nn.ts checkpoint, models/checkpointing.ts): the same loss and the
// same gradients on every trainable tensor as without it, on ViT families (also on a 4-bit base)
// per block, on Swin per block and on the CNNs per stage, with less tensor memory; BatchNorm's
// running statistics are updated once; dropout inside draws the same masks when recomputed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { createModel } from '../src/models/registry.js';
import { setGradientCheckpointing } from '../src/models/checkpointing.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import { quantizeModule } from '../src/nn/quant4.js';
import type { Module } from '../src/nn/module.js';

function lora(model: Module): PeftModel<Module> {
  const m = getAdapterMethod('lora');
  const config = m.configFromRun(SharedAdapterOptionsSchema.parse({ r: 2, alpha: 4, targets: 'all-linear' }), m.optionsSchema.parse({}));
  return new PeftModel(model, m, config, 'default', { generator: new g.Generator(3) });
}

/** Loss, gradients by name and the peak tensor bytes of one training step. */
function step(peft: PeftModel<Module>, x: g.Tensor) {
  g.noGrad(() => { for (const p of peft.model.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std: 0.05, generator: new g.Generator(p.size) }))); });
  for (const p of peft.model.trainableParameters()) p.grad = null;
  peft.train();
  g.manualSeed(5);
  g.resetPeakMemory();
  const before = g.memory().liveBytes;
  const loss = g.tidy(() => {
    const l = g.mean(g.square(peft.forward(x)));
    l.backward();
    return l.item();
  });
  const peak = g.memory().peakBytes - before;
  return { loss, peak, grads: new Map(peft.model.namedParameters().filter(([, p]) => p.grad).map(([k, p]) => [k, p.grad!.toArray()])) };
}

/** The same tensors got gradients, each within 1e-6 of the run without checkpointing. */
function assertSameGrads(got: Map<string, ArrayLike<number>>, want: Map<string, ArrayLike<number>>): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), 'the same tensors get gradients');
  for (const [k, v] of want) {
    const w = got.get(k)!;
    let worst = 0;
    for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(v[i]! - w[i]!));
    assert.ok(worst <= 1e-6, `${k}: max difference ${worst}`);
  }
}

const MODELS: [string, string, Record<string, unknown>][] = [
  ['timm ViT', 'vit_small_patch16_224', { depth: 6, embedDim: 32, numHeads: 2, patchSize: 4 }],
  ['DINOv2', 'dinov2_small', { hiddenSize: 32, numHiddenLayers: 6, numAttentionHeads: 4, patchSize: 4 }],
];

for (const [label, name, overrides] of MODELS) {
  for (const quantised of [false, true]) {
    test(`gradient checkpointing, ${label}${quantised ? ' on an NF4 base' : ''}: the same loss and gradients, less memory`, () => {
      const make = () => {
        g.manualSeed(1);
        const m = createModel(name, { overrides, imageSize: 64, numClasses: 3 });
        if (quantised) quantizeModule(m, { quantType: 'nf4', blocksize: 32 });
        return lora(m);
      };
      const x = g.randn([4, 3, 64, 64], { generator: new g.Generator(4) });
      const plain = step(make(), x);
      const ckptModel = make();
      assert.ok(setGradientCheckpointing(ckptModel, true) > 0, 'the model checkpoints its blocks');
      const ckpt = step(ckptModel, x);
      assert.equal(ckpt.loss, plain.loss, 'loss');
      assertSameGrads(ckpt.grads, plain.grads);
      assert.ok(ckpt.peak < plain.peak, `peak tensor memory ${ckpt.peak} with checkpointing, ${plain.peak} without`);
      console.log(`# ${label}${quantised ? ' NF4' : ''}: peak tensor memory of a step ${(plain.peak / 2 ** 20).toFixed(2)} MiB → ${(ckpt.peak / 2 ** 20).toFixed(2)} MiB with checkpointing`);
    });
  }
}

/** One full fine-tuning step of `model` in training mode (BatchNorm on batch statistics): loss, gradients, running statistics, peak tensor bytes. */
function fullStep(model: Module, x: g.Tensor) {
  model.train();
  for (const p of model.parameters()) p.grad = null;
  g.manualSeed(5);
  g.resetPeakMemory();
  const before = g.memory().liveBytes;
  const loss = g.tidy(() => {
    const l = g.mean(g.square(model.forward(x)));
    l.backward();
    return l.item();
  });
  const peak = g.memory().peakBytes - before;
  const grads = new Map(model.namedParameters().filter(([, p]) => p.grad).map(([k, p]) => [k, p.grad!.toArray()]));
  const stats = new Map(model.namedBuffers().filter(([k]) => /running_(mean|var)$/.test(k)).map(([k, t]) => [k, Float32Array.from(t.toArray() as Float32Array)]));
  return { loss, peak, grads, stats };
}

const STAGED: [string, string, Record<string, unknown>, number][] = [
  ['ResNet-18 (per stage)', 'resnet18', {}, 32],
  ['MobileNetV2 (per stage)', 'mobilenet_v2', { widthMult: 0.25 }, 32],
  ['ConvNeXt (per stage)', 'convnext_tiny', { blockSetting: [[8, 16, 1], [16, 32, 2], [32, 64, 1], [64, null, 1]] }, 32],
  ['RegNetY (per stage)', 'regnety_400mf', { depths: [1, 2, 1, 1], widths: [8, 16, 24, 32], groupWidths: [8, 8, 8, 8], bottleneckMultipliers: [1, 1, 1, 1] }, 32],
  ['Swin (per block)', 'swin_tiny', { embedDim: 16, depths: [2, 2, 2, 2], numHeads: [2, 2, 4, 4], windowSize: [2, 2] }, 64],
];

for (const [label, name, overrides, size] of STAGED) {
  test(`gradient checkpointing, ${label}, full fine-tuning: the same loss, gradients and running statistics, less memory`, () => {
    const make = () => {
      g.manualSeed(1);
      return createModel(name, { overrides, imageSize: size, numClasses: 3 });
    };
    const x = g.randn([4, 3, size, size], { generator: new g.Generator(4) });
    const plain = fullStep(make(), x);
    const model = make();
    assert.ok(setGradientCheckpointing(model, true) > 0, 'the model checkpoints its stages or blocks');
    const ckpt = fullStep(model, x);
    assert.equal(ckpt.loss, plain.loss, 'loss');
    assertSameGrads(ckpt.grads, plain.grads);
    // BatchNorm updated its statistics once, as without checkpointing.
    for (const [k, v] of plain.stats) assert.deepEqual(ckpt.stats.get(k), v, `${k} after one step`);
    assert.ok(ckpt.peak < plain.peak, `peak tensor memory ${ckpt.peak} with checkpointing, ${plain.peak} without`);
    console.log(`# ${label}: peak tensor memory of a step ${(plain.peak / 2 ** 20).toFixed(2)} MiB → ${(ckpt.peak / 2 ** 20).toFixed(2)} MiB with checkpointing`);
    // Without a graph the model runs as without checkpointing.
    const evalOut = g.noGrad(() => g.tidy(() => Array.from(model.eval().forward(x).toArray() as Float32Array)));
    setGradientCheckpointing(model, false);
    assert.deepEqual(g.noGrad(() => g.tidy(() => Array.from(model.forward(x).toArray() as Float32Array))), evalOut);
  });
}

test('checkpoint: dropout inside the recomputed function draws the forward pass\'s masks', () => {
  const w = g.randn([6, 6], { generator: new g.Generator(8) });
  w.requiresGrad = true;
  const x = g.randn([5, 6], { generator: new g.Generator(9) });
  const f = (h: g.Tensor) => g.dropout(g.tanh(g.matmul(h, w)), 0.5, true);
  const run = (ckpt: boolean) => {
    w.grad = null;
    g.manualSeed(3);
    const y = ckpt ? g.checkpoint(f, x, [w]) : f(x);
    g.sum(g.square(y)).backward();
    return { y: Array.from(y.toArray()), gw: Array.from(w.grad!.toArray()) };
  };
  const a = run(false);
  const b = run(true);
  assert.deepEqual(b.y, a.y);
  assert.deepEqual(b.gw, a.gw);
});
