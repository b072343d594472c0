// Tensor basics: creation, views sharing storage, autograd semantics, errors that name the op.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as g from '../src/index.js';

const arr = (t: g.Tensor) => Array.from(t.toArray() as ArrayLike<number>);

test('creation: tensor, zeros/ones/full, arange, dtypes', () => {
  const t = g.tensor([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.dtype, 'float32');
  assert.deepEqual(t.toList(), [[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(arr(g.full([2], 7, { dtype: 'int32' })), [7, 7]);
  assert.deepEqual(arr(g.arange(2, 8, 2)), [2, 4, 6]);
  assert.equal(g.tensor([1, 2], undefined, { dtype: 'float64' }).dtype, 'float64');
  assert.equal(g.tensor(new Uint8Array([1, 255])).dtype, 'uint8');
  assert.throws(() => g.tensor([[1, 2], [3]]), /ragged/);
  assert.throws(() => g.tensor(new Float32Array(5), [2, 3]), /5 values do not fill shape \[2, 3\]/);
});

test('random: seeded generators repeat, and draws have the right moments', () => {
  const a = g.randn([1000], { generator: new g.Generator(42) });
  const b = g.randn([1000], { generator: new g.Generator(42) });
  assert.deepEqual(arr(a), arr(b));
  const m = g.mean(a).item();
  const v = g.variance(a).item();
  assert.ok(Math.abs(m) < 0.1 && Math.abs(v - 1) < 0.15, `mean ${m}, var ${v}`);
  const u = arr(g.rand([1000], { low: 2, high: 3, generator: new g.Generator(1) }));
  assert.ok(u.every((x) => x >= 2 && x < 3));
  g.manualSeed(9);
  const c = arr(g.randn([4]));
  g.manualSeed(9);
  assert.deepEqual(arr(g.randn([4])), c);
});

test('views share storage; contiguous copies only when needed', () => {
  const x = g.arange(0, 6);
  const r = g.reshape(x, [2, 3]);
  assert.equal(r.storage, x.storage);
  const t = g.transpose(r);
  assert.equal(t.storage, x.storage);
  assert.equal(t.isContiguous(), false);
  assert.deepEqual(t.toList(), [[0, 3], [1, 4], [2, 5]]);
  const c = g.contiguous(t);
  assert.notEqual(c.storage, x.storage);
  assert.deepEqual(arr(c), [0, 3, 1, 4, 2, 5]);
  assert.equal(g.contiguous(r), r);
  const s = g.slice(r, 1, 1, 3);
  assert.deepEqual(s.toList(), [[1, 2], [4, 5]]);
  const e = g.expand(g.tensor([[1], [2]]), [2, 3]);
  assert.deepEqual(e.strides, [1, 0]);
  assert.deepEqual(e.toList(), [[1, 1, 1], [2, 2, 2]]);
  assert.deepEqual(g.reshape(t, [-1]).shape, [6]);
});

test('autograd: accumulation across backward calls, noGrad, detach, non-scalar backward', () => {
  const w = g.tensor([1, 2, 3]).requiresGrad_(true);
  g.sum(g.mul(w, w)).backward();
  g.sum(g.mul(w, 3)).backward();
  assert.deepEqual(arr(w.grad!), [5, 7, 9]);
  const y = g.noGrad(() => g.mul(w, 2));
  assert.equal(y.requiresGrad, false);
  const d = w.detach();
  assert.equal(d.requiresGrad, false);
  assert.equal(d.storage, w.storage);
  const v = g.tensor([1, 2]).requiresGrad_(true);
  g.mul(v, v).backward(g.tensor([1, 10]));
  assert.deepEqual(arr(v.grad!), [2, 40]);
  assert.throws(() => g.mul(v, v).backward(), /not a scalar/);
  assert.throws(() => g.tensor([1]).backward(), /does not require a gradient/);
});

test('autograd: a tensor used twice and a diamond graph get summed gradients', () => {
  const x = g.tensor([2]).requiresGrad_(true);
  const a = g.mul(x, 3);
  const b = g.exp(a);
  g.sum(g.add(g.mul(a, b), a)).backward();
  // d/dx [3x·e^{3x} + 3x] = 3e^{3x} + 9x·e^{3x} + 3
  const want = 3 * Math.exp(6) + 18 * Math.exp(6) + 3;
  assert.ok(Math.abs(x.grad!.item() - want) / want < 1e-5);
});

test('errors name the op, the argument and the shapes', () => {
  assert.throws(() => g.add(g.zeros([2, 3]), g.zeros([4])), /add: shapes \[2, 3\] \(argument 0\) and \[4\] \(argument 1\) cannot be broadcast/);
  assert.throws(() => g.matmul(g.zeros([2, 3]), g.zeros([4, 5])), /matmul: inner dimensions differ: argument 0 \[2, 3\] has K=3, argument 1 \[4, 5\] has K=4/);
  assert.throws(() => g.conv2d(g.zeros([1, 3, 8, 8]), g.zeros([4, 2, 3, 3])), /conv2d: x has 3 channels and weight \[4, 2, 3, 3\]/);
  assert.throws(() => g.conv2d(g.zeros([3, 8, 8]), g.zeros([4, 3, 3, 3])), /conv2d: argument x must have rank 4 \(B, C, H, W\); got shape \[3, 8, 8\]/);
  assert.throws(() => g.linear(g.zeros([2, 5]), g.zeros([3, 4])), /linear: x \[2, 5\] has 5 features but weight \[3, 4\] expects 4/);
  assert.throws(() => g.add(g.zeros([2]), g.zeros([2], { dtype: 'float64' })), /add: dtypes differ: argument 0 is float32\[2\], argument 1 is float64\[2\]/);
  assert.throws(() => g.exp(g.zeros([2], { dtype: 'int32' })), /exp: argument 0 must be float32 or float64; got int32\[2\]/);
  assert.throws(() => g.reshape(g.zeros([6]), [4, -1]), /reshape: cannot infer -1/);
  assert.throws(() => g.crossEntropy(g.zeros([2, 3]), g.tensor([0, 3], undefined, { dtype: 'int32' })), /label 3 is outside \[0, 3\)/);
  assert.throws(() => g.layerNorm(g.zeros([2, 4]), g.ones([3])), /layerNorm: weight must have shape \[4\]/);
});

test('backend choice: GRAFT_BACKEND is honoured and a bad value is a clear error', () => {
  const script = "import('./dist/src/index.js').then(g => console.log(g.currentBackend().name)).catch(e => { console.error(e.message); process.exit(3); })";
  const ok = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, GRAFT_BACKEND: 'reference' }, encoding: 'utf8' });
  assert.equal(ok.stdout.trim(), 'reference');
  const bad = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, GRAFT_BACKEND: 'tpu' }, encoding: 'utf8' });
  assert.equal(bad.status, 3);
  assert.match(bad.stderr, /GRAFT_BACKEND='tpu' is not a backend; use 'reference' or 'native'/);
  const auto = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, GRAFT_BACKEND: '' }, encoding: 'utf8' });
  if (g.nativeLoadError()) assert.match(auto.stderr, /native backend could not be loaded .* npm run build:native/);
  else assert.equal(auto.stdout.trim(), 'native');
});
