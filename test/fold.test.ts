// Folding BatchNorm into the preceding convolution: same values and input gradients as running
// them one after the other, in eval mode and with a frozen BatchNorm in train mode; never folded
// while the BatchNorm uses batch statistics or an unmerged adapter is active.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { Conv2d, BatchNorm2d } from '../src/nn/layers.js';
import { convBatchNormFolded, FoldCache, Linear, withFoldedWeights } from '../src/nn/layers.js';
import { LoraLayer } from '../src/adapters/lora/layer.js';
import { assign } from '../src/ops/layout.js';
import { Generator } from '../src/tensor/random.js';

function setup(groups: number) {
  const gen = new Generator(3);
  const conv = new Conv2d(4, 4, 3, { padding: 1, groups, bias: groups === 1, generator: gen });
  const bn = new BatchNorm2d(4, 1e-3);
  const stats = g.randn([4], { generator: gen });
  g.noGrad(() => {
    assign(bn.runningMean, stats);
    assign(bn.runningVar, g.add(g.square(stats), 0.5));
    assign(bn.weight!, g.randn([4], { generator: gen }));
    assign(bn.bias!, g.randn([4], { generator: gen }));
  });
  return { conv, bn, x: g.randn([2, 4, 6, 5], { generator: gen }) };
}

function maxDiff(a: g.Tensor, b: g.Tensor): number {
  const x = a.toArray(), y = b.toArray();
  return Math.max(...Array.from(x, (v, i) => Math.abs(v - y[i]!)));
}

for (const groups of [1, 4]) {
  test(`fold: conv (groups ${groups}) + BatchNorm folded equals the two in turn, values and input gradients`, () => {
    const { conv, bn, x } = setup(groups);
    for (const mode of ['eval', 'frozen'] as const) {
      bn.train(mode === 'frozen');
      bn.frozen = mode === 'frozen';
      const xa = x.detach().requiresGrad_(true), xb = x.detach().requiresGrad_(true);
      const ref = bn.forward(conv.forward(xa));
      const folded = convBatchNormFolded(conv, bn, xb);
      assert.ok(folded, `${mode}: folds`);
      assert.ok(maxDiff(ref, folded) < 1e-4, `${mode}: values differ by ${maxDiff(ref, folded)}`);
      const w = g.randn(ref.shape);
      g.sum(g.mul(ref, w)).backward();
      g.sum(g.mul(folded, w)).backward();
      assert.ok(maxDiff(xa.grad!, xb.grad!) < 1e-4, `${mode}: input gradients differ`);
    }
  });
}

test('fold: not folded with batch statistics or an active unmerged adapter; folded once merged', () => {
  const { conv, bn, x } = setup(1);
  bn.train(true);
  bn.frozen = false;
  assert.equal(convBatchNormFolded(conv, bn, x), null);
  bn.eval();
  const lora = new LoraLayer(conv);
  lora.addAdapter('default', { r: 2, alpha: 4, dropout: 0, useRslora: false, init: 'gaussian', variant: null, generator: new Generator(1) });
  lora.activeAdapter = 'default';
  g.noGrad(() => assign(lora.lora_B.get('default')!.weight, g.randn(lora.lora_B.get('default')!.weight.shape)));
  assert.equal(convBatchNormFolded(lora, bn, x), null);
  const unfused = g.noGrad(() => bn.forward(lora.forward(x)));
  lora.merge();
  const folded = g.noGrad(() => convBatchNormFolded(lora, bn, x));
  assert.ok(folded && maxDiff(unfused, folded) < 1e-4);
});

test('fold: withFoldedWeights folds each pair once, gives the same values, frees the folded weights, and weights changed afterwards count', async () => {
  const { conv, bn, x } = setup(1);
  bn.train(false);
  const run = () => g.noGrad(() => convBatchNormFolded(conv, bn, x)!);
  const plain = run();
  const base = g.memory().liveBuffers;
  const [a, b, during] = withFoldedWeights(() => {
    const a = run();
    const afterFirst = g.memory().liveBuffers;
    const b = run();
    // The second pass reuses the folded weight and bias: only its output is new.
    return [a, b, g.memory().liveBuffers - afterFirst];
  }) as [g.Tensor, g.Tensor, number];
  assert.equal(during, 1, 'a second forward pass inside the scope allocates only its output');
  assert.ok(maxDiff(a, plain) === 0 && maxDiff(b, plain) === 0, 'same values as folding on every pass');
  a.dispose();
  b.dispose();
  assert.equal(g.memory().liveBuffers, base, 'the folded weights are freed when the scope ends');
  // Async scopes end when their promise settles.
  await withFoldedWeights(async () => {
    await Promise.resolve();
    run().dispose();
  });
  assert.equal(g.memory().liveBuffers, base);
  // A weight changed after the scope is seen by the next scope.
  g.noGrad(() => assign(conv.weight, g.mul(conv.weight, 2)));
  const changed = withFoldedWeights(run);
  assert.ok(maxDiff(changed, plain) > 1e-3, 'the next scope folds the new weights');
  assert.ok(maxDiff(changed, run()) === 0);
});

test('fold: a ReLU / ReLU6 after a folded conv + BatchNorm runs fused in the convolution (conv2dAct), same values and input gradients', async () => {
  const { Activation, Sequential, convBnAct } = await import('../src/nn/layers.js');
  for (const groups of [1, 4]) {
    for (const act of ['relu', 'relu6'] as const) {
      const { conv, bn, x } = setup(groups);
      const seq = new Sequential(conv, bn, new Activation(act));
      seq.eval();
      // A BatchNorm scale of ×8 so that ReLU6 clips above as well as below.
      g.noGrad(() => assign(bn.weight!, g.mul(bn.weight!, 8)));
      const xs = x;
      const xa = xs.detach().requiresGrad_(true), xb = xs.detach().requiresGrad_(true), xc = xs.detach().requiresGrad_(true);
      const unfused = (act === 'relu' ? g.relu : g.relu6)(bn.forward(conv.forward(xa)));
      const fused = seq.forward(xb);
      const viaHelper = convBnAct(conv, bn, xc, act);
      assert.ok(maxDiff(unfused, fused) < 1e-5, `${act} groups ${groups}: Sequential ${maxDiff(unfused, fused)}`);
      assert.ok(maxDiff(unfused, viaHelper) < 1e-5, `${act} groups ${groups}: convBnAct ${maxDiff(unfused, viaHelper)}`);
      if (act === 'relu6') assert.ok((unfused.toArray() as Float32Array).some((v) => v === 6), 'the case reaches the upper clip');
      assert.equal(fused.gradFn?.name, 'conv2dAct', 'the activation ran inside the convolution');
      const gy = g.randn(unfused.shape, { generator: new Generator(9) });
      for (const [y, xi] of [[unfused, xa], [fused, xb], [viaHelper, xc]] as const) g.sum(g.mul(y, gy)).backward();
      assert.ok(maxDiff(xa.grad!, xb.grad!) < 1e-5, `${act} groups ${groups}: input gradient ${maxDiff(xa.grad!, xb.grad!)}`);
      assert.ok(maxDiff(xa.grad!, xc.grad!) < 1e-5);
      // The inference path: folded once, fused, under noGrad.
      const inferred = withFoldedWeights(() => g.noGrad(() => seq.forward(xs)));
      assert.ok(maxDiff(unfused, inferred) < 1e-5, `${act} groups ${groups}: withFoldedWeights ${maxDiff(unfused, inferred)}`);
    }
  }
});

test('fold: inference caches keep Linear weights stored (in, out) within their budget, refreshed when the weight is replaced', () => {
  const diff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k]!)), 0);
  const gen = new Generator(17);
  const lin = new Linear(24, 40, { generator: gen });
  const x = g.randn([5, 24], { generator: gen });
  const want = g.noGrad(() => lin.forward(x).toArray() as Float32Array);
  const base = g.memory().liveBuffers;
  const cache = new FoldCache();
  const got = withFoldedWeights(() => g.noGrad(() => g.tidy(() => lin.forward(x).toArray() as Float32Array)), cache);
  assert.ok(diff(want, got) < 1e-6);
  assert.equal(g.memory().liveBuffers, base + 1, 'the cache holds one (in, out) copy');
  const view = withFoldedWeights(() => g.noGrad(() => cache.linearWeight(lin)), cache);
  assert.deepEqual([view.shape, view.strides], [[40, 24], [1, 40]], 'an (out, in) view of the stored copy');
  // A new weight makes the copy stale.
  lin.weight = g.mul(lin.weight, 2);
  const doubled = withFoldedWeights(() => g.noGrad(() => lin.forward(x).toArray() as Float32Array), cache);
  const want2 = g.noGrad(() => lin.forward(x).toArray() as Float32Array);
  assert.ok(diff(want2, doubled) < 1e-6 && diff(want, doubled) > 1e-3);
  cache.dispose();
  // A budget of 0 stores nothing; with gradients on the cache is not used.
  const none = new FoldCache(0);
  withFoldedWeights(() => g.noGrad(() => lin.forward(x)), none);
  assert.equal(none.linearWeight(lin), lin.weight);
  none.dispose();
});
