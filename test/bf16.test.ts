// bf16 compute (`--precision bf16`, src/ops/precision.ts): the float32 → bf16 rounding against
// PyTorch's (fixtures/bf16/make_bf16_fixtures.py), each bf16 product against the float64 product of
// the bf16-rounded operands (PyTorch's) and against float32 within bf16's tolerance, the 4-bit
// kernels dequantising straight to bf16 against the reference backend's emulation, only frozen
// weights taking the bf16 path, the copies freed with their scope, and a 10-step LoRA training
// trajectory in bf16 beside float32's. Where the CPU has no bf16 kernels, bf16 must equal float32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as g from '../src/index.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { Conv2d4bit, Linear4bit } from '../src/nn/quant4.js';
import { createModel } from '../src/models/registry.js';
import '../src/models/all.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import { quantizeModule } from '../src/nn/quant4.js';
import type { Module } from '../src/nn/module.js';
import { getBackend } from '../src/backends/registry.js';
import { codeOf, quantize4 } from '../src/tensor/quant4.js';

const fx = JSON.parse(readFileSync(new URL('../../fixtures/bf16/bf16.json', import.meta.url), 'utf8')) as {
  values: number[]; rounded: number[]; x: number[]; w: number[]; b: number[]; gy: number[]; y: number[]; gx: number[];
};
const unavailable = g.bf16Unavailable();
const fromBits = (u: number) => new Float32Array(Uint32Array.from([u]).buffer)[0]!;

function maxRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  return worst / scale;
}

test('roundBf16 rounds float32 to bf16 exactly as PyTorch does (ties to even, subnormals, infinities)', () => {
  for (let i = 0; i < fx.values.length; i++) {
    const v = fromBits(fx.values[i]!);
    const want = fromBits(fx.rounded[i]!);
    assert.ok(Object.is(g.roundBf16(v), want), `${v}: got ${g.roundBf16(v)}, PyTorch ${want}`);
  }
  assert.ok(Number.isNaN(g.roundBf16(NaN)));
});

/** A frozen Linear from the fixture; y and the gradient to x of sum(y · gy). */
function fixtureLinear(precision: 'fp32' | 'bf16') {
  const lin = new Linear(40, 24);
  g.noGrad(() => {
    g.assign(lin.weight, g.tensor(Float32Array.from(fx.w), [24, 40]));
    g.assign(lin.bias!, g.tensor(Float32Array.from(fx.b), [24]));
  });
  lin.weight.requiresGrad = false;
  lin.bias!.requiresGrad = false;
  return g.withComputePrecision(precision, () => {
    const x = g.tensor(Float32Array.from(fx.x), [7, 40]).requiresGrad_();
    const y = lin.forward(x);
    g.sum(g.mul(y, g.tensor(Float32Array.from(fx.gy), [7, 24]))).backward();
    return { y: Float32Array.from(y.toArray()), gx: Float32Array.from(x.grad!.toArray()) };
  });
}

test('bf16 Linear: forward and gradient to the input equal PyTorch\'s product of the bf16-rounded operands', { skip: unavailable ?? false }, () => {
  const bf = fixtureLinear('bf16');
  const fp = fixtureLinear('fp32');
  // Exact bf16 products summed in float32: only the summation order differs from float64.
  assert.ok(maxRel(bf.y, fx.y) < 1e-6, `forward: ${maxRel(bf.y, fx.y)}`);
  assert.ok(maxRel(bf.gx, fx.gx) < 1e-6, `gradient to x: ${maxRel(bf.gx, fx.gx)}`);
  // …and it really is bf16: float32 differs from it by bf16's rounding, not by nothing.
  const d = maxRel(bf.y, fp.y);
  assert.ok(d > 1e-5 && d < 1e-2, `bf16 against fp32: ${d}`);
});

test('bf16 where the CPU has no bf16 kernels: products are float32, bit for bit', { skip: unavailable === null }, () => {
  const bf = fixtureLinear('bf16');
  const fp = fixtureLinear('fp32');
  assert.deepEqual(bf.y, fp.y);
  assert.deepEqual(bf.gx, fp.gx);
});

test('bf16 ops against float32: one table, each within bf16\'s tolerance', { skip: unavailable ?? false }, () => {
  const gen = new g.Generator(7);
  const rows: [string, number, number][] = [];
  // Relative error of a K-term bf16 dot product: about 2^-9 · sqrt(K) for random signs; bounded by 1e-2 here.
  const tol = 1e-2;
  for (const [k, n] of [[64, 48], [768, 256], [3072, 96]] as const) {
    const fl = new Linear(k, n, { generator: gen });
    fl.weight.requiresGrad = false;
    const q = Linear4bit.fromLinear(fl, { quantType: 'nf4', doubleQuant: true });
    const x = g.randn([9, k], { generator: gen });
    const gy = g.randn([9, n], { generator: gen });
    for (const [label, layer] of [['linear', fl], ['linear4bit (NF4)', q]] as const) {
      const run = (p: 'fp32' | 'bf16') => g.withComputePrecision(p, () => {
        const xi = x.detach().requiresGrad_();
        const y = layer.forward(xi);
        y.backward(gy);
        return { y: Float32Array.from(y.toArray()), gx: Float32Array.from(xi.grad!.toArray()) };
      });
      const a = run('fp32');
      const b = run('bf16');
      rows.push([`${label} ${k}→${n} forward`, maxRel(b.y, a.y), tol], [`${label} ${k}→${n} gradient to x`, maxRel(b.gx, a.gx), tol]);
    }
  }
  // Frozen convolutions: a 7×7 stride-2 stem, a 3×3, a 1×1 (pointwise), on NCHW activations.
  for (const [cin, cout, k, stride, size] of [[3, 16, 7, 2, 20], [32, 48, 3, 1, 12], [64, 32, 1, 1, 9]] as const) {
    const conv = new Conv2d(cin, cout, k, { stride, padding: Math.floor(k / 2), generator: gen });
    conv.weight.requiresGrad = false;
    const q = Conv2d4bit.fromConv(conv, { quantType: 'nf4' });
    const x = g.randn([2, cin, size, size], { generator: gen });
    for (const [label, layer] of [[`conv2d ${k}×${k}/${stride} ${cin}→${cout}`, conv], [`conv2d4bit (NF4) ${k}×${k}/${stride} ${cin}→${cout}`, q]] as const) {
      const run = (p: 'fp32' | 'bf16') => g.withComputePrecision(p, () => {
        const xi = x.detach().requiresGrad_();
        const y = layer.forward(xi);
        y.backward(g.onesLike(y));
        return { y: Float32Array.from(y.toArray()), gx: Float32Array.from(xi.grad!.toArray()) };
      });
      const a = run('fp32');
      const b = run('bf16');
      rows.push([`${label} forward`, maxRel(b.y, a.y), tol], [`${label} gradient to x`, maxRel(b.gx, a.gx), tol]);
    }
  }
  console.log('# | bf16 op | max |bf16 − fp32| / max |fp32| | bound |');
  for (const [op, err, bound] of rows) console.log(`# | ${op} | ${err.toExponential(2)} | ${bound} |`);
  for (const [op, err, bound] of rows) {
    assert.ok(err < bound, `${op}: ${err}`);
    assert.ok(err > 1e-6, `${op} took the bf16 path (${err})`);
  }
});

test('bf16 q4Linear: the native kernel (dequantising straight to bf16) equals the reference backend\'s emulation', { skip: unavailable ?? false }, () => {
  const gen = new g.Generator(11);
  // 1500 × 900 weights: two chunks of at most 2^20 floats.
  const [rows, cols, m] = [1500, 900, 5];
  const w = g.randn([rows, cols], { std: 0.05, generator: gen }).toArray();
  const qz = quantize4(w, [rows, cols], { quantType: 'fp4', blocksize: 128 });
  const weight = { packed: qz.packed, scales: qz.state.absmax as Float32Array, code: codeOf('fp4'), blocksize: 128 };
  const x = Float32Array.from(g.randn([m, cols], { generator: gen }).toArray());
  const gy = Float32Array.from(g.randn([m, rows], { generator: gen }).toArray());
  const bias = Float32Array.from(g.randn([rows], { generator: gen }).toArray());
  for (const trans of [false, true]) {
    const input = trans ? gy : x;
    const outLen = m * (trans ? cols : rows);
    const out = (name: 'native' | 'reference', bf16: boolean) => {
      const y = new Float32Array(outLen);
      getBackend(name).q4Linear(input, weight, trans ? null : bias, y, 'float32', { m, rows, cols, trans, bf16 });
      return y;
    };
    const nat = out('native', true);
    const ref = out('reference', true);
    const fp = out('reference', false);
    assert.ok(maxRel(nat, ref) < 1e-6, `${trans ? 'gradient to x' : 'forward'}: native against the emulation ${maxRel(nat, ref)}`);
    const d = maxRel(nat, fp);
    assert.ok(d > 1e-5 && d < 1e-2, `${trans ? 'gradient to x' : 'forward'}: bf16 against fp32 ${d}`);
  }
});

test('bf16 conv2d: the native convolution (forward, fused ReLU, gradient to x) equals the reference backend\'s emulation', { skip: unavailable ?? false }, () => {
  const gen = new g.Generator(12);
  for (const [cin, cout, k, stride, pad, size] of [[3, 24, 7, 2, 3, 17], [40, 56, 3, 1, 1, 11], [64, 48, 1, 1, 0, 8], [16, 32, 3, 2, 0, 13]] as const) {
    const n = 2;
    const outH = Math.floor((size + 2 * pad - k) / stride) + 1;
    const p = { n, cIn: cin, h: size, w: size, cOut: cout, kh: k, kw: k, outH, outW: outH, strideH: stride, strideW: stride, padH: pad, padW: pad, dilH: 1, dilW: 1, groups: 1 };
    const arr = (len: number) => Float32Array.from(g.randn([len], { generator: gen }).toArray());
    const x = arr(n * cin * size * size);
    const w = arr(cout * cin * k * k);
    const bias = arr(cout);
    const gy = arr(n * cout * outH * outH);
    const label = `${k}×${k}/${stride} ${cin}→${cout}`;
    const forward = (name: 'native' | 'reference', bf16: boolean, clip: boolean) => {
      const y = new Float32Array(n * cout * outH * outH);
      if (clip) getBackend(name).conv2dClip(x, w, bias, y, 'float32', { ...p, bf16 }, 0, 6);
      else getBackend(name).conv2d(x, w, bias, y, 'float32', { ...p, bf16 });
      return y;
    };
    const backward = (name: 'native' | 'reference', bf16: boolean) => {
      const gx = new Float32Array(x.length);
      getBackend(name).conv2dBackwardData(gy, w, gx, 'float32', { ...p, bf16 });
      return gx;
    };
    for (const clip of [false, true]) {
      const nat = forward('native', true, clip);
      assert.ok(maxRel(nat, forward('reference', true, clip)) < 1e-5, `${label}${clip ? ' + ReLU6' : ''}: native against the emulation ${maxRel(nat, forward('reference', true, clip))}`);
      // (unit-variance operands, up to 147 terms: bf16's rounding shows as a few 1e-3 of the largest output)
      const d = maxRel(nat, forward('reference', false, clip));
      assert.ok(d > 1e-5 && d < 5e-2, `${label}: bf16 against fp32 ${d}`);
    }
    // The 4-bit convolution: the dequantised chunks as bf16 operands.
    const qz = quantize4(w, [cout, cin, k, k], { quantType: 'nf4', blocksize: 64 });
    const q4w = { packed: qz.packed, scales: qz.state.absmax as Float32Array, code: codeOf('nf4'), blocksize: 64 };
    const q4 = (name: 'native' | 'reference', bf16: boolean) => {
      const y = new Float32Array(n * cout * outH * outH);
      getBackend(name).q4Conv2d(x, q4w, bias, y, 'float32', { ...p, bf16 });
      const gx4 = new Float32Array(x.length);
      getBackend(name).q4Conv2dBackwardData(gy, q4w, gx4, 'float32', { ...p, bf16 });
      return [y, gx4] as const;
    };
    const [qn, qnx] = q4('native', true);
    const [qr, qrx] = q4('reference', true);
    assert.ok(maxRel(qn, qr) < 1e-5 && maxRel(qnx, qrx) < 1e-5, `${label} 4-bit: native against the emulation ${maxRel(qn, qr)}, ${maxRel(qnx, qrx)}`);
    assert.ok(maxRel(qn, q4('reference', false)[0]) > 1e-5, `${label} 4-bit: took the bf16 path`);
    const gx = backward('native', true);
    assert.ok(maxRel(gx, backward('reference', true)) < 1e-5, `${label} gradient to x: native against the emulation ${maxRel(gx, backward('reference', true))}`);
    const d = maxRel(gx, backward('reference', false));
    assert.ok(d > 1e-5 && d < 5e-2, `${label} gradient to x: bf16 against fp32 ${d}`);
  }
});

test('bf16 takes only frozen weights: a trainable Linear computes in float32 and gets its float32 gradient', () => {
  const gen = new g.Generator(3);
  const lin = new Linear(64, 32, { generator: gen });
  const x = g.randn([6, 64], { generator: gen });
  const grads = (p: 'fp32' | 'bf16') => g.withComputePrecision(p, () => {
    lin.weight.grad = null;
    const y = lin.forward(x);
    g.sum(g.square(y)).backward();
    return { y: Float32Array.from(y.toArray()), gw: Float32Array.from(lin.weight.grad!.toArray()) };
  });
  const a = grads('fp32');
  const b = grads('bf16');
  assert.deepEqual(b.y, a.y);
  assert.deepEqual(b.gw, a.gw);
});

test('bf16 copies of frozen weights live as long as their scope', { skip: unavailable ?? false }, () => {
  const lin = new Linear(128, 64, { generator: new g.Generator(2) });
  lin.weight.requiresGrad = false;
  const x = g.randn([4, 128], { generator: new g.Generator(5) }).requiresGrad_();
  const before = g.memory().liveBytes;
  let inside = 0;
  g.withComputePrecision('bf16', () => {
    for (let i = 0; i < 3; i++) {
      g.tidy(() => g.sum(lin.forward(x)).backward());
      x.grad?.dispose();
      x.grad = null;
      if (i === 0) inside = g.memory().liveBytes;
      // After the first step (which packs the weight twice) every step returns to the same level.
      else assert.equal(g.memory().liveBytes, inside, `step ${i}`);
    }
  });
  assert.ok(inside > before, 'the packed copies are alive inside the scope');
  lin.bias!.grad?.dispose(); // the trainable bias's gradient, accumulated over the steps
  lin.bias!.grad = null;
  assert.equal(g.memory().liveBytes, before, 'and freed when it ends');
});

function loraPeft(model: Module): PeftModel<Module> {
  const m = getAdapterMethod('lora');
  const config = m.configFromRun(SharedAdapterOptionsSchema.parse({ r: 4, alpha: 8, targets: 'all-linear' }), m.optionsSchema.parse({}));
  return new PeftModel(model, m, config, 'default', { generator: new g.Generator(3) });
}

for (const quantised of [false, true]) {
  test(`10 LoRA steps on a ViT${quantised ? ' with an NF4 base' : ''} in bf16 stay within 2% of float32's losses`, { skip: unavailable ?? false }, () => {
    const x = g.randn([8, 3, 32, 32], { generator: new g.Generator(4) });
    const y = g.tensor(Int32Array.from([0, 1, 2, 0, 1, 2, 0, 1]), [8]);
    const trajectory = (p: 'fp32' | 'bf16') => {
      g.manualSeed(1);
      const model = createModel('vit_small_patch16_224', { overrides: { depth: 2, embedDim: 64, numHeads: 2, patchSize: 8 }, imageSize: 32, numClasses: 3 });
      if (quantised) quantizeModule(model, { quantType: 'nf4', blocksize: 64 }, (path) => path === 'head');
      const peft = loraPeft(model);
      const opt = new g.AdamW(peft.model.trainableParameters(), { lr: 3e-3 });
      peft.train();
      const losses: number[] = [];
      g.withComputePrecision(p, () => {
        for (let i = 0; i < 10; i++) {
          losses.push(g.tidy(() => {
            opt.zeroGrad();
            const l = g.crossEntropy(peft.forward(x), y);
            l.backward();
            opt.step();
            return l.item();
          }));
        }
      });
      return losses;
    };
    const a = trajectory('fp32');
    const b = trajectory('bf16');
    const worst = Math.max(...a.map((v, i) => Math.abs(v - b[i]!) / Math.abs(v)));
    console.log(`# ${quantised ? 'NF4 base, ' : ''}losses fp32 ${a.map((v) => v.toFixed(4)).join(' ')}`);
    console.log(`# ${quantised ? 'NF4 base, ' : ''}losses bf16 ${b.map((v) => v.toFixed(4)).join(' ')} (largest relative difference ${worst.toExponential(2)})`);
    assert.ok(a[9]! < a[0]!, 'the float32 run learns');
    assert.ok(b[9]! < b[0]!, 'the bf16 run learns');
    assert.ok(worst < 0.02, `largest relative difference of the losses: ${worst}`);
    assert.ok(worst > 0, 'bf16 changed the arithmetic');
  });
}
