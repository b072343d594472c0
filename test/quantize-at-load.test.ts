// A float checkpoint quantised as it is read (buildModel({ quantize })): the same 4-bit model as
// loading in float and quantising after, bit for bit, for a ViT and a CNN, with the float model
// never whole in memory (the peak of live tensor bytes while loading stays near the 4-bit model
// plus one layer); a bitsandbytes 4-bit checkpoint likewise loads without its float form; and a
// head of another class count is initialised, not read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Conv2d4bit, Linear4bit, quantizeModule, type QuantizeOptions } from '../src/nn/quant4.js';
import { Conv2d, Linear, isDeferred, withDeferredWeights } from '../src/nn/layers.js';
import { createModel } from '../src/models/registry.js';
import '../src/models/all.js';
import { buildModel } from '../src/models/build-model.js';
import { classifierPath } from '../src/models/head.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { memory, resetPeakMemory } from '../src/tensor/memory.js';
import { describeTrainable, type Module } from '../src/nn/module.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-qload-'));

function fourBitLayers(m: Module): [string, Linear4bit | Conv2d4bit][] {
  return m.namedModules().filter((e): e is [string, Linear4bit | Conv2d4bit] => e[1] instanceof Linear4bit || e[1] instanceof Conv2d4bit);
}

function liveBytes(m: Module): number {
  let b = 0;
  for (const [, t] of m.stateDict()) b += t.size * (t.dtype === 'uint8' ? 1 : 4);
  return b;
}

const cases: { label: string; name: string; overrides?: Record<string, unknown>; imageSize: number; numClasses: number; opts: QuantizeOptions; prefix: string }[] = [
  { label: 'a DINOv2 ViT (transformers names, model prefix)', name: 'dinov2_small', overrides: { hiddenSize: 64, numHiddenLayers: 4, numAttentionHeads: 4, patchSize: 4 }, imageSize: 16, numClasses: 5, opts: { quantType: 'nf4', doubleQuant: true }, prefix: 'dinov2.' },
  { label: 'a ResNet-18 (torchvision names, module. prefix)', name: 'resnet18', imageSize: 32, numClasses: 7, opts: { quantType: 'fp4', blocksize: 128 }, prefix: 'module.' },
];

for (const c of cases) {
  test(`quantise at load, ${c.label}: the model equals load-then-quantise bit for bit, and the float model is never whole in memory`, async () => {
    g.manualSeed(31);
    const src = createModel(c.name, { overrides: c.overrides, imageSize: c.imageSize, numClasses: c.numClasses });
    const file = join(dir, `${c.name}.safetensors`);
    const floatBytes = liveBytes(src);
    const floatParams = describeTrainable(src).total;
    // The DINOv2 file under Dinov2ForImageClassification's names (graft's, with the model prefix
    // but on the classifier), the CNN file under a DataParallel prefix.
    const vit = c.name.startsWith('dinov2');
    saveSafetensors(file, new Map([...src.stateDict()].map(([k, t]) => [vit && k.startsWith('classifier.') ? k : `${c.prefix}${k}`, t])));
    let largestLayer = 0;
    for (const [, m] of src.namedModules()) if (m instanceof Linear || (m instanceof Conv2d && m.groups === 1)) largestLayer = Math.max(largestLayer, m.weight.size * 4);
    src.dispose();

    const req = { name: c.name, overrides: c.overrides, imageSize: c.imageSize, weights: file };
    const before = memory().liveBytes;
    resetPeakMemory();
    const atLoad = (await buildModel({ ...req, quantize: c.opts })).eval();
    const peak = memory().peakBytes - before;
    const finalBytes = memory().liveBytes - before;
    const after = (await buildModel(req)).eval();
    const head = classifierPath(after);
    quantizeModule(after, c.opts, (p) => p === head);

    const a = fourBitLayers(atLoad);
    const b = fourBitLayers(after);
    assert.deepEqual(a.map(([p]) => p), b.map(([p]) => p), 'the same layers are 4-bit');
    assert.ok(a.length >= 8, `${a.length} 4-bit layers`);
    assert.ok(head && !(atLoad.getModule(head) instanceof Linear4bit), 'the classifier stays float');
    for (const [[p, x], [, y]] of a.map((e, i) => [e, b[i]!] as const)) {
      const sx = x.stateDict();
      const sy = y.stateDict();
      assert.deepEqual([...sx.keys()], [...sy.keys()], p);
      for (const [k, t] of sx) assert.deepEqual(Array.from(t.toArray()), Array.from(sy.get(k)!.toArray()), `${p}.${k}`);
    }
    for (const [k, t] of atLoad.stateDict()) if (t.dtype !== 'uint8') assert.ok(!isDeferred(t), `${k} has its values`);
    assert.equal(describeTrainable(atLoad).total, floatParams, 'all params counts the weights the 4-bit codes stand for');
    const x = g.randn([2, 3, c.imageSize, c.imageSize], { generator: new g.Generator(32) });
    assert.deepEqual(Array.from(g.noGrad(() => atLoad.forward(x)).toArray()), Array.from(g.noGrad(() => after.forward(x)).toArray()), 'the same outputs');

    // The peak while loading: the 4-bit model, one layer's float weight, and the small tensors
    // the family loader reads together (norms, biases, the classifier), never the float model.
    assert.ok(peak <= finalBytes + 2 * largestLayer, `peak ${peak} B against the final ${finalBytes} B + 2 × the largest layer ${largestLayer} B`);
    assert.ok(peak < 0.5 * floatBytes, `peak ${peak} B against the float model's ${floatBytes} B`);
    atLoad.dispose();
    after.dispose();
  });
}

test('a bitsandbytes 4-bit checkpoint loads without its float form: the peak stays near the 4-bit model', async () => {
  g.manualSeed(33);
  const overrides = { hiddenSize: 64, numHiddenLayers: 4, numAttentionHeads: 4, patchSize: 4 };
  const q = createModel('dinov2_small', { overrides, imageSize: 16, numClasses: 5 });
  const floatBytes = liveBytes(q);
  const head = classifierPath(q);
  quantizeModule(q, { quantType: 'nf4', doubleQuant: true }, (p) => p === head);
  const file = join(dir, 'bnb.safetensors');
  saveSafetensors(file, new Map([...q.stateDict()].map(([k, t]) => [k.startsWith('classifier.') ? k : `dinov2.${k}`, t])));
  const before = memory().liveBytes;
  resetPeakMemory();
  const loaded = (await buildModel({ name: 'dinov2_small', overrides, imageSize: 16, weights: file })).eval();
  const peak = memory().peakBytes - before;
  assert.deepEqual(fourBitLayers(loaded).map(([p]) => p), fourBitLayers(q).map(([p]) => p));
  for (const [k, t] of q.stateDict()) assert.deepEqual(Array.from(loaded.stateDict().get(k)!.toArray()), Array.from(t.toArray()), k);
  assert.ok(peak < 0.4 * floatBytes, `peak ${peak} B against the float model's ${floatBytes} B`);
  const x = g.randn([2, 3, 16, 16], { generator: new g.Generator(34) });
  q.eval();
  assert.deepEqual(Array.from(g.noGrad(() => loaded.forward(x)).toArray()), Array.from(g.noGrad(() => q.forward(x)).toArray()));
  loaded.dispose();
  q.dispose();
});

test('quantise at load with a head of another class count: the head is initialised (float), the body read and quantised', async () => {
  g.manualSeed(35);
  const src = createModel('resnet18', { imageSize: 32, numClasses: 4 });
  const file = join(dir, 'resnet-4.safetensors');
  saveSafetensors(file, src.stateDict());
  const m = await buildModel({ name: 'resnet18', imageSize: 32, numClasses: 6, reinitHead: true, weights: file, quantize: { quantType: 'nf4' } });
  const fc = m.getModule('fc') as Linear;
  assert.ok(fc instanceof Linear && !(fc instanceof Linear4bit));
  assert.deepEqual(fc.weight.shape, [6, 512]);
  const w = fc.weight.toArray();
  const bound = 1 / Math.sqrt(512);
  assert.ok(Array.from(w).every((v) => Math.abs(v) <= bound) && new Set(Array.from(w)).size > 1000, 'PyTorch\'s default initialisation');
  const conv = m.getModule('layer1.0.conv1') as Conv2d4bit;
  assert.ok(conv instanceof Conv2d4bit);
  const want = (src.getModule('layer1.0.conv1') as Conv2d).weight.toArray();
  const got = conv.weight.toArray();
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(want[i]! - got[i]!));
  assert.ok(worst > 0 && worst < 0.2 * Math.max(...Array.from(want, Math.abs)), `the 4-bit conv holds the file's weight, rounded (${worst})`);
  src.dispose();
  m.dispose();
});

test('deferred weights hold no memory and refuse a second nesting', () => {
  const before = memory().liveBytes;
  const m = withDeferredWeights(() => new Linear(4096, 4096));
  assert.ok(isDeferred(m.weight));
  assert.ok(memory().liveBytes - before < 4096 * 4 * 4, 'the stand-in holds no 4096 × 4096 floats');
  assert.throws(() => withDeferredWeights(() => withDeferredWeights(() => 0)), /already deferring/);
  m.dispose();
  assert.equal(memory().liveBytes, before);
});
