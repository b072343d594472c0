// Frozen 4-bit Linear and Conv2d against dequantise-then-float-op (values and input gradients,
// with weights large enough to be dequantised in several chunks), the memory rule (no float copy
// of the weight as a tensor), LoRA on a 4-bit base against LoRA on the dequantised base, merging
// with re-quantisation, and the bitsandbytes state-dict names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { BatchNorm2d, Conv2d, Linear, convBatchNormFolded, convBn, withFoldedWeights } from '../src/nn/layers.js';
import { Conv2d4bit, Linear4bit, quantizeLayer } from '../src/nn/quant4.js';
import { dequantize4, NF4_CODE, quantize4 } from '../src/tensor/quant4.js';
import { quantizeModule, readQuantizedLayer, withQuantizedLayers } from '../src/nn/quant4.js';
import { createModel } from '../src/models/registry.js';
import '../src/models/all.js';
import { buildModel } from '../src/models/build-model.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { detStateDict } from './helpers/det-weights.js';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import { Module } from '../src/nn/module.js';

function maxDiff(a: g.Tensor, b: g.Tensor): number {
  const x = a.toArray();
  const y = b.toArray();
  assert.equal(x.length, y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}
const scaleOf = (t: g.Tensor) => Math.max(...Array.from(t.toArray(), Math.abs));

for (const [label, opts] of [['nf4', { quantType: 'nf4' }], ['fp4 double-quant block 128', { quantType: 'fp4', doubleQuant: true, blocksize: 128 }]] as const) {
  // 3000 → 400: two chunks of 208 and 192 rows (staged outputs); 768 → 2304: two of 1152 rows (written in place).
  for (const [inF, outF] of [[3000, 400], [768, 2304]] as const) test(`Linear4bit (${label}) ${inF} → ${outF}: output and input gradient equal dequantise-then-linear, over several chunks`, () => {
    const gen = new g.Generator(5);
    const fl = new Linear(inF, outF, { generator: gen }); // over 2^20 weights: two chunks
    const q = Linear4bit.fromLinear(fl, opts);
    const wDeq = g.tensor(dequantize4(q.quantized), [outF, inF]);
    const x = g.randn([2, 3, inF], { generator: gen });
    x.requiresGrad = true;
    const y = q.forward(x);
    const gy = g.randn(y.shape, { generator: gen });
    y.backward(gy);
    const gxQ = x.grad!;
    x.grad = null;
    const yRef = g.linear(x, wDeq, fl.bias);
    yRef.backward(gy);
    assert.ok(maxDiff(y, yRef) <= 1e-4 * scaleOf(yRef), `values: ${maxDiff(y, yRef)}`);
    assert.ok(maxDiff(gxQ, x.grad!) <= 1e-4 * scaleOf(x.grad!), `input gradient: ${maxDiff(gxQ, x.grad!)}`);
    assert.ok(q.bias!.grad, 'the bias (a float parameter) gets its gradient');
  });

  test(`Conv2d4bit (${label}): output and input gradient equal dequantise-then-conv2d, over several chunks`, () => {
    const gen = new g.Generator(6);
    const fc = new Conv2d(256, 500, 3, { padding: 1, stride: 2, generator: gen }); // 1 152 000 weights: two chunks
    const q = Conv2d4bit.fromConv(fc, opts);
    const wDeq = g.tensor(dequantize4(q.quantized), fc.weight.shape);
    const x = g.randn([2, 256, 6, 5], { generator: gen });
    x.requiresGrad = true;
    const y = q.forward(x);
    const gy = g.randn(y.shape, { generator: gen });
    y.backward(gy);
    const gxQ = x.grad!;
    x.grad = null;
    const yRef = g.conv2d(x, wDeq, fc.bias, fc.convOptions);
    yRef.backward(gy);
    assert.ok(maxDiff(y, yRef) <= 1e-4 * scaleOf(yRef), `values: ${maxDiff(y, yRef)}`);
    assert.ok(maxDiff(gxQ, x.grad!) <= 1e-4 * scaleOf(x.grad!), `input gradient: ${maxDiff(gxQ, x.grad!)}`);
  });
}

test('4-bit layers: forward and backward allocate no tensor the size of the float weight', () => {
  const gen = new g.Generator(7);
  const q = Linear4bit.fromLinear(new Linear(4096, 1024, { generator: gen }), { doubleQuant: true }); // float weight: 16 MiB
  const floatBytes = 4096 * 1024 * 4;
  const x = g.randn([4, 4096], { generator: gen });
  x.requiresGrad = true;
  g.resetPeakMemory();
  const before = g.memory().liveBytes;
  g.tidy(() => g.sum(q.forward(x)).backward());
  const peak = g.memory().peakBytes - before;
  assert.ok(peak < floatBytes / 8, `peak tensor memory during forward + backward: ${peak} bytes (float weight: ${floatBytes})`);
  if (g.currentBackend().name === 'native') {
    // the kernels' own buffer: the addon reports the most weight floats it held dequantised at once
    const addon = createRequire(import.meta.url)(join(process.cwd(), 'build', 'Release', 'graft_native.node')) as { q4Stats(out: Float64Array, reset: boolean): void };
    const stats = new Float64Array(1);
    addon.q4Stats(stats, true);
    g.tidy(() => g.sum(q.forward(x)).backward());
    addon.q4Stats(stats, false);
    assert.ok(stats[0]! > 0 && stats[0]! <= (1 << 20) && stats[0]! < 4096 * 1024 / 2, `the kernels held ${stats[0]} weight floats at once (the weight has ${4096 * 1024})`);
  }
  // reading .weight (for methods that compute with W) does build it, as a fresh tensor
  g.resetPeakMemory();
  const b2 = g.memory().liveBytes;
  g.tidy(() => q.weight.size);
  assert.ok(g.memory().peakBytes - b2 >= floatBytes, 'the float weight exists only when asked for');
});

class Two extends Module {
  fc: Linear;
  conv: Conv2d;
  constructor(gen: g.Generator) {
    super();
    this.conv = this.module('conv', new Conv2d(4, 6, 3, { padding: 1, generator: gen }));
    this.fc = this.module('fc', new Linear(6, 5, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    return this.fc.forward(g.mean(g.relu(this.conv.forward(x)), [2, 3]));
  }
}

test('LoRA on a 4-bit base equals LoRA on the dequantised float base (outputs and adapter gradients); merge re-quantises and reports the error', () => {
  const lora = getAdapterMethod('lora');
  const config = lora.configFromRun(SharedAdapterOptionsSchema.parse({ r: 2, alpha: 4, targets: ['conv', 'fc'] }), lora.optionsSchema.parse({}));
  const quantised = new Two(new g.Generator(8));
  const dequantised = new Two(new g.Generator(8));
  for (const name of ['conv', 'fc'] as const) {
    const q = quantizeLayer(quantised[name])!;
    quantised.setModule(name, q);
    g.assign(dequantised[name].weight, g.tensor(dequantize4(q.quantized), q.quantized.state.shape));
  }
  const pq = new PeftModel(quantised, lora, config, 'default', { generator: new g.Generator(9) });
  const pf = new PeftModel(dequantised, lora, config, 'default', { generator: new g.Generator(9) });
  for (const p of [pq, pf]) g.noGrad(() => { for (const t of p.model.trainableParameters()) g.assign(t, g.add(t, g.randn(t.shape, { std: 0.1, generator: new g.Generator(t.size) }))); });
  const x = g.randn([2, 4, 5, 5], { generator: new g.Generator(10) });
  const yq = pq.forward(x);
  const yf = pf.forward(x);
  assert.ok(maxDiff(yq, yf) <= 1e-5, `outputs: ${maxDiff(yq, yf)}`);
  g.sum(yq).backward();
  g.sum(yf).backward();
  const gf = new Map(pf.model.namedParameters());
  let n = 0;
  for (const [k, t] of pq.model.namedParameters()) if (t.requiresGrad) {
    assert.ok(t.grad, `${k} has a gradient`);
    assert.ok(maxDiff(t.grad, gf.get(k)!.grad!) <= 1e-5, `${k} gradient`);
    n++;
  }
  assert.ok(n >= 4, 'the LoRA A/B of both layers train');
  // merging: dequantise, add ΔW, re-quantise, with the rounding error reported
  const before = g.noGrad(() => pq.forward(x));
  const merged = pq.mergeAndUnload();
  assert.ok(maxDiff(g.noGrad(() => merged.forward(x)), before) <= 1e-5, 'merged into the dequantised weights: the same output');
  const reports = ['conv', 'fc'].map((k) => (merged.getModule(k) as Linear4bit | Conv2d4bit).requantize());
  for (const r of reports) assert.ok(r.maxAbsError > 0 && r.rmsError > 0 && r.rmsError <= r.maxAbsError, JSON.stringify(r));
  assert.ok(merged.getModule('fc') instanceof Linear4bit && merged.getModule('conv') instanceof Conv2d4bit, 'the merged layers are 4-bit');
  const after = g.noGrad(() => merged.forward(x));
  assert.ok(maxDiff(after, before) > 0 && maxDiff(after, before) < 0.2 * scaleOf(before), `re-quantised merge output moves by the rounding: ${maxDiff(after, before)}`);
  // mergeAndUnload({ requantize: true }) does both and keeps the reports by path
  const base = new Two(new g.Generator(8));
  for (const name of ['conv', 'fc']) base.setModule(name, quantizeLayer(base.getModule(name))!);
  const again = new PeftModel(base, lora, config, 'default', { generator: new g.Generator(9) });
  again.mergeAndUnload({ requantize: true });
  assert.deepEqual([...again.lastRequantize.keys()].sort(), ['conv', 'fc']);
});

test('a 4-bit layer saves under bitsandbytes\' names and reloads exactly', () => {
  const q = Linear4bit.fromLinear(new Linear(40, 8, { generator: new g.Generator(11) }), { doubleQuant: true });
  const keys = [...q.stateDict().keys()].sort();
  assert.deepEqual(keys, ['bias', 'weight', 'weight.absmax', 'weight.nested_absmax', 'weight.nested_quant_map', 'weight.quant_map', 'weight.quant_state.bitsandbytes__nf4']);
  const sd = q.stateDict();
  assert.deepEqual([...sd.get('weight')!.shape], [160, 1]);
  assert.equal(sd.get('weight')!.dtype, 'uint8');
  assert.equal(sd.get('weight.absmax')!.dtype, 'uint8');
  const json = JSON.parse(new TextDecoder().decode(sd.get('weight.quant_state.bitsandbytes__nf4')!.toArray() as Uint8Array));
  assert.deepEqual(Object.keys(json).sort(), ['blocksize', 'dtype', 'nested_blocksize', 'nested_dtype', 'nested_offset', 'quant_type', 'shape']);
  assert.equal(json.quant_type, 'nf4');
  assert.deepEqual(json.shape, [8, 40]);
  const other = Linear4bit.fromLinear(new Linear(40, 8, { generator: new g.Generator(12) }), { quantType: 'fp4' });
  const state = new Map([...sd].filter(([k]) => k !== 'bias'));
  other.loadQuantized(state);
  const x = g.randn([3, 40], { generator: new g.Generator(13) });
  g.assign(other.bias!, q.bias!);
  assert.equal(maxDiff(g.noGrad(() => other.forward(x)), g.noGrad(() => q.forward(x))), 0);
});

test('a bitsandbytes 4-bit checkpoint (HF DINOv2 names) loads into 4-bit layers with the file\'s own codes, and computes as its dequantised float checkpoint', async () => {
  const c = JSON.parse(readFileSync(new URL('../../fixtures/models/dinov2.json', import.meta.url), 'utf8')) as { model: string; overrides: Record<string, unknown>; imageSize: [number, number]; numClasses: number; keys: [string, number[]][] };
  const float = detStateDict(c.keys);
  const bnb = new Map<string, g.Tensor>();
  const dequantised = new Map<string, g.Tensor>();
  const quantisedKeys: string[] = [];
  for (const [k, t] of float) {
    if (k.includes('encoder.layer') && k.endsWith('.weight') && t.rank === 2) {
      // bitsandbytes' Linear4bit state: QuantState.as_dict(packed=True) under <prefix>weight.
      const q = quantize4(t.toArray() as Float32Array, t.shape, { quantType: 'nf4', doubleQuant: true });
      const json = new TextEncoder().encode(JSON.stringify({ quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape: [...t.shape], nested_blocksize: 256, nested_dtype: 'float32', nested_offset: q.state.nested!.offset }));
      bnb.set(k, g.tensor(q.packed, [q.packed.length, 1], { dtype: 'uint8' }));
      bnb.set(`${k}.absmax`, g.tensor(q.state.absmax as Uint8Array, [q.state.absmax.length], { dtype: 'uint8' }));
      bnb.set(`${k}.quant_map`, g.tensor(Float32Array.from(NF4_CODE), [16]));
      bnb.set(`${k}.nested_absmax`, g.tensor(q.state.nested!.absmax, [q.state.nested!.absmax.length]));
      bnb.set(`${k}.nested_quant_map`, g.tensor(q.state.nested!.code, [256]));
      bnb.set(`${k}.quant_state.bitsandbytes__nf4`, g.tensor(json, [json.length], { dtype: 'uint8' }));
      dequantised.set(k, g.tensor(dequantize4(q), t.shape));
      quantisedKeys.push(k);
    } else {
      bnb.set(k, t);
      dequantised.set(k, t);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'graft-bnb-'));
  saveSafetensors(join(dir, 'bnb.safetensors'), bnb);
  saveSafetensors(join(dir, 'float.safetensors'), dequantised);
  const req = { name: c.model, overrides: c.overrides, imageSize: c.imageSize[0], numClasses: c.numClasses };
  const q = (await buildModel({ ...req, weights: join(dir, 'bnb.safetensors') })).eval();
  const f = (await buildModel({ ...req, weights: join(dir, 'float.safetensors') })).eval();
  const layers = q.namedModules().filter(([, m]) => m instanceof Linear4bit);
  assert.equal(layers.length, quantisedKeys.length, 'every 4-bit layer of the file is 4-bit in the model');
  const first = layers[0]![1] as Linear4bit;
  const state = first.stateDict();
  const fileKey = quantisedKeys.find((k) => bnb.get(k)!.size === state.get('weight')!.size)!;
  assert.deepEqual(Array.from(state.get('weight')!.toArray()), Array.from(bnb.get(fileKey)!.toArray()), 'the packed codes are the file\'s');
  const x = g.randn([2, 3, ...c.imageSize], { generator: new g.Generator(14) });
  const yq = g.noGrad(() => q.forward(x));
  const yf = g.noGrad(() => f.forward(x));
  assert.ok(maxDiff(yq, yf) <= 1e-4 * Math.max(1, scaleOf(yf)), `outputs: ${maxDiff(yq, yf)}`);
});

test('a 4-bit checkpoint whose quant state is incomplete or inconsistent is refused, naming the layer', () => {
  const packed = g.tensor(new Uint8Array(8), [8, 1], { dtype: 'uint8' });
  const json = (shape: number[]) => { const b = new TextEncoder().encode(JSON.stringify({ quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape })); return g.tensor(b, [b.length], { dtype: 'uint8' }); };
  assert.throws(() => readQuantizedLayer(new Map([['weight', packed], ['weight.quant_state.bitsandbytes__nf4', json([4, 4])]]), 'fc', 'x.safetensors'), /x\.safetensors: the 4-bit layer fc has .* but no fc\.weight\.absmax/);
  assert.throws(() => readQuantizedLayer(new Map([['weight', packed], ['weight.absmax', g.tensor([1])], ['weight.quant_state.bitsandbytes__nf4', json([8, 8])]]), 'fc', 'x.safetensors'), /fc\.weight holds 8 bytes, but its quant_state shape \[8, 8\] needs 32/);
});

test('a 4-bit convolution followed by a BatchNorm is not folded (folding would build its float weight), and computes conv then BN', () => {
  const gen = new g.Generator(15);
  const conv = Conv2d4bit.fromConv(new Conv2d(4, 6, 3, { padding: 1, generator: gen }));
  const bn = new BatchNorm2d(6).eval();
  g.noGrad(() => { g.assign(bn.runningMean!, g.randn([6], { generator: gen })); g.assign(bn.runningVar!, g.add(g.abs(g.randn([6], { generator: gen })), 0.5)); });
  const x = g.randn([2, 4, 5, 5], { generator: gen });
  assert.equal(convBatchNormFolded(conv, bn, x), null);
  const y = g.noGrad(() => withFoldedWeights(() => convBn(conv, bn, x)));
  const want = g.noGrad(() => bn.forward(conv.forward(x)));
  assert.equal(maxDiff(y, want), 0);
});

test('withQuantizedLayers: a model built with each layer quantised as it is made equals the model built in float and quantised after', () => {
  const overrides = { hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4, patchSize: 4 };
  g.manualSeed(21);
  const built = withQuantizedLayers({ quantType: 'nf4', doubleQuant: true }, () => createModel('dinov3_vits16', { overrides, imageSize: 32, numClasses: 3 }));
  g.manualSeed(21);
  const after = createModel('dinov3_vits16', { overrides, imageSize: 32, numClasses: 3 });
  quantizeModule(after, { quantType: 'nf4', doubleQuant: true });
  const a = built.namedModules().filter(([, m]) => m instanceof Linear4bit || m instanceof Conv2d4bit).map(([p]) => p);
  const b = after.namedModules().filter(([, m]) => m instanceof Linear4bit || m instanceof Conv2d4bit).map(([p]) => p);
  assert.deepEqual(a, b);
  assert.ok(a.length > 8);
  const x = g.randn([2, 3, 32, 32], { generator: new g.Generator(22) });
  built.eval();
  after.eval();
  assert.equal(maxDiff(g.noGrad(() => built.forward(x)), g.noGrad(() => after.forward(x))), 0);
});
