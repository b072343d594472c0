// Inference attention on strided views (Backend.attentionStrided): the heads of a qkv
// projection's output are read in place and the output comes back as a (B, H, N, D) view of a
// (B, N, H, D) buffer; values equal softmax(q kᵀ · scale) v computed op by op.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';

const strided = typeof g.currentBackend().attentionStrided === 'function';

/** softmax(q kᵀ · scale) v (with the causal mask) from matmul and softmax. */
function expected(q: g.Tensor, k: g.Tensor, v: g.Tensor, scale: number, causal: boolean): Float32Array {
  return g.tidy(() => {
    let s = g.mul(g.matmul(g.contiguous(q), g.transpose(g.contiguous(k), -1, -2)), scale);
    if (causal) {
      const [n, m] = s.shape.slice(-2) as [number, number];
      const mask = new Float32Array(n * m);
      for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) mask[i * m + j] = j > i ? -Infinity : 0;
      s = g.add(s, g.tensor(mask, [n, m]));
    }
    return Float32Array.from(g.contiguous(g.matmul(g.softmax(s, -1), g.contiguous(v))).toArray() as Float32Array);
  });
}

for (const [b, h, n, m, d, causal] of [[2, 3, 17, 17, 8, false], [1, 4, 33, 20, 24, false], [3, 2, 40, 40, 16, true], [1, 6, 197, 197, 64, false]] as [number, number, number, number, number, boolean][]) {
  test(`attention strided: B ${b}, H ${h}, N ${n}, M ${m}, D ${d}${causal ? ', causal' : ''} from a qkv buffer equals the op-by-op result`, { skip: !strided && 'the backend has no strided attention' }, () => {
    const gen = new g.Generator(b * 100 + n);
    // q from a (B, N, 3, H, D) projection as timm lays it out; k and v (M rows) from another.
    const qkv = g.randn([b, n, 3, h, d], { generator: gen });
    const kv = g.randn([b, m, 2, h, d], { generator: gen });
    const q = g.select(g.permute(qkv, [2, 0, 3, 1, 4]), 0, 0);
    const k = g.select(g.permute(kv, [2, 0, 3, 1, 4]), 0, 0);
    const v = g.select(g.permute(kv, [2, 0, 3, 1, 4]), 0, 1);
    const scale = 1 / Math.sqrt(d);
    const before = g.memory().liveBuffers;
    const out = g.noGrad(() => g.scaledDotProductAttention(q, k, v, { causal }));
    assert.deepEqual(out.shape, [b, h, n, d]);
    assert.equal(out.isDense(), false, 'the output is the (B, H, N, D) view of a (B, N, H, D) buffer');
    // Merging the heads back is then a view: no copy.
    const merged = g.permute(out, [0, 2, 1, 3]);
    assert.equal(merged.isDense(), true);
    const got = g.tidy(() => Float32Array.from(g.contiguous(out).toArray() as Float32Array));
    const want = expected(q, k, v, scale, causal);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    assert.ok(worst < 1e-5, `outputs differ by ${worst}`);
    merged.dispose();
    out.dispose();
    assert.equal(g.memory().liveBuffers, before, 'nothing else stays alive');
  });
}

test('attention strided: with gradients recorded the op takes its usual path and its gradients', { skip: !strided && 'the backend has no strided attention' }, () => {
  const q = g.randn([1, 2, 5, 8], { generator: new g.Generator(1), requiresGrad: true });
  const k = g.randn([1, 2, 5, 8], { generator: new g.Generator(2) });
  const v = g.randn([1, 2, 5, 8], { generator: new g.Generator(3) });
  const out = g.scaledDotProductAttention(q, k, v);
  assert.equal(out.isDense(), true);
  g.sum(out).backward();
  assert.ok(q.grad);
});
