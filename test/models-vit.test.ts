// The ViT family against PyTorch: timm ViT/DeiT, torchvision's VisionTransformer, transformers'
// DINOv2 (+ registers, SwiGLU) and DINOv3 (RoPE, gated MLP, earlier key names).
// Fixtures: /usr/bin/python3 fixtures/models/make_vit_fixtures.py (reference modules in
// fixtures/models/reference_*.py). Each case writes det weights under the checkpoint's own keys
// to a safetensors file, loads it through the family's checkpoint loader (strict), and compares
// tokens, logits, and the gradients of loss = Σ logits·w for the input and a few parameters, at
// the model's image size and at another one (position-embedding resampling, RoPE grids).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { StateDictError } from '../src/nn/module.js';
import { createModel } from '../src/models/registry.js';
import { DINOV3_MODELS } from '../src/models/vit/configs.js';
import type { VisionModel } from '../src/models/model.js';
import { loadVitSafetensors, resolveCheckpointNames, type CheckpointReport, type LoadsCheckpoints } from '../src/models/vit/index.js';
import { CheckpointFormatError } from '../src/models/checkpoint-error.js';
import { detStateDict } from './helpers/det-weights.js';

// Max abs difference allowed, float32 on both sides. The PyTorch float32 fixtures are themselves
// up to 1e-5 from float64 on tokens of magnitude ~3 (graft's are closer), so tokens get 5e-5;
// gradients pass through every layer twice and sum over more terms, hence 1e-4.
const TOLERANCE = { tokens: 5e-5, logits: 2e-5, inputGrad: 1e-4, paramGrad: 1e-4 };

interface Packed {
  shape: number[];
  data: number[];
}
interface Run {
  imageSize: [number, number];
  modelImageSize?: [number, number];
  input: Packed;
  tokens: Packed;
  logits: Packed;
  inputGrad?: Packed;
  paramGrads: Record<string, Packed>;
}
interface Case {
  name: string;
  model: string;
  overrides: Record<string, unknown>;
  imageSize: [number, number];
  numClasses: number;
  keys: [string, number[]][];
  lossWeight: Packed;
  runs: Run[];
  earlierNames?: Record<string, string>;
}

type VitModel = VisionModel & LoadsCheckpoints;

const CASES = ['timm_vit', 'timm_deit_layerscale_avg', 'torchvision_vit', 'dinov2', 'dinov2_swiglu', 'dinov2_registers', 'dinov3', 'dinov3_gated'];
const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../../fixtures/models/${name}.json`, import.meta.url), 'utf8')) as Case;
const dir = mkdtempSync(join(tmpdir(), 'graft-vit-'));

const build = (c: Case, imageSize = c.imageSize, numClasses = c.numClasses) =>
  createModel(c.model, { overrides: c.overrides, imageSize, numClasses }).eval() as VitModel;
const toTensor = (p: Packed) => g.tensor(Float32Array.from(p.data), p.shape);

/** The checkpoint file of a case: det weights under `keys`, stored under `storeAs(key)`. */
function checkpointFile(c: Case, tag: string, storeAs: (key: string) => string = (k) => k): string {
  const weights = detStateDict(c.keys);
  const path = join(dir, `${c.name}-${tag}.safetensors`);
  saveSafetensors(path, new Map([...weights].map(([k, t]) => [storeAs(k), t])));
  return path;
}

function maxAbsDiff(actual: g.Tensor, expected: Packed, what: string): number {
  assert.deepEqual([...actual.shape], expected.shape, `${what}: shape`);
  const a = actual.toArray();
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - expected.data[i]!));
  return worst;
}

function expectClose(actual: g.Tensor, expected: Packed, tol: number, what: string, diffs: Record<string, number>): void {
  const d = maxAbsDiff(actual, expected, what);
  diffs[what] = Math.max(diffs[what] ?? 0, d);
  assert.ok(d <= tol, `${what}: max abs difference ${d.toExponential(2)} > ${tol}`);
}

/** Forward (and backward when the run has gradients) of one fixture run; returns the worst differences. */
function checkRun(c: Case, model: VitModel, run: Run, diffs: Record<string, number>): void {
  const x = toTensor(run.input).requiresGrad_(true);
  const tokens = model.forwardFeatures(x);
  const logits = model.forwardHead(tokens);
  expectClose(tokens, run.tokens, TOLERANCE.tokens, 'tokens', diffs);
  expectClose(logits, run.logits, TOLERANCE.logits, 'logits', diffs);
  if (!run.inputGrad) return;
  for (const p of model.parameters()) p.grad = null;
  g.sum(g.mul(logits, toTensor(c.lossWeight))).backward();
  expectClose(x.grad!, run.inputGrad, TOLERANCE.inputGrad, 'input grad', diffs);
  const names = resolveCheckpointNames(model.checkpointLayout(), c.keys.map(([k]) => k)).names;
  const params = new Map(model.namedParameters());
  for (const [key, expected] of Object.entries(run.paramGrads)) {
    const param = params.get(names.get(key)!);
    assert.ok(param?.grad, `${key}: no gradient on the model's ${names.get(key)}`);
    expectClose(param.grad, expected, TOLERANCE.paramGrad, 'param grads', diffs);
  }
}

for (const name of CASES) {
  test(`${name}: outputs and gradients match PyTorch`, () => {
    const c = fixture(name);
    const file = checkpointFile(c, 'own');
    const model = build(c);
    const report = loadVitSafetensors(model, file);
    assert.equal(report.head, c.numClasses > 0 ? 'loaded' : 'none');
    const diffs: Record<string, number> = {};
    for (const run of c.runs) {
      if (run.modelImageSize) {
        // A model built for another size: the loader resizes the checkpoint's position embeddings.
        const resized = build(c, run.modelImageSize);
        const r = loadVitSafetensors(resized, file);
        assert.ok(r.posEmbedResized, 'position embeddings were resized on load');
        checkRun(c, resized, run, diffs);
      } else checkRun(c, model, run, diffs);
    }
    console.log(`  ${name} (${report.scheme}${report.strippedPrefix ? `, prefix ${report.strippedPrefix}` : ''}): ` +
      Object.entries(diffs).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', '));
  });
}

for (const name of ['dinov3', 'dinov3_gated']) {
  test(`${name}: a checkpoint with the earlier transformers DINOv3 names loads and gives the same output`, () => {
    const c = fixture(name);
    const earlierOf = new Map(Object.entries(c.earlierNames!).map(([earlier, current]) => [current, earlier]));
    const file = checkpointFile(c, 'earlier', (k) => earlierOf.get(k)!);
    const model = build(c);
    const report: CheckpointReport = loadVitSafetensors(model, file);
    assert.equal(report.scheme, 'transformers (earlier DINOv3 names)');
    assert.ok(report.renamedKeys > 0);
    const diffs: Record<string, number> = {};
    g.noGrad(() => checkRun(c, model, { ...c.runs[0]!, inputGrad: undefined }, diffs));
  });
}

test('a checkpoint of another architecture is refused with its keys listed', () => {
  const dinov2 = fixture('dinov2');
  const file = checkpointFile(dinov2, 'own');
  const vit = build(fixture('timm_vit'));
  assert.throws(() => loadVitSafetensors(vit, file), (e: unknown) => {
    assert.ok(e instanceof CheckpointFormatError);
    assert.match(e.message, /not a vit checkpoint/);
    assert.match(e.message, /dinov2\.embeddings\.cls_token/);
    assert.match(e.message, /blocks\.0\.attn\.qkv\.weight/);
    return true;
  });
  const dinov3 = build(fixture('dinov3'));
  assert.throws(() => loadVitSafetensors(dinov3, file), CheckpointFormatError);
});

test('a checkpoint of the same naming but another depth lists every missing key', () => {
  const c = fixture('timm_vit');
  const deeper = createModel(c.model, { overrides: { ...c.overrides, depth: 3 }, imageSize: c.imageSize, numClasses: c.numClasses }) as VitModel;
  assert.throws(() => loadVitSafetensors(deeper, checkpointFile(c, 'own')), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /missing: blocks\.2\.attn\.qkv\.weight/);
    return true;
  });
});

test('another number of classes keeps the new head and loads the backbone', () => {
  const c = fixture('dinov2');
  const model = build(c, c.imageSize, 3);
  const report = loadVitSafetensors(model, checkpointFile(c, 'own'));
  assert.equal(report.head, 'initialised');
  assert.equal(report.strippedPrefix, 'dinov2.');
  const tokens = g.noGrad(() => model.forwardFeatures(toTensor(c.runs[0]!.input)));
  assert.ok(maxAbsDiff(tokens, c.runs[0]!.tokens, 'tokens') <= TOLERANCE.tokens);
  assert.deepEqual([...model.forward(toTensor(c.runs[0]!.input)).shape], [2, 3]);
});

test('unknown override fields and bad values name the valid fields', () => {
  assert.throws(() => createModel('dinov2_small', { overrides: { hidden_size: 32 } }), /unknown config field 'hidden_size'.*hiddenSize/s);
  assert.throws(() => createModel('vit_small_patch16_224', { overrides: { globalPool: 'max' } }), /'token', 'avg'/);
});

test('dinov3_vit7b16: the Hugging Face configuration (4096 wide, 40 layers, 32 heads, SwiGLU, no qkv bias, 4 registers, patch 16), 6.7 billion parameters', () => {
  const c = DINOV3_MODELS['dinov3_vit7b16']!.config;
  assert.deepEqual(
    [c.hiddenSize, c.numHiddenLayers, c.numAttentionHeads, c.intermediateSize, c.useGatedMlp, c.hiddenAct, c.queryBias, c.keyBias, c.valueBias, c.numRegisterTokens, c.patchSize, c.ropeTheta],
    [4096, 40, 32, 8192, true, 'silu', false, false, false, 4, 16, 100],
  );
  // Building blocks 4096 wide would take gigabytes; the count comes from narrow models of the same
  // layout (ffn = 2 × width, as 8192 = 2 × 4096): a block's and the embeddings' parameters are a
  // quadratic in the width, fitted through widths 8, 16, 32 and evaluated at 4096.
  const count = (hidden: number, ffn: number, layers: number) =>
    createModel('dinov3_vit7b16', { overrides: { hiddenSize: hidden, intermediateSize: ffn, numHiddenLayers: layers, numAttentionHeads: 1 }, numClasses: 0 }).parameters().reduce((a, p) => a + p.size, 0);
  const perBlock = (h: number) => count(h, 2 * h, 2) - count(h, 2 * h, 1);
  const embed = (h: number) => count(h, 2 * h, 1) - perBlock(h);
  // fit a·h² + b·h (+ c) through h = 8, 16, 32 and evaluate at 4096
  const fit = (f: (h: number) => number) => {
    const [y1, y2, y3] = [f(8), f(16), f(32)];
    // the 3×3 system by Cramer's rule
    const A = [[64, 8, 1], [256, 16, 1], [1024, 32, 1]];
    const det = (m: number[][]) => m[0]![0]! * (m[1]![1]! * m[2]![2]! - m[1]![2]! * m[2]![1]!) - m[0]![1]! * (m[1]![0]! * m[2]![2]! - m[1]![2]! * m[2]![0]!) + m[0]![2]! * (m[1]![0]! * m[2]![1]! - m[1]![1]! * m[2]![0]!);
    const y = [y1, y2, y3];
    const d = det(A);
    const col = (j: number) => det(A.map((r, i) => r.map((v, k) => (k === j ? y[i]! : v))));
    return (h: number) => (col(0) / d) * h * h + (col(1) / d) * h + col(2) / d;
  };
  const total = fit(embed)(4096) + 40 * fit(perBlock)(4096);
  assert.equal(Math.round(total), 6_716_035_072);
});
