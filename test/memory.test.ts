// The memory rule (docs/memory.md): tensors belong to the tidy scope that made them; after a
// training step the number of live buffers is back to its baseline, and resident memory stays
// flat over many steps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as g from '../src/index.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function makeModel(gen: g.Generator) {
  const p = {
    convW: g.randn([8, 3, 3, 3], { generator: gen, std: 0.3 }),
    convB: g.zeros([8]),
    bnW: g.ones([8]),
    bnB: g.zeros([8]),
    headW: g.randn([4, 8], { generator: gen, std: 0.3 }),
    headB: g.zeros([4]),
  };
  for (const t of Object.values(p)) t.requiresGrad_(true);
  const runningMean = g.zeros([8]);
  const runningVar = g.ones([8]);
  const forward = (x: g.Tensor) => {
    let h = g.conv2d(x, p.convW, p.convB, { padding: 1 });
    h = g.batchNorm(h, runningMean, runningVar, p.bnW, p.bnB, { training: true });
    h = g.maxPool2d(g.relu(h), 2);
    h = g.reshape(g.adaptiveAvgPool2d(h, 1), [x.shape[0]!, 8]);
    return g.linear(h, p.headW, p.headB);
  };
  return { params: Object.values(p), forward };
}

test('memory: live buffers return to baseline after each training step', () => {
  const gen = new g.Generator(3);
  const model = makeModel(gen);
  const opt = new g.AdamW(model.params, { lr: 1e-2 });
  const x = g.randn([4, 3, 8, 8], { generator: gen });
  const y = g.tensor([0, 1, 2, 3], undefined, { dtype: 'int32' });
  const step = () =>
    g.tidy(() => {
      opt.zeroGrad();
      const loss = g.crossEntropy(model.forward(x), y);
      loss.backward();
      opt.step();
      return loss.item();
    });
  step(); // the first step creates the optimiser state
  const baseline = g.memory().liveBuffers;
  for (let i = 0; i < 5; i++) {
    step();
    assert.equal(g.memory().liveBuffers, baseline, `live buffers after step ${i + 2}`);
  }
  // Gradients belong to their parameters and are freed by zeroGrad.
  const withGrads = g.memory().liveBuffers;
  opt.zeroGrad();
  assert.equal(g.memory().liveBuffers, withGrads - model.params.length);
});

test('memory: a forward pass under tidy frees everything, and saved tensors survive until backward', () => {
  const before = g.memory().liveBuffers;
  const w = g.randn([5, 5]).requiresGrad_(true);
  const loss = g.tidy(() => g.sum(g.gelu(g.matmul(g.relu(g.randn([3, 5])), w))));
  // Intermediates are disposed, yet backward still works from their saved data.
  loss.backward();
  assert.ok(w.grad, 'gradient reached the leaf');
  loss.dispose();
  w.dispose();
  assert.equal(g.memory().liveBuffers, before);
});

test('memory: tidy disposes on throw, keep() survives, use after dispose names the tensor', () => {
  const before = g.memory().liveBuffers;
  assert.throws(() => g.tidy(() => {
    g.ones([3]);
    throw new Error('boom');
  }), /boom/);
  assert.equal(g.memory().liveBuffers, before);
  let kept!: g.Tensor;
  let dropped!: g.Tensor;
  g.tidy(() => {
    kept = g.keep(g.ones([2]));
    dropped = g.ones([2]);
  });
  assert.equal(kept.toArray()[0], 1);
  assert.throws(() => dropped.toArray(), /after dispose/);
  kept.dispose();
  assert.equal(g.memory().liveBuffers, before);
});

test('memory: resident memory stays flat over 200 training steps', () => {
  const gen = new g.Generator(5);
  const model = makeModel(gen);
  const opt = new g.AdamW(model.params, { lr: 1e-3 });
  const x = g.randn([8, 3, 16, 16], { generator: gen });
  const y = g.tensor([0, 1, 2, 3, 0, 1, 2, 3], undefined, { dtype: 'int32' });
  let rssAt20 = 0;
  for (let i = 0; i < 200; i++) {
    g.tidy(() => {
      opt.zeroGrad();
      g.crossEntropy(model.forward(x), y).backward();
      opt.step();
    });
    if (i === 19) {
      gc();
      rssAt20 = process.memoryUsage().rss;
    }
  }
  gc();
  const growth = (process.memoryUsage().rss - rssAt20) / 2 ** 20;
  assert.ok(growth < 16, `resident memory grew by ${growth.toFixed(1)} MiB between step 20 and step 200`);
});

test('memory: the buffer pool keeps recently used sizes when full, evicting the sizes used longest ago', async () => {
  const { poolAlloc, poolFree, setPoolLimit, clearPool, pooledByteCount, poolLimit } = await import('../src/tensor/host-pool.js');
  const limit = poolLimit();
  clearPool();
  setPoolLimit(1 << 20); // 1 MiB: four 256 KiB buffers
  try {
    const a = [0, 1, 2, 3].map(() => poolAlloc('float32', 65536, false));
    a.forEach((b) => poolFree(b, 'float32'));
    assert.equal(pooledByteCount(), 1 << 20);
    // A new phase allocates another size: its buffers are pooled, the old ones make room.
    const b = poolAlloc('float32', 65000, false);
    poolFree(b, 'float32');
    assert.equal(poolAlloc('float32', 65000, false), b, 'the new size is served from the pool');
    assert.ok(pooledByteCount() <= 1 << 20);
    // Three of the old size are still pooled, the most recently freed first.
    assert.equal(poolAlloc('float32', 65536, false), a[2]);
  } finally {
    clearPool();
    setPoolLimit(limit);
  }
});

test('memory: tensors made from fresh host arrays and disposed leave the pool as they found it', async () => {
  const { pooledByteCount } = await import('../src/tensor/host-pool.js');
  const names: g.BackendName[] = g.nativeLoadError() ? ['reference'] : ['reference', 'native'];
  for (const name of names) {
    g.withBackend(name, () => {
      const make = () => g.tensor(new Float32Array(3 * 64 * 64).fill(1), [3, 64, 64]);
      make().dispose(); // the size class exists in the pool from here on
      const before = pooledByteCount();
      for (let i = 0; i < 50; i++) make().dispose();
      assert.equal(pooledByteCount(), before, `${name}: 50 uploads and disposes grew the pool by ${pooledByteCount() - before} bytes`);
    });
  }
});

test('memory: attention\'s saved probabilities live from the forward pass until its backward pass', () => {
  const gen = new g.Generator(5);
  const [q, k, v] = [0, 1, 2].map(() => g.randn([2, 3, 10, 8], { generator: gen }).requiresGrad_(true)) as [g.Tensor, g.Tensor, g.Tensor];
  const base = g.memory().liveBuffers;
  const step = (saveProbs: boolean) => {
    const during = g.tidy(() => {
      const out = g.scaledDotProductAttention(q, k, v, { saveProbs });
      const live = g.memory().liveBuffers;
      g.sum(out).backward();
      return live;
    });
    for (const t of [q, k, v]) {
      t.grad!.dispose();
      t.grad = null;
    }
    assert.equal(g.memory().liveBuffers, base, `live buffers after a step with saveProbs=${saveProbs}`);
    return during;
  };
  const kept = step(true);
  const recomputed = step(false);
  assert.equal(kept, recomputed + 1, 'the kept probabilities are one more buffer between forward and backward');
});

test('memory: an inference pass frees each block\'s intermediates as it goes (stageScope), with the same outputs', async () => {
  const { createModel } = await import('../src/models/registry.js');
  await import('../src/models/all.js');
  const cases: [string, Record<string, unknown>, number[]][] = [
    ['vit_small_patch16_224', { depth: 6, embedDim: 64, numHeads: 2, patchSize: 8 }, [2, 3, 64, 64]],
    ['mobilenet_v2', {}, [2, 3, 64, 64]],
  ];
  for (const [name, overrides, shape] of cases) {
    const model = createModel(name, { overrides, imageSize: shape[3], numClasses: 5 }).eval();
    model.requiresGrad_(false);
    const x = g.randn(shape, { generator: new g.Generator(11) });
    const run = (scoped: boolean) => {
      const base = g.memory().liveBuffers;
      g.resetPeakMemory();
      const before = g.memory().liveBytes;
      // Gradients on but nothing trainable: no graph is recorded, and no stage gets its own scope.
      const out = g.tidy(() => (scoped ? g.noGrad(() => model.forward(x)) : model.forward(x)).toArray() as Float32Array);
      const peak = g.memory().peakBytes - before;
      assert.equal(g.memory().liveBuffers, base, `${name}: live buffers back to baseline`);
      return { out, peak };
    };
    const plain = run(false);
    const scoped = run(true);
    assert.deepEqual(scoped.out, plain.out, `${name}: the same logits`);
    assert.ok(scoped.peak < plain.peak / 3, `${name}: peak ${scoped.peak} bytes with stage scopes, ${plain.peak} without`);
  }
});
