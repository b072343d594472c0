// CKA (nn/cka.ts) against NumPy values from the representation_similarity notebook's formulas
// (fixtures/cka/make_cka_fixtures.py), its invariances, the debiased estimator's small-n
// behaviour, pooling, feature capture, the layer similarity matrix and its heatmap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { BatchNorm2d, Conv2d, Linear, Sequential } from '../src/nn/layers.js';
import { centredGram, ckaOfGrams, defaultEstimator, featureMatrix, linearCka, poolFeatures, type FeatureMatrix } from '../src/nn/cka.js';
import { captureFeatures } from '../src/nn/capture.js';
import { layerSimilarity } from '../src/nn/similarity.js';
import { similarityHeatmapSvg, writeSimilarity } from '../src/report/heatmap.js';

interface FixtureCase { name: string; n: number; cx: number; cy: number; x: number[]; y: number[]; linear: number; debiased: number }
const fixture = JSON.parse(readFileSync(new URL('../../fixtures/cka/cka.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };

function randomMatrix(n: number, c: number, gen: g.Generator): FeatureMatrix {
  return featureMatrix(g.randn([n, c], { generator: gen }).toArray() as Float32Array, n, c);
}

/** X · M for a (c × d) matrix M. */
function times(x: FeatureMatrix, m: Float64Array, d: number): FeatureMatrix {
  const out = new Float64Array(x.n * d);
  for (let i = 0; i < x.n; i++) for (let k = 0; k < x.c; k++) for (let j = 0; j < d; j++) out[i * d + j]! += x.data[i * x.c + k]! * m[k * d + j]!;
  return { n: x.n, c: d, data: out };
}

/** A random orthogonal c × c matrix (Gram–Schmidt on a gaussian one). */
function orthogonal(c: number, gen: g.Generator): Float64Array {
  const a = Float64Array.from(g.randn([c, c], { generator: gen }).toArray() as Float32Array);
  for (let j = 0; j < c; j++) {
    for (let k = 0; k < j; k++) {
      let dot = 0;
      for (let i = 0; i < c; i++) dot += a[i * c + j]! * a[i * c + k]!;
      for (let i = 0; i < c; i++) a[i * c + j]! -= dot * a[i * c + k]!;
    }
    let norm = 0;
    for (let i = 0; i < c; i++) norm += a[i * c + j]! ** 2;
    for (let i = 0; i < c; i++) a[i * c + j]! /= Math.sqrt(norm);
  }
  return a;
}

test('CKA: linear and debiased values equal NumPy’s (the notebook vector gives 0.55761 / 0.51346)', () => {
  for (const c of fixture.cases) {
    const x = featureMatrix(c.x, c.n, c.cx);
    const y = featureMatrix(c.y, c.n, c.cy);
    assert.ok(Math.abs(linearCka(x, y, 'biased') - c.linear) < 1e-10, `${c.name} linear: ${linearCka(x, y, 'biased')} vs ${c.linear}`);
    assert.ok(Math.abs(linearCka(x, y, 'debiased') - c.debiased) < 1e-10, `${c.name} debiased: ${linearCka(x, y, 'debiased')} vs ${c.debiased}`);
    // Symmetric in its arguments.
    assert.ok(Math.abs(linearCka(y, x, 'debiased') - c.debiased) < 1e-10);
  }
  // The Gram form (centred Grams, one per layer: how the similarity matrix is computed) gives the same values.
  for (const c of fixture.cases) {
    const x = featureMatrix(c.x, c.n, c.cx);
    const y = featureMatrix(c.y, c.n, c.cy);
    assert.ok(Math.abs(ckaOfGrams(centredGram(x, 'biased'), centredGram(y, 'biased')) - c.linear) < 1e-10, `${c.name} linear (Gram)`);
    assert.ok(Math.abs(ckaOfGrams(centredGram(x, 'debiased'), centredGram(y, 'debiased')) - c.debiased) < 1e-10, `${c.name} debiased (Gram)`);
  }
  const nb = fixture.cases.find((c) => c.name === 'notebook')!;
  assert.equal(nb.linear.toFixed(5), '0.55761');
  assert.equal(nb.debiased.toFixed(5), '0.51346');
});

test('CKA(X, X) = 1 and invariance to orthogonal transforms and isotropic scaling, not to any linear map', () => {
  const gen = new g.Generator(3);
  const x = randomMatrix(40, 6, gen);
  const y = times(x, Float64Array.from(g.randn([6, 5], { generator: gen }).toArray() as Float32Array), 5);
  for (const e of ['biased', 'debiased'] as const) {
    assert.ok(Math.abs(linearCka(x, x, e) - 1) < 1e-12, `${e} CKA(X, X)`);
    const base = linearCka(x, y, e);
    assert.ok(base < 0.999, 'the test pair is not trivially similar');
    const q = orthogonal(6, gen);
    assert.ok(Math.abs(linearCka(times(x, q, 6), y, e) - base) < 1e-10, `${e}: orthogonal transform`);
    const scaled = { ...x, data: x.data.map((v) => v * 3.7) };
    assert.ok(Math.abs(linearCka(scaled, y, e) - base) < 1e-12, `${e}: isotropic scaling`);
    // A translation changes nothing either (the features are centred).
    const shifted = { ...x, data: x.data.map((v, i) => v + (i % 6)) };
    assert.ok(Math.abs(linearCka(shifted, y, e) - base) < 1e-10, `${e}: translation`);
    // An anisotropic scaling is not an invariance.
    const stretch = new Float64Array(36);
    for (let i = 0; i < 6; i++) stretch[i * 6 + i] = i === 0 ? 10 : 1;
    assert.ok(Math.abs(linearCka(times(x, stretch, 6), y, e) - base) > 1e-3, `${e}: anisotropic scaling changes CKA`);
  }
});

test('CKA: the debiased estimator stays near 0 for unrelated features at small n, where the biased one is far from it', () => {
  const gen = new g.Generator(11);
  let biased = 0;
  let debiased = 0;
  const trials = 20;
  for (let t = 0; t < trials; t++) {
    const x = randomMatrix(16, 64, gen);
    const y = randomMatrix(16, 64, gen);
    biased += linearCka(x, y, 'biased') / trials;
    debiased += linearCka(x, y, 'debiased') / trials;
  }
  assert.ok(biased > 0.6, `biased mean ${biased}`);
  assert.ok(Math.abs(debiased) < 0.05, `debiased mean ${debiased}`);
  // With many more examples than features both agree and are near 0.
  const x = randomMatrix(2000, 4, gen);
  const y = randomMatrix(2000, 4, gen);
  assert.ok(linearCka(x, y, 'biased') < 0.02);
  assert.ok(Math.abs(linearCka(x, y, 'debiased')) < 0.02);
  // graft's rule.
  assert.equal(defaultEstimator(16, 64), 'debiased');
  assert.equal(defaultEstimator(256, 64), 'biased');
  assert.equal(defaultEstimator(255, 8, 64), 'debiased');
  assert.throws(() => linearCka(featureMatrix([1, 2, 3], 3, 1), featureMatrix([1, 2, 4], 3, 1), 'debiased'), /at least 4 examples/);
  assert.throws(() => linearCka(x, randomMatrix(10, 4, gen)), /same examples/);
});

test('poolFeatures: the mean over space for NCHW, over tokens for (N, T, D)', () => {
  // (2, 2, 1, 2): image 0 channel 0 = [1, 3], channel 1 = [5, 7]; image 1 = [0, 2], [4, 8].
  const p = poolFeatures([1, 3, 5, 7, 0, 2, 4, 8], [2, 2, 1, 2], 1);
  assert.deepEqual([p.n, p.c, ...p.data], [2, 2, 2, 6, 1, 6]);
  // (1, 2, 3) tokens: mean over the 2 tokens per feature.
  const t = poolFeatures([1, 2, 3, 3, 4, 5], [1, 2, 3], -1);
  assert.deepEqual([t.n, t.c, ...t.data], [1, 3, 2, 3, 4]);
});

class Net extends Module {
  body: Sequential;
  fc: Linear;
  constructor(gen: g.Generator) {
    super();
    this.body = this.module('body', new Sequential(new Conv2d(3, 6, 3, { padding: 1, generator: gen }), new BatchNorm2d(6), new Conv2d(6, 5, 1, { generator: gen })));
    this.fc = this.module('fc', new Linear(5, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    return this.fc.forward(g.mean(g.relu(this.body.forward(x)), [2, 3]));
  }
}

test('captureFeatures: records a conv’s own output even where it folds into its BatchNorm, and puts the model back', async () => {
  const gen = new g.Generator(5);
  const net = new Net(gen);
  net.eval();
  const x = g.keep(g.randn([4, 3, 6, 6], { generator: gen }));
  const before = g.noGrad(() => g.keep(net.forward(x)));
  const conv = net.getModule('body.0') as Conv2d;
  const feats = await captureFeatures(net, ['body.0', 'body', 'fc'], () => {
    g.noGrad(() => g.tidy(() => net.forward(x)));
  });
  const want = g.noGrad(() => g.mean(conv.forward(x), [2, 3]).toArray());
  const got = feats.get('body.0')!;
  assert.equal(got.n, 4);
  assert.equal(got.c, 6);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got.data[i]! - want[i]!) < 1e-5);
  assert.equal(feats.get('fc')!.c, 3);
  assert.equal(net.getModule('body.0'), conv, 'the conv is back in place');
  assert.deepEqual(Array.from(g.noGrad(() => net.forward(x)).toArray()), Array.from(before.toArray()));
  await assert.rejects(captureFeatures(net, ['nope'], () => undefined), /no layer 'nope'/);
});

test('layerSimilarity: a symmetric matrix with a unit diagonal, written as JSON and an SVG heatmap', async () => {
  const gen = new g.Generator(6);
  const net = new Net(gen);
  const batches = [g.randn([8, 3, 6, 6], { generator: gen }), g.randn([8, 3, 6, 6], { generator: gen })];
  const s = await layerSimilarity(net, ['body.0', 'body.2', 'fc'], batches, { limit: 12 });
  assert.equal(s.n, 12);
  assert.deepEqual(s.channels, [6, 5, 3]);
  for (let i = 0; i < 3; i++) {
    assert.ok(Math.abs(s.matrix[i]![i]! - 1) < 1e-9);
    for (let j = 0; j < 3; j++) assert.equal(s.matrix[i]![j], s.matrix[j]![i]);
  }
  // n = 12 < 4·6: the debiased estimator; the matrix (Gram form) equals pairwise CKA (feature form).
  assert.equal(s.estimators[0]![1], 'debiased');
  const pairwise = await layerSimilarity(net, ['body.0', 'body.2', 'fc'], batches, { limit: 12, pairs: [[0, 1], [0, 2], [1, 2]] });
  for (const [i, j] of [[0, 1], [0, 2], [1, 2]] as const) assert.ok(Math.abs(pairwise.matrix[i]![j]! - s.matrix[i]![j]!) < 1e-9);
  const dir = mkdtempSync(join(tmpdir(), 'graft-cka-'));
  const files = writeSimilarity(dir, s);
  const json = JSON.parse(readFileSync(files.json, 'utf8')) as { layers: string[]; matrix: (number | null)[][] };
  assert.deepEqual(json.layers, ['body.0', 'body.2', 'fc']);
  assert.equal(json.matrix[0]![1], s.matrix[0]![1]);
  const svg = readFileSync(files.svg, 'utf8');
  assert.equal((svg.match(/<rect x=/g) ?? []).length, 9);
  assert.match(similarityHeatmapSvg(s), /body\.2 · fc: /);
});
