// Packed weights (Conv2dOptions.packs and Backend.conv2dPack, LinearOptions.packs and
// Backend.matmulPack): an inference convolution into channels-last memory, or a linear layer, on
// weights packed once gives the plain kernels' outputs, one packed copy serves every batch size,
// and a FoldCache frees its packs with its folds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { conv2d, conv2dAct, type Conv2dOptions, type ConvActivation, type WeightPacks } from '../src/ops/conv.js';
import { createModel } from '../src/models/registry.js';
import { FoldCache, withFoldedWeights } from '../src/nn/layers.js';
import { channelsLastInference } from '../src/tensor/memory-format.js';
import '../src/models/all.js';
import type { VisionModel } from '../src/models/model.js';

const packs = typeof g.currentBackend().conv2dPack === 'function';
const packsProducts = typeof g.currentBackend().matmulPack === 'function';

/** The largest |a − b| / (1 + |a|). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(a[i]!)));
  return worst;
}

/**
 * A model's logits through one FoldCache, twice: equal to the uncached logits, the second pass
 * making nothing new, every buffer freed by dispose; returns how many buffers the cache held.
 */
function foldCacheRun(name: string, size: number): number {
  const model = createModel(name, { numClasses: 3, imageSize: size }).eval() as VisionModel;
  const x = g.randn([2, 3, size, size], { generator: new g.Generator(9) });
  const logits = () => Float32Array.from(g.noGrad(() => g.tidy(() => model.forward(x).toArray() as Float32Array)));
  const expected = logits();
  const before = g.memory().liveBuffers;
  const cache = new FoldCache();
  const a = withFoldedWeights(logits, cache);
  const held = g.memory().liveBuffers;
  const b = withFoldedWeights(logits, cache);
  assert.equal(g.memory().liveBuffers, held, 'the second pass makes no new folds or packs');
  for (const got of [a, b]) {
    const worst = relDiff(expected, got);
    assert.ok(worst < 1e-4, `logits differ by ${worst}`);
  }
  cache.dispose();
  assert.equal(g.memory().liveBuffers, before, 'disposing the cache frees every fold and pack');
  return held - before;
}

interface Case {
  name: string;
  cIn: number;
  cOut: number;
  k: number;
  size: number;
  opts: Conv2dOptions;
  nchwInput?: boolean;
}
const CASES: Case[] = [
  { name: 'pointwise', cIn: 24, cOut: 40, k: 1, size: 9, opts: {} },
  { name: 'depthwise 3×3', cIn: 32, cOut: 32, k: 3, size: 10, opts: { padding: 1, groups: 32 } },
  { name: 'depthwise 3×3 stride 2, uneven padding', cIn: 48, cOut: 48, k: 3, size: 11, opts: { stride: 2, padding: 0, paddingEnd: 1, groups: 48 } },
  { name: '3×3 stride 2', cIn: 16, cOut: 24, k: 3, size: 13, opts: { stride: 2, padding: 1 } },
  { name: '1×1 stride 2 (a ResNet shortcut)', cIn: 32, cOut: 64, k: 1, size: 8, opts: { stride: 2 } },
  { name: '7×7 stride 2 stem from NCHW', cIn: 3, cOut: 16, k: 7, size: 20, opts: { stride: 2, padding: 3 }, nchwInput: true },
];

/** x (n, c, h, w) as a channels-last view, or NCHW. */
function input(n: number, c: number, size: number, nchw: boolean, seed: number): g.Tensor {
  const gen = new g.Generator(seed);
  return nchw ? g.randn([n, c, size, size], { generator: gen }) : g.permute(g.randn([n, size, size, c], { generator: gen }), [0, 3, 1, 2]);
}

for (const c of CASES) {
  for (const act of [null, 'relu', 'relu6'] as (ConvActivation | null)[]) {
    test(`packed weights: ${c.name}${act ? ` + ${act}` : ''} equals the plain kernels at batch 1 and 3`, { skip: !packs && 'the backend packs no weights' }, () => {
      const groups = c.opts.groups ?? 1;
      const w = g.randn([c.cOut, c.cIn / groups, c.k, c.k], { generator: new g.Generator(1) });
      const b = g.randn([c.cOut], { generator: new g.Generator(2) });
      const store: WeightPacks = new Map();
      const run = (x: g.Tensor, opts: Conv2dOptions) =>
        g.noGrad(() => g.tidy(() => {
          const y = act ? conv2dAct(x, w, b, opts, act) : conv2d(x, w, b, opts);
          return Float32Array.from(g.contiguous(y).toArray() as Float32Array);
        }));
      const before = g.memory().liveBuffers;
      let first: g.Tensor | null | undefined;
      for (const n of [1, 3]) {
        const x = g.tidy(() => input(n, c.cIn, c.size, c.nchwInput ?? false, 10 + n));
        // The plain path: channels-last output without packs (an NCHW input asks for it as a CNN's features do).
        const plain = channelsLastInference(() => run(x, c.opts));
        const packed = channelsLastInference(() => run(x, { ...c.opts, packs: store }));
        assert.equal(packed.length, plain.length);
        const worst = relDiff(plain, packed);
        assert.ok(worst < 1e-5, `batch ${n}: outputs differ by ${worst}`);
        assert.equal(store.size, 1, 'one packed copy for the geometry');
        const t = [...store.values()][0];
        assert.ok(t, 'the weight was packed');
        if (first === undefined) first = t;
        else assert.equal(t, first, 'the batch-1 pack serves batch 3');
        x.dispose();
      }
      assert.equal(g.memory().liveBuffers, before + 1, 'only the packed copy stays');
      for (const t of store.values()) t?.dispose();
      w.dispose();
      b.dispose();
    });
  }
}

test('packed weights: a packed copy is ignored with gradients on, and refused as NCHW output', { skip: !packs && 'the backend packs no weights' }, () => {
  const w = g.randn([8, 4, 3, 3], { generator: new g.Generator(3), requiresGrad: true });
  const x = g.randn([1, 4, 6, 6], { generator: new g.Generator(4) });
  const store: WeightPacks = new Map();
  g.tidy(() => g.sum(conv2d(x, w, null, { padding: 1, packs: store })).backward());
  assert.equal(store.size, 0, 'a recorded convolution packs nothing');
  g.noGrad(() => g.tidy(() => conv2d(x, w, null, { padding: 1, packs: store })));
  assert.equal(store.size, 0, 'an NCHW output packs nothing');
});

test('packed weights: a FoldCache packs each folded weight once, gives the uncached logits, and frees its packs', () => {
  const held = foldCacheRun('mobilenet_v2', 64);
  // 52 convolutions, each folded (weight + bias) and, where the backend packs, packed.
  assert.ok(held >= 2 * 52, `the cache holds ${held} buffers`);
  if (packs) assert.ok(held >= 3 * 52, `the cache holds ${held} buffers: the packs are missing`);
});

for (const [n, k, bias] of [[96, 64, true], [200, 48, false], [5, 128, true]] as [number, number, boolean][]) {
  test(`packed weights: linear ${k}→${n}${bias ? '' : ' without bias'} equals the plain product for 1, 7 and 300 rows`, { skip: !packsProducts && 'the backend packs no operands' }, () => {
    const w = g.randn([n, k], { generator: new g.Generator(5) });
    const b = bias ? g.randn([n], { generator: new g.Generator(6) }) : null;
    const store: WeightPacks = new Map();
    const before = g.memory().liveBuffers;
    let first: g.Tensor | null | undefined;
    for (const rows of [1, 7, 300]) {
      const x = g.randn([rows, k], { generator: new g.Generator(rows) });
      const run = (opts: { packs?: WeightPacks }) => Float32Array.from(g.noGrad(() => g.tidy(() => g.linear(x, w, b, opts).toArray() as Float32Array)));
      const plain = run({});
      const packed = run({ packs: store });
      const worst = relDiff(plain, packed);
      assert.ok(worst < 1e-5, `${rows} rows: outputs differ by ${worst}`);
      assert.equal(store.size, 1);
      const t = [...store.values()][0];
      assert.ok(t, 'the weight was packed');
      if (first === undefined) first = t;
      else assert.equal(t, first, 'one packed copy serves every row count');
      x.dispose();
    }
    assert.equal(g.memory().liveBuffers, before + 1, 'only the packed copy stays');
    for (const t of store.values()) t?.dispose();
    store.clear();
    // With a graph recorded nothing is packed, and gradients flow as without packs.
    const wg = g.randn([n, k], { generator: new g.Generator(5), requiresGrad: true });
    const x = g.randn([3, k], { generator: new g.Generator(8), requiresGrad: true });
    g.tidy(() => g.sum(g.linear(x, wg, b, { packs: store })).backward());
    assert.equal(store.size, 0, 'a recorded product packs nothing');
    assert.ok(x.grad && wg.grad, 'gradients reach x and the weight');
    w.dispose();
    b?.dispose();
  });
}

test('packed weights: a FoldCache packs a ViT\'s Linear weights once, gives the uncached logits, and frees its packs', () => {
  // 12 blocks × 4 Linear layers and the head: one packed (or (in, out)) copy each.
  const held = foldCacheRun('vit_small_patch16_224', 32);
  assert.ok(held >= 49, `the cache holds ${held} buffers`);
});

for (const act of ['gelu', 'gelu_tanh', 'silu', 'relu'] as const) {
  test(`packed weights: linear with ${act} fused into the packed product equals ${act} after the plain product`, { skip: !packsProducts && 'the backend packs no operands' }, () => {
    const w = g.randn([48, 32], { generator: new g.Generator(11) });
    const b = g.randn([48], { generator: new g.Generator(12) });
    const x = g.randn([5, 32], { generator: new g.Generator(13), std: 2 });
    const store: WeightPacks = new Map();
    const apply = (t: g.Tensor) => (act === 'relu' ? g.relu(t) : act === 'silu' ? g.silu(t) : g.gelu(t, act === 'gelu_tanh' ? 'tanh' : 'none'));
    const want = g.noGrad(() => g.tidy(() => Float32Array.from(apply(g.linear(x, w, b)).toArray() as Float32Array)));
    for (const opts of [{ act }, { act, packs: store }]) {
      const got = g.noGrad(() => g.tidy(() => Float32Array.from(g.linear(x, w, b, opts).toArray() as Float32Array)));
      const worst = relDiff(want, got);
      assert.ok(worst < 1e-5, `${opts.packs ? 'packed, fused' : 'unpacked'}: outputs differ by ${worst}`);
    }
    assert.ok([...store.values()][0], 'the weight was packed');
    for (const t of store.values()) t?.dispose();
    // With gradients: the activation's gradient flows as after a plain product.
    const wg = g.randn([48, 32], { generator: new g.Generator(11), requiresGrad: true });
    const grad = (fused: boolean) => {
      wg.grad = null;
      g.tidy(() => g.sum(fused ? g.linear(x, wg, b, { act }) : apply(g.linear(x, wg, b))).backward());
      return Array.from(wg.grad!.toArray() as Float32Array);
    };
    assert.deepEqual(grad(true), grad(false));
    w.dispose();
    b.dispose();
    x.dispose();
  });
}
