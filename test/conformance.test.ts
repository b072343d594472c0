// Native against reference: every case of the op table, forward output and gradients, float32, same inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as g from '../src/index.js';
import type { OpName } from '../src/ops/table.js';
import { opCases } from './helpers/op-cases.js';
import { conv2dAct } from '../src/ops/conv.js';
import { channelsLastInference, isChannelsLast } from '../src/tensor/memory-format.js';

interface Tolerance {
  atol: number;
  rtol: number;
}

// Tolerances: |native − reference| ≤ atol + rtol·|reference|, per op of the table.
const DEFAULT_TOLERANCE: Tolerance = { atol: 1e-5, rtol: 1e-5 };
const TOLERANCE: Partial<Record<OpName, Tolerance>> = {
  // GEMM-based ops sum in a different order (blocked, vectorised): float32 rounding grows with K.
  matmul: { atol: 1e-4, rtol: 1e-4 },
  linear: { atol: 1e-4, rtol: 1e-4 },
  conv2d: { atol: 1e-4, rtol: 1e-4 },
  scaledDotProductAttention: { atol: 1e-4, rtol: 1e-4 },
  // Normalisation backward combines two reductions over the whole row/channel.
  batchNorm: { atol: 1e-4, rtol: 1e-4 },
  layerNorm: { atol: 1e-4, rtol: 1e-4 },
  layerNorm2d: { atol: 1e-4, rtol: 1e-4 },
};

/** The loosest tolerance among the ops a case serves. */
function toleranceFor(ops: readonly OpName[]): Tolerance {
  return ops.map((op) => TOLERANCE[op] ?? DEFAULT_TOLERANCE).reduce((a, b) => (b.atol + b.rtol > a.atol + a.rtol ? b : a), DEFAULT_TOLERANCE);
}

// Cases of ops without a gradient compare forward outputs only.
function run(backend: 'reference' | 'native') {
  return g.withBackend(backend, () =>
    opCases('float32', 99).map(({ name, ops, differentiable, make }) => {
      const [fn, inputs] = make();
      if (differentiable) for (const x of inputs) x.requiresGrad_(true);
      const out = fn(...inputs);
      if (differentiable) {
        const w = g.randn(out.shape, { dtype: out.dtype, generator: new g.Generator(5) });
        g.sum(g.mul(out, w)).backward();
      }
      return { name, ops, out: out.toArray(), grads: inputs.map((x) => x.grad?.toArray() ?? null) };
    }),
  );
}

function maxViolation(a: ArrayLike<number>, b: ArrayLike<number>, tol: Tolerance): string | null {
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= tol.atol + tol.rtol * Math.abs(b[i]!))) return `element ${i}: native ${a[i]}, reference ${b[i]}`;
  }
  return null;
}

const nativeError = g.nativeLoadError();
const required = process.env['CI'] === 'true' || process.env['GRAFT_REQUIRE_NATIVE'] === '1';

test('conformance: the native backend loads', { skip: !required && nativeError ? `native backend unavailable: ${nativeError}` : false }, () => {
  assert.equal(nativeError, '', nativeError);
});

if (!nativeError) {
  const ref = run('reference');
  const nat = run('native');
  ref.forEach((r, i) => {
    test(`conformance: ${r.name}`, () => {
      const n = nat[i]!;
      const tol = toleranceFor(r.ops);
      assert.equal(n.out.length, r.out.length);
      const bad = maxViolation(n.out, r.out, tol);
      assert.equal(bad, null, `forward: ${bad}`);
      r.grads.forEach((rg, j) => {
        const ng = n.grads[j];
        assert.equal(ng === null, rg === null, `gradient ${j} presence`);
        if (rg && ng) {
          const badG = maxViolation(ng, rg, tol);
          assert.equal(badG, null, `gradient of input ${j}: ${badG}`);
        }
      });
    });
  });
}

if (!nativeError) {
  // Layer norm's native backward runs with and without an affine part, and with frozen
  // weight and bias (adapter training): only x takes a gradient then.
  test('conformance: layerNorm without weight and bias, with frozen ones, and at ViT width', () => {
    const variants: [string, number, boolean, boolean][] = [
      ['no affine', 8, false, false],
      ['frozen affine', 16, true, false],
      ['trainable affine, 384 wide', 384, true, true],
    ];
    for (const [label, n, affine, trainAffine] of variants) {
      const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
        const gen = new g.Generator(11);
        const x = g.randn([7, n], { generator: gen }).requiresGrad_(true);
        const w = affine ? g.randn([n], { generator: gen }).requiresGrad_(trainAffine) : null;
        const b = affine ? g.randn([n], { generator: gen }).requiresGrad_(trainAffine) : null;
        const out = g.layerNorm(x, w, b);
        g.sum(g.mul(out, g.randn(out.shape, { generator: gen }))).backward();
        return [out, x.grad, w?.grad ?? null, b?.grad ?? null].map((t) => t?.toArray() ?? null);
      });
      const [r, nat] = [once('reference'), once('native')];
      r.forEach((rv, i) => {
        assert.equal(nat[i] === null, rv === null, `${label}: presence of result ${i}`);
        if (rv) assert.equal(maxViolation(nat[i]!, rv, TOLERANCE.layerNorm!), null, `${label}: result ${i}`);
      });
    }
  });
}

if (!nativeError) {
  // Large softmax forwards take another native path than the small op cases above.
  test('conformance: softmax at attention size (48·197 rows of 197), with masked and large entries', () => {
    const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
      const x = g.mul(g.randn([48 * 197, 197], { generator: new g.Generator(21) }), 8);
      const data = x.toArray() as Float32Array;
      for (let r = 0; r < 48 * 197; r += 7) data[r * 197 + (r % 197)] = -Infinity; // masked positions
      data[5] = 80; // exp overflows without the max shift
      const xm = g.tensor(data, [48 * 197, 197]).requiresGrad_(true);
      const y = g.softmax(xm, -1);
      g.sum(g.mul(y, g.randn(y.shape, { generator: new g.Generator(22) }))).backward();
      return [y.toArray(), xm.grad!.toArray()];
    });
    const [r, n] = [once('reference'), once('native')];
    assert.equal(maxViolation(n[0]!, r[0]!, DEFAULT_TOLERANCE), null, 'forward');
    assert.equal(maxViolation(n[1]!, r[1]!, DEFAULT_TOLERANCE), null, 'gradient');
  });
}

if (!nativeError) {
  // Column sums of a large matrix (bias gradients) take their own native path; odd sizes
  // exercise its 8-, 4- and 1-row steps.
  test('conformance: column sums of large matrices (sum over axis 0, and a bias gradient)', () => {
    for (const [rows, cols] of [[1003, 301], [1576, 1536]] as const) {
      const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
        const gy = g.randn([rows, cols], { generator: new g.Generator(31) });
        const b = g.zeros([cols]).requiresGrad_(true);
        g.add(g.zeros([rows, cols]), b).backward(gy);
        return [g.sum(gy, 0).toArray(), b.grad!.toArray()];
      });
      const [r, n] = [once('reference'), once('native')];
      const tol = { atol: 1e-4, rtol: 1e-5 }; // sums of ~1000 terms in another order
      assert.equal(maxViolation(n[0]!, r[0]!, tol), null, `${rows}×${cols} sum over axis 0`);
      assert.equal(maxViolation(n[1]!, r[1]!, tol), null, `${rows}×${cols} bias gradient`);
    }
  });
}

if (!nativeError) {
  // The native exp/erf kernels work in blocks of 16 and 8 lanes with a masked tail: every row
  // width from 1 to 40, an odd length split across threads at unaligned offsets, values far in
  // both tails, and attention rows of every causal length with a negative scale as well.
  test('conformance: softmax, log-softmax, gelu and attention at every vector tail length', () => {
    const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
      const results: [string, ArrayLike<number>][] = [];
      const gen = new g.Generator(41);
      const weighted = (t: g.Tensor) => g.sum(g.mul(t, g.randn(t.shape, { generator: gen })));
      for (let n = 1; n <= 40; n++) {
        const x = g.mul(g.randn([3, n], { generator: gen }), 6).requiresGrad_(true);
        const y = g.softmax(x, -1);
        const l = g.logSoftmax(x, -1);
        g.add(weighted(y), weighted(l)).backward();
        const z = g.mul(g.randn([n], { generator: gen }), 4).requiresGrad_(true);
        const gz = g.gelu(z);
        weighted(gz).backward();
        results.push([`softmax width ${n}`, y.toArray()], [`logSoftmax width ${n}`, l.toArray()], [`softmax/logSoftmax grad width ${n}`, x.grad!.toArray()]);
        results.push([`gelu length ${n}`, gz.toArray()], [`gelu grad length ${n}`, z.grad!.toArray()]);
      }
      const data = g.mul(g.randn([100_003], { generator: gen }), 3).toArray() as Float32Array;
      [-40, -12, -6, -4, -1e-6, 0, 1e-6, 4, 6, 12, 40].forEach((v, i) => (data[i * 9091] = v));
      const big = g.tensor(data, [100_003]).requiresGrad_(true);
      const gb = g.gelu(big);
      weighted(gb).backward();
      results.push(['gelu 100003', gb.toArray()], ['gelu grad 100003', big.grad!.toArray()]);
      // Probabilities kept from the forward (the default at this size) and recomputed.
      for (const [causal, scale, saveProbs] of [[false, undefined, true], [true, undefined, true], [true, -0.3, true], [false, undefined, false], [true, -0.3, false]] as const) {
        const [q, k, v] = [0, 1, 2].map(() => g.randn([3, 37, 12], { generator: gen }).requiresGrad_(true)) as [g.Tensor, g.Tensor, g.Tensor];
        const o = g.scaledDotProductAttention(q, k, v, { causal, saveProbs, ...(scale === undefined ? {} : { scale }) });
        weighted(o).backward();
        const what = `attention causal=${causal} scale=${scale ?? 'default'} saveProbs=${saveProbs}`;
        results.push([what, o.toArray()], [`${what} gq`, q.grad!.toArray()], [`${what} gk`, k.grad!.toArray()], [`${what} gv`, v.grad!.toArray()]);
      }
      return results;
    });
    const [r, n] = [once('reference'), once('native')];
    r.forEach(([what, rv], i) => {
      const tol = what.startsWith('attention') ? TOLERANCE.scaledDotProductAttention! : DEFAULT_TOLERANCE;
      assert.equal(maxViolation(n[i]![1], rv, tol), null, what);
    });
  });
}

if (!nativeError) {
  // The exp/erf kernels exist for AVX2 and AVX-512; the addon picks one when it loads.
  const level = (createRequire(import.meta.url)('../../build/Release/graft_native.node') as { simd: string }).simd;

  test('conformance: the vector kernels run at the level GRAFT_SIMD asks for, else the CPU\'s best', () => {
    const want = process.env['GRAFT_SIMD'];
    if (want === 'avx2') assert.equal(level, 'avx2');
    else assert.ok(level === 'avx2' || level === 'avx512', `unknown level '${level}'`);
  });

  test('conformance: the AVX2 kernels as well, on a CPU that picks AVX-512', { skip: level !== 'avx512' ? `this CPU runs ${level}` : false }, () => {
    // A fresh process (the addon reads GRAFT_SIMD when it loads) that reports to its own stdout.
    const env: NodeJS.ProcessEnv = { ...process.env, GRAFT_SIMD: 'avx2' };
    delete env['NODE_TEST_CONTEXT'];
    const r = spawnSync(process.execPath, ['--test-reporter=tap', '--test-name-pattern=vector tail length|level GRAFT_SIMD', fileURLToPath(import.meta.url)], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# pass 2\b/, r.stdout);
  });
}

if (!nativeError) {
  // oneDNN's GEMMs run 10–20% slower on operands that do not start on a cache line.
  test('native: large buffers start on a 64-byte boundary, small ones are left as V8 places them', () => {
    const addon = createRequire(import.meta.url)('../../build/Release/graft_native.node') as { alignOffset: (b: ArrayBuffer) => number };
    g.withBackend('native', () => {
      for (const shape of [[1576, 384], [33, 31], [4096]]) {
        const t = g.mul(g.randn(shape), 2);
        const buf = (t.storage as unknown as { buf: Float32Array }).buf;
        if (buf.byteLength >= 4096) assert.equal(addon.alignOffset(buf.buffer as ArrayBuffer), buf.byteOffset, `shape ${shape}`);
        assert.equal(buf.length, t.size, `shape ${shape}: the view covers the tensor exactly`);
        t.dispose();
      }
    });
  });
}

if (!nativeError) {
  // Large depthwise kernels (ConvNeXt's 7×7) run forward and backward-data on oneDNN's blocked
  // kernels once a convolution is large enough; the op cases above are too small to reach them.
  // Depthwise convolutions on small planes (W ≤ 32) run 16 channels at a time in an interleaved
  // tile: channel counts off a multiple of 16, strides, dilation, odd sizes, with and without the clamp.
  test('conformance: depthwise convolutions on small planes, 16 channels at a time, with bias and clamp', () => {
    const cases: { c: number; h: number; w: number; k: number; stride: number; padding: number; dilation: number; act: 'relu6' | null }[] = [
      { c: 40, h: 14, w: 13, k: 3, stride: 1, padding: 1, dilation: 1, act: 'relu6' },
      { c: 24, h: 15, w: 15, k: 3, stride: 2, padding: 0, dilation: 1, act: 'relu6' },
      { c: 17, h: 7, w: 7, k: 5, stride: 1, padding: 2, dilation: 1, act: null },
      { c: 16, h: 9, w: 11, k: 3, stride: 1, padding: 2, dilation: 2, act: null },
      { c: 33, h: 12, w: 32, k: 7, stride: 2, padding: 3, dilation: 1, act: 'relu6' },
    ];
    for (const k of cases) {
      const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
        const gen = new g.Generator(k.c * 7 + k.k);
        const x = g.randn([2, k.c, k.h, k.w], { generator: gen }).requiresGrad_(true);
        const w = g.randn([k.c, 1, k.k, k.k], { generator: gen }).requiresGrad_(true);
        const b = g.randn([k.c], { generator: gen }).requiresGrad_(true);
        const opts = { groups: k.c, padding: k.padding, stride: k.stride, dilation: k.dilation };
        if (k.act) return [g.noGrad(() => conv2dAct(x, w, b, opts, k.act!)).toArray()];
        const y = g.conv2d(x, w, b, opts);
        g.sum(g.mul(y, g.randn(y.shape, { generator: gen }))).backward();
        return [y, x.grad!, w.grad!, b.grad!].map((t) => t.toArray());
      });
      const [r, n] = [once('reference'), once('native')];
      r.forEach((_, i) => assert.equal(maxViolation(n[i]!, r[i]!, TOLERANCE.conv2d!), null, `${JSON.stringify(k)}: ${['output', 'x grad', 'weight grad', 'bias grad'][i]}`));
    }
  });

  // Pointwise convolutions run in column tiles, bias and clamp applied per tile, once the tiles
  // occupy every thread (a shorter last tile; a single image in one tile falls back).
  test('conformance: pointwise convolutions in column tiles, with bias and clamp', () => {
    const cases: { n: number; cIn: number; cOut: number; h: number; w: number }[] = [
      { n: 1, cIn: 16, cOut: 96, h: 56, w: 55 },
      { n: 2, cIn: 24, cOut: 40, h: 20, w: 20 },
      { n: 1, cIn: 24, cOut: 40, h: 20, w: 20 },
      { n: 3, cIn: 320, cOut: 1280, h: 7, w: 7 },
    ];
    for (const k of cases) {
      const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
        const gen = new g.Generator(k.cIn + k.cOut);
        const x = g.randn([k.n, k.cIn, k.h, k.w], { generator: gen });
        const w = g.mul(g.randn([k.cOut, k.cIn, 1, 1], { generator: gen }), 1 / Math.sqrt(k.cIn));
        const b = g.randn([k.cOut], { generator: gen });
        return g.noGrad(() => [conv2dAct(x, w, b, {}, 'relu6'), g.conv2d(x, w, b, {}), g.conv2d(x, w, null, {})].map((t) => t.toArray()));
      });
      const [r, n] = [once('reference'), once('native')];
      r.forEach((_, i) => assert.equal(maxViolation(n[i]!, r[i]!, TOLERANCE.conv2d!), null, `${JSON.stringify(k)}: ${['relu6', 'bias', 'no bias'][i]}`));
    }
  });

  // Channels-last maps (tensor/memory-format.ts): every convolution kind from an NCHW or a
  // channels-last input, writing channels-last, then a residual add and a pad of two such maps;
  // native against the reference backend, and each against the plain NCHW result.
  test('conformance: channels-last convolutions, adds, pads, max pooling and unary ops equal their NCHW results on both backends', () => {
    const toNhwc = (t: g.Tensor) => g.permute(g.contiguous(g.permute(t, [0, 2, 3, 1])), [0, 3, 1, 2]);
    const cases: { cIn: number; cOut: number; k: number; stride: number; padding: number; groups: number; act: 'relu6' | null }[] = [
      { cIn: 24, cOut: 40, k: 1, stride: 1, padding: 0, groups: 1, act: 'relu6' },
      { cIn: 24, cOut: 40, k: 1, stride: 1, padding: 0, groups: 1, act: null },
      { cIn: 40, cOut: 40, k: 3, stride: 1, padding: 1, groups: 40, act: 'relu6' },
      { cIn: 40, cOut: 40, k: 3, stride: 2, padding: 0, groups: 40, act: null },
      { cIn: 3, cOut: 16, k: 3, stride: 2, padding: 1, groups: 1, act: 'relu6' },
      { cIn: 16, cOut: 24, k: 3, stride: 1, padding: 1, groups: 1, act: null },
    ];
    for (const c of cases) {
      for (const nhwcInput of [false, true]) {
        const once = (backend: 'reference' | 'native', channelsLast: boolean) => g.withBackend(backend, () => g.noGrad(() => {
          const gen = new g.Generator(c.cIn * 31 + c.k);
          const x0 = g.randn([2, c.cIn, 11, 12], { generator: gen });
          const w = g.mul(g.randn([c.cOut, c.cIn / c.groups, c.k, c.k], { generator: gen }), 0.3);
          const b = g.randn([c.cOut], { generator: gen });
          const x = nhwcInput ? toNhwc(x0) : x0;
          const opts = { stride: c.stride, padding: c.padding, groups: c.groups };
          const run = () => {
            const y = c.act ? conv2dAct(x, w, b, opts, c.act) : g.conv2d(x, w, b, opts);
            const pooled = g.maxPool2d(y, 3, { stride: 2, padding: 1 });
            if (channelsLast && isChannelsLast(y)) assert.ok(isChannelsLast(pooled), 'max pooling keeps the layout');
            return [y, g.add(y, y), g.pad(y, [1, 0, 0, 1]), pooled, g.relu(y)];
          };
          const outs = channelsLast ? channelsLastInference(run) : run();
          if (channelsLast && (nhwcInput || c.groups === 1)) assert.ok(isChannelsLast(outs[0]!), `${JSON.stringify(c)}: the output is channels-last`);
          return outs.map((t) => Float32Array.from(t.toArray() as Float32Array));
        }));
        const plain = once('reference', false);
        for (const [backend, cl] of [['reference', true], ['native', true], ['native', false]] as const) {
          once(backend, cl).forEach((o, i) => assert.equal(maxViolation(o, plain[i]!, TOLERANCE.conv2d!), null, `${JSON.stringify(c)} ${backend} channels-last ${cl} from ${nhwcInput ? 'NHWC' : 'NCHW'}: ${['conv', 'add', 'pad', 'max pool', 'relu'][i]}`));
        }
      }
    }
  });

  // paddingEnd (TensorFlow's 'same' and ZeroPadding2D folded into the convolution): equal to
  // padding the input explicitly, on both backends, for depthwise, pointwise-shaped and general kernels.
  test('conformance: convolutions with more zeros after than before equal an explicit pad', () => {
    const cases: { c: number; cOut: number; k: number; stride: number; groups: number; pads: [number, number, number, number] }[] = [
      { c: 24, cOut: 24, k: 3, stride: 2, groups: 24, pads: [0, 1, 0, 1] },
      { c: 3, cOut: 16, k: 3, stride: 2, groups: 1, pads: [0, 1, 0, 1] },
      { c: 8, cOut: 12, k: 1, stride: 1, groups: 1, pads: [0, 1, 1, 0] },
      { c: 16, cOut: 16, k: 5, stride: 1, groups: 16, pads: [1, 3, 2, 2] },
    ];
    for (const k of cases) {
      const once = (backend: 'reference' | 'native', folded: boolean) => g.withBackend(backend, () => {
        const gen = new g.Generator(k.c + k.k * 13);
        const x = g.randn([2, k.c, 14, 13], { generator: gen }).requiresGrad_(true);
        const w = g.randn([k.cOut, k.c / k.groups, k.k, k.k], { generator: gen }).requiresGrad_(true);
        const [t, b, l, r] = k.pads;
        const y = folded
          ? g.conv2d(x, w, null, { stride: k.stride, groups: k.groups, padding: [t, l], paddingEnd: [b, r] })
          : g.conv2d(g.pad(x, [l, r, t, b]), w, null, { stride: k.stride, groups: k.groups });
        g.sum(g.mul(y, g.randn(y.shape, { generator: gen }))).backward();
        return [y, x.grad!, w.grad!].map((u) => u.toArray());
      });
      const want = once('reference', false);
      for (const [backend, folded] of [['reference', true], ['native', true], ['native', false]] as const) {
        once(backend, folded).forEach((o, i) => assert.equal(maxViolation(o, want[i]!, TOLERANCE.conv2d!), null, `${JSON.stringify(k)} ${backend} paddingEnd ${folded}: ${['output', 'x grad', 'weight grad'][i]}`));
      }
    }
  });

  test('conformance: depthwise 7×7 convolution large enough for the blocked path, with bias, stride 1 and 2', () => {
    for (const stride of [1, 2]) {
      const once = (backend: 'reference' | 'native') => g.withBackend(backend, () => {
        const gen = new g.Generator(71 + stride);
        const x = g.randn([2, 32, 40, 39], { generator: gen }).requiresGrad_(true); // ≥ 1M multiply-adds at stride 2 too
        const w = g.mul(g.randn([32, 1, 7, 7], { generator: gen }), 0.2).requiresGrad_(true);
        const b = g.randn([32], { generator: gen }).requiresGrad_(true);
        const y = g.conv2d(x, w, b, { groups: 32, padding: 3, stride });
        g.sum(g.mul(y, g.randn(y.shape, { generator: gen }))).backward();
        return [y, x.grad!, w.grad!, b.grad!].map((t) => t.toArray());
      });
      const [r, n] = [once('reference'), once('native')];
      ['output', 'x grad', 'weight grad', 'bias grad'].forEach((what, i) =>
        assert.equal(maxViolation(n[i]!, r[i]!, TOLERANCE.conv2d!), null, `stride ${stride}: ${what}`));
    }
  });
}
