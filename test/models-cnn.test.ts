// torchvision's CNNs and Swin against PyTorch: AlexNet, ResNet, MobileNetV2, ConvNeXt, RegNetY
// and Swin v1 — the named architectures, and one tiny configuration per family with gradients.
// Fixtures: /usr/bin/python3 fixtures/models/make_cnn_fixtures.py (torchvision 0.14's own
// modules, det weights). Each case writes det weights under torchvision's state-dict keys to a
// safetensors file, reads it back and loads it strictly, then compares the feature map before
// pooling, the logits and, where the fixture has them, the gradients of loss = Σ logits·w for the
// input and a few parameters. Inputs are x_i = sin(1.2345 + 0.7071·i), as in the script.
// The tiny ResNet, MobileNetV2, RegNetY and Swin also load through loadCnnCheckpoint without
// their integer buffers, against torchvision's logits for the same state dict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as g from '../src/index.js';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors.js';
import { StateDictError } from '../src/nn/module.js';
import { CheckpointFormatError } from '../src/models/checkpoint-error.js';
import { loadCnnCheckpoint } from '../src/models/cnn/checkpoint.js';
import { createModel, listModels } from '../src/models/registry.js';
import type { VisionModel } from '../src/models/model.js';
import '../src/models/all.js';
import { CONVNEXT_MODELS, RESNET_MODELS } from '../src/models/cnn/index.js';
import { SWIN_MODELS } from '../src/models/swin.js';
import { detStateDict } from './helpers/det-weights.js';

// Largest |graft − PyTorch| allowed, relative to the largest |PyTorch value| of the tensor, both
// in float32. Forward values agree to ~1e-6 of their scale, gradients mostly to ~1e-6 too.
// Parameter gradients get 1e-3: AlexNet's last conv bias gradients (~1e-5) are what is left of
// 4096-term sums three Linear layers deep after cancellation, and float32 rounding of those
// terms reaches 5e-4 of that scale on either side.
const TOLERANCE = { features: 1e-4, logits: 1e-4, inputGrad: 1e-4, paramGrad: 1e-3 };

interface Packed {
  shape: number[];
  data: number[];
}
/** Values at flat indices 0, stride, 2·stride, … and the sum of all values. */
interface Sample {
  shape: number[];
  stride: number;
  values: number[];
  sum: number;
}
interface Run {
  imageSize: [number, number];
  features: Sample;
  logits: Packed;
  inputGrad?: Sample;
  paramGrads?: Record<string, Sample>;
}
interface Case {
  name: string;
  model: string;
  overrides: Record<string, unknown>;
  numClasses: number;
  keys: [string, number[]][];
  runs: Run[];
  lossWeight?: Packed;
  relativePositionIndex?: number[];
  /** torchvision's logits after loading the state dict without its integer buffers (the first run's size). */
  withoutIntegerBuffers?: { dropped: string[]; logits: Packed };
}

const CASES = [
  'alexnet', 'resnet18', 'resnet50', 'resnet_basic_tiny', 'resnet_grouped_tiny', 'mobilenet_v2', 'mobilenet_v2_tiny',
  'convnext_tiny', 'convnext_tiny_config', 'regnety_400mf', 'regnety_800mf', 'regnety_1_6gf', 'regnety_tiny_config',
  'swin_tiny', 'swin_tiny_config',
];
const fixturePath = (file: string) => new URL(`../../fixtures/models/${file}`, import.meta.url);
const fixture = (name: string) => JSON.parse(readFileSync(fixturePath(`cnn_${name}.json`), 'utf8')) as Case;
const dir = mkdtempSync(join(tmpdir(), 'graft-cnn-'));

const build = (c: Case, numClasses = c.numClasses) => createModel(c.model, { overrides: c.overrides, numClasses }).eval();

function detInput(shape: number[]): g.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return g.tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(1.2345 + 0.7071 * i)), shape);
}

/**
 * The case's det weights as torchvision would save them: integer buffers are zero except Swin's
 * relative_position_index, which checkpoints carry with its real values.
 */
function checkpoint(c: Case): Map<string, g.Tensor> {
  const state = detStateDict(c.keys);
  for (const [key, shape] of c.keys) {
    if (!key.endsWith('relative_position_index')) continue;
    state.get(key)!.dispose();
    state.set(key, g.tensor(Int32Array.from(c.relativePositionIndex!), shape));
  }
  return state;
}

/** Writes the case's checkpoint to a safetensors file and returns its path. */
function checkpointFile(c: Case): string {
  const state = checkpoint(c);
  const path = join(dir, `${c.name}.safetensors`);
  saveSafetensors(path, state);
  for (const t of state.values()) t.dispose();
  return path;
}

function loadFile(model: VisionModel, path: string): void {
  const tensors = loadSafetensors(path);
  try {
    model.loadStateDict(tensors, { what: path });
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/** Max |actual − expected| over the sampled indices and the sum, relative to the largest |expected|. */
function compare(actual: g.Tensor, expected: Sample | Packed, tol: number, what: string, diffs: Record<string, number>): void {
  assert.deepEqual([...actual.shape], expected.shape, `${what}: shape`);
  const a = actual.toArray();
  const [stride, values] = 'data' in expected ? [1, expected.data] : [expected.stride, expected.values];
  const scale = Math.max(1e-12, ...values.map(Math.abs));
  let worst = 0;
  values.forEach((v, i) => (worst = Math.max(worst, Math.abs(a[i * stride]! - v))));
  if ('sum' in expected) {
    // The sum covers every element; its tolerance grows with the number of terms.
    let sum = 0;
    let absSum = 0;
    for (const v of a) {
      sum += v;
      absSum += Math.abs(v);
    }
    assert.ok(Math.abs(sum - expected.sum) <= tol * absSum, `${what}: sum ${sum} vs PyTorch ${expected.sum}`);
  }
  diffs[what] = Math.max(diffs[what] ?? 0, worst);
  assert.ok(worst <= tol * scale, `${what}: max abs difference ${worst.toExponential(2)} > ${tol} × ${scale.toExponential(2)}`);
}

function checkRun(c: Case, model: VisionModel, run: Run, diffs: Record<string, number>): void {
  const grads = run.paramGrads !== undefined;
  const x = detInput([2, 3, ...run.imageSize]).requiresGrad_(grads);
  const features = model.forwardFeatures(x);
  const logits = model.forwardHead(features);
  compare(features, run.features, TOLERANCE.features, 'features', diffs);
  compare(logits, run.logits, TOLERANCE.logits, 'logits', diffs);
  if (!grads) return;
  for (const p of model.parameters()) p.grad = null;
  const w = g.tensor(Float32Array.from(c.lossWeight!.data), c.lossWeight!.shape);
  g.sum(g.mul(logits, w)).backward();
  compare(x.grad!, run.inputGrad!, TOLERANCE.inputGrad, 'input grad', diffs);
  const params = new Map(model.namedParameters());
  for (const [key, expected] of Object.entries(run.paramGrads!)) {
    const grad = params.get(key)?.grad;
    assert.ok(grad, `${key}: no gradient`);
    compare(grad, expected, TOLERANCE.paramGrad, 'param grads', diffs);
  }
}

const report = (name: string, diffs: Record<string, number>) =>
  console.log(`  ${name}: max abs diff ${Object.entries(diffs).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')}`);

for (const name of CASES) {
  test(`${name}: torchvision's keys load strictly; features, logits${fixture(name).lossWeight ? ' and gradients' : ''} match PyTorch`, () => {
    const c = fixture(name);
    const model = build(c);
    loadFile(model, checkpointFile(c));
    const diffs: Record<string, number> = {};
    for (const run of c.runs) g.tidy(() => (run.paramGrads ? checkRun(c, model, run, diffs) : g.noGrad(() => checkRun(c, model, run, diffs))));
    report(name, diffs);
    model.dispose();
  });
}

test('a safetensors file written by Python (I64 relative_position_index) loads into the tiny Swin', () => {
  const c = fixture('swin_tiny_config');
  const model = build(c);
  loadFile(model, fileURLToPath(fixturePath('swin_tiny_config.safetensors')));
  const diffs: Record<string, number> = {};
  for (const run of c.runs) g.tidy(() => g.noGrad(() => checkRun(c, model, { ...run, paramGrads: undefined }, diffs)));
  report('swin_tiny_config (Python file)', diffs);
  model.dispose();
});

test("the model's own relative_position_index is torchvision's", () => {
  const c = fixture('swin_tiny_config');
  const model = build(c);
  const index = model.stateDict().get('features.1.0.attn.relative_position_index')!;
  assert.equal(index.dtype, 'int32');
  assert.deepEqual([...index.toArray()], c.relativePositionIndex);
  model.dispose();
});

test('another number of classes fails on fc.weight and fc.bias with both shapes', () => {
  const c = fixture('resnet_basic_tiny');
  const model = build(c, 5);
  assert.throws(() => loadFile(model, checkpointFile(c)), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /shape mismatch for fc\.weight: the model has \[5, 512\], the checkpoint has \[10, 512\]/);
    assert.match(e.message, /shape mismatch for fc\.bias: the model has \[5\], the checkpoint has \[10\]/);
    return true;
  });
  model.dispose();
});

test('a checkpoint of another architecture lists the missing and unexpected keys', () => {
  const resnet = fixture('resnet_basic_tiny');
  const model = build(fixture('regnety_tiny_config'));
  assert.throws(() => loadFile(model, checkpointFile(resnet)), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /missing: trunk_output\.block1\.block1-0\.f\.se\.fc1\.weight/);
    assert.match(e.message, /unexpected: layer1\.0\.conv1\.weight/);
    return true;
  });
  model.dispose();
});

test('models without a head return the pooled features; preLogits stops before the classifier', () => {
  for (const name of ['alexnet', 'resnet_grouped_tiny', 'mobilenet_v2_tiny', 'convnext_tiny_config', 'regnety_tiny_config', 'swin_tiny_config']) {
    const c = fixture(name);
    const headless = build(c, 0);
    const model = build(c);
    g.tidy(() => g.noGrad(() => {
      const x = detInput([1, 3, 64, 64]);
      assert.deepEqual([...headless.forward(x).shape], [1, headless.numFeatures], name);
      assert.deepEqual([...model.forwardHead(model.forwardFeatures(x), true).shape], [1, model.numFeatures], name);
      assert.deepEqual([...model.forward(x).shape], [1, c.numClasses], name);
    }));
    headless.dispose();
    model.dispose();
  }
});

test('registry: torchvision names, regnet as regnety_*, preprocessing of the DEFAULT weights', () => {
  for (const name of ['alexnet', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'mobilenet_v2', 'convnext_tiny', 'convnext_small', 'convnext_base',
    'regnety_400mf', 'regnety_800mf', 'regnety_1_6gf', 'swin_tiny', 'swin_small', 'swin_base']) {
    assert.ok(listModels().includes(name), name);
  }
  assert.throws(() => createModel('regnet_y_400mf'), /unknown model 'regnet_y_400mf'/);
  assert.throws(() => createModel('resnet18', { overrides: { depth: 3 } }), /unknown config field 'depth'.*layers/s);
  assert.deepEqual(RESNET_MODELS['resnet18']!.preprocess, { inputSize: [3, 224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], interpolation: 'bilinear', cropPct: 0.875 });
  assert.equal(Math.round(224 / RESNET_MODELS['resnet50']!.preprocess.cropPct), 232);
  assert.equal(SWIN_MODELS['swin_tiny']!.preprocess.interpolation, 'bicubic');
  assert.equal(Math.round(224 / SWIN_MODELS['swin_tiny']!.preprocess.cropPct), 232);
  assert.equal(CONVNEXT_MODELS['convnext_tiny']!.preprocess.interpolation, 'bilinear');
  assert.equal(Math.round(224 / CONVNEXT_MODELS['convnext_tiny']!.preprocess.cropPct), 236);
  const sized = createModel('resnet18', { numClasses: 2, imageSize: [160, 128] });
  assert.deepEqual(sized.preprocess.inputSize, [3, 160, 128]);
  sized.dispose();
});

// torchvision's own pretrained files (resnet18-f37072fd.pth and others) carry no
// num_batches_tracked, and PyTorch loads them; Swin's relative_position_index follows from the
// window size. The fixtures hold torchvision's logits after loading the state dict without them.
const LENIENT = ['resnet_basic_tiny', 'mobilenet_v2_tiny', 'regnety_tiny_config', 'swin_tiny_config'];
const withoutKeys = (state: Map<string, g.Tensor>, drop: readonly string[]) => new Map([...state].filter(([k]) => !drop.includes(k)));

for (const name of LENIENT) {
  test(`${name}: torchvision's state dict with and without its integer buffers gives torchvision's logits`, () => {
    const c = fixture(name);
    const lenient = c.withoutIntegerBuffers!;
    assert.ok(lenient.dropped.length > 0 && lenient.dropped.every((k) => /(num_batches_tracked|relative_position_index)$/.test(k)));
    const full = checkpoint(c);
    const diffs: Record<string, number> = {};
    for (const [state, expected, kept] of [[full, c.runs[0]!.logits, []], [withoutKeys(full, lenient.dropped), lenient.logits, lenient.dropped]] as const) {
      const model = build(c);
      const report = loadCnnCheckpoint(model, state, { name });
      assert.deepEqual(report.keptDerivedBuffers, kept);
      g.tidy(() => g.noGrad(() => compare(model.forward(detInput([2, 3, ...c.runs[0]!.imageSize])), expected, TOLERANCE.logits, 'logits', diffs)));
      model.dispose();
    }
    report(`${name} (with and without integer buffers)`, diffs);
    for (const t of full.values()) t.dispose();
  });
}

test('num_batches_tracked is loaded when the checkpoint has it and stays the model\'s when it does not', () => {
  const c = fixture('resnet_basic_tiny');
  const state = checkpoint(c);
  state.get('layer2.0.bn1.num_batches_tracked')!.dispose();
  state.set('layer2.0.bn1.num_batches_tracked', g.tensor(Int32Array.of(7), []));
  const model = build(c);
  loadCnnCheckpoint(model, withoutKeys(state, ['layer3.0.bn1.num_batches_tracked']));
  const own = model.stateDict();
  assert.deepEqual([...own.get('layer2.0.bn1.num_batches_tracked')!.toArray()], [7]);
  assert.deepEqual([...own.get('layer3.0.bn1.num_batches_tracked')!.toArray()], [0]);
  model.dispose();
  for (const t of state.values()) t.dispose();
});

test('a relative_position_index unlike the one graft computes is an error naming the key', () => {
  const c = fixture('swin_tiny_config');
  const key = 'features.3.1.attn.relative_position_index';
  const index = Int32Array.from(c.relativePositionIndex!);
  index[5] = index[5]! + 1;
  const cases: [g.Tensor, RegExp][] = [
    [g.tensor(index, [index.length]), /element 5 is \d+ in the checkpoint, \d+ in graft/],
    // The index of 6×6 windows: a checkpoint of another window size.
    [g.tensor(new Int32Array(36 * 36), [36 * 36]), /shape \[1296\] in the checkpoint, \[2401\] in graft/],
  ];
  for (const [wrong, detail] of cases) {
    const state = checkpoint(c);
    state.get(key)!.dispose();
    state.set(key, wrong);
    const model = build(c);
    assert.throws(() => loadCnnCheckpoint(model, state, { name: 'swin_tiny', what: 's.safetensors' }), (e: unknown) => {
      assert.ok(e instanceof CheckpointFormatError);
      assert.match(e.message, new RegExp(`^s\\.safetensors into swin_tiny: ${key.replace(/\./g, '\\.')} is not the one graft computes for this model \\(`));
      assert.match(e.message, detail);
      assert.match(e.message, /its window size/);
      return true;
    });
    model.dispose();
    for (const t of state.values()) t.dispose();
  }
});

test('without the integer buffers, any other missing key is still the strict error naming it', () => {
  for (const [name, missing] of [['swin_tiny_config', 'features.1.0.attn.relative_position_bias_table'], ['resnet_basic_tiny', 'layer1.0.bn1.running_mean']] as const) {
    const c = fixture(name);
    const state = checkpoint(c);
    const model = build(c);
    assert.throws(() => loadCnnCheckpoint(model, withoutKeys(state, [...c.withoutIntegerBuffers!.dropped, missing]), { name, what: 'x.safetensors' }), (e: unknown) => {
      assert.ok(e instanceof StateDictError);
      assert.deepEqual(e.result.missingKeys, [missing]);
      assert.match(e.message, new RegExp(`missing: ${missing.replace(/\./g, '\\.')}`));
      assert.doesNotMatch(e.message, /num_batches_tracked|relative_position_index/);
      return true;
    });
    model.dispose();
    for (const t of state.values()) t.dispose();
  }
});
