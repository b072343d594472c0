// TF.js LayersModel import, checked against TF.js itself: @tensorflow/tfjs (pure-JS CPU backend)
// loads the same model.json and shard bytes and decodes the quantisation on its own, so it is an
// independent oracle for both the weights and the graph. Models: the pretrained nsfwjs
// MobileNetV2 and InceptionV3 (LayersModels) and MobileNetV2 mid (a graph model), and a small
// random-weight Keras model built with tf.layers that uses every supported layer class, with the
// 'same' paddings that fall asymmetrically.
// Run: npx tsc -p . && node --test dist/test/tfjs-import.test.js
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type * as TF from '@tensorflow/tfjs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crossEntropy, memory, noGrad, randn, softmax, tensor, tidy } from '../src/index.js';
import { decodeTfjsWeights, type TfjsWeightSpec } from '../src/io/tfjs.js';
import { createModel, listModels } from '../src/models/registry.js';
import {
  KerasModel, TfGraphModel, loadNsfwjsModel, loadTfjsLayersModel, nsfwjsModelFolder, parseKerasTopology, tensorFromNhwc, type NsfwjsModelName,
} from '../src/models/keras/index.js';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs') as typeof TF;

/** Tolerances against TF.js, in one place. */
const TOL = {
  // Both sides compute in float32 with different summation orders.
  probabilities: 1e-4,
};

const dir = mkdtempSync(join(tmpdir(), 'graft-tfjs-'));

/** A deterministic pseudo-random stream in [0, 1) (LCG), shared by images and weights. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

type ImageKind = 'gradient' | 'checkerboard' | 'noise';

/** NHWC RGB images with values in [0, 1] (pixels / 255, as nsfwjs feeds them). */
function makeImages(kinds: ImageKind[], size: number): Float32Array {
  const out = new Float32Array(kinds.length * size * size * 3);
  const rnd = lcg(42);
  kinds.forEach((kind, b) => {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = ((b * size + y) * size + x) * 3;
        const rgb = kind === 'gradient' ? [x / (size - 1), y / (size - 1), 1 - (x + y) / (2 * size - 2)]
          : kind === 'checkerboard' ? (((x >> 4) + (y >> 4)) % 2 ? [0.9, 0.8, 0.2] : [0.1, 0.3, 0.7])
            : [rnd(), rnd(), rnd()];
        out.set(rgb.map((v) => Math.round(v * 255) / 255), i);
      }
    }
  });
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** TF.js's own LayersModel from artifacts in memory. */
async function tfjsModel(modelTopology: object, weightSpecs: TfjsWeightSpec[], weightData: Uint8Array) {
  await tf.setBackend('cpu');
  const buffer = weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength) as ArrayBuffer;
  return tf.loadLayersModel({ load: async () => ({ modelTopology, weightSpecs: weightSpecs as TF.io.WeightsManifestEntry[], weightData: buffer }) });
}

/** Class probabilities from graft (predict) and TF.js on the same NHWC images. */
async function compare(model: KerasModel | TfGraphModel, oracle: TF.LayersModel, images: Float32Array, shape: [number, number, number, number]) {
  const ours = noGrad(() => tidy(() => model.predict(tensorFromNhwc(images, shape)).toArray()));
  const theirs = tf.tidy(() => (oracle.predict(tf.tensor(images, shape)) as TF.Tensor).dataSync());
  return maxAbsDiff(ours, theirs);
}

/** The nsfwjs bundle files as TF.js model artifacts, decoded without graft. */
function nsfwjsArtifacts(name: NsfwjsModelName): TF.io.ModelArtifacts {
  const folder = nsfwjsModelFolder(name);
  const json = require(join(folder, 'model.min.js')) as TF.io.ModelJSON;
  const group = json.weightsManifest[0]!;
  const data = Buffer.concat(group.paths.map((p) => Buffer.from(require(join(folder, `${p}.min.js`)) as string, 'base64')));
  return { ...json, weightSpecs: group.weights, weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer };
}

/** The oracle for an nsfwjs LayersModel. */
async function nsfwjsOracle(name: NsfwjsModelName) {
  const a = nsfwjsArtifacts(name);
  return tfjsModel(a.modelTopology as object, a.weightSpecs as TfjsWeightSpec[], new Uint8Array(a.weightData as ArrayBuffer));
}

test('tfjs weights: every stored and quantised dtype decodes exactly as tf.io.decodeWeights does', () => {
  const rnd = lcg(1);
  const specs: TfjsWeightSpec[] = [
    { name: 'f32', shape: [2, 3], dtype: 'float32' },
    { name: 'i32', shape: [4], dtype: 'int32' },
    { name: 'flag', shape: [3], dtype: 'bool' },
    { name: 'q8', shape: [5], dtype: 'float32', quantization: { dtype: 'uint8', min: -0.75, scale: 0.0123 } },
    { name: 'q16', shape: [3], dtype: 'float32', quantization: { dtype: 'uint16', min: 1.5, scale: 1e-4 } },
    { name: 'f16', shape: [4], dtype: 'float32', quantization: { dtype: 'float16' } },
    { name: 'qi32', shape: [3], dtype: 'int32', quantization: { dtype: 'uint8', min: -10, scale: 0.37 } },
  ];
  const f16Bits = [0x3c00, 0xc000, 0x7bff, 0x0001]; // 1, −2, 65504, 2^−24
  const parts = [
    Buffer.from(new Float32Array([0.5, -1.25, 3e-7, 1e6, -0, 7]).buffer),
    Buffer.from(new Int32Array([-3, 0, 2 ** 31 - 1, 17]).buffer),
    Buffer.from([1, 0, 1]),
    Buffer.from(Array.from({ length: 5 }, () => Math.floor(rnd() * 256))),
    Buffer.from(new Uint16Array([0, 40000, 65535]).buffer),
    Buffer.from(new Uint16Array(f16Bits).buffer),
    Buffer.from([0, 100, 255]),
  ];
  const data = Buffer.concat(parts);
  const ours = decodeTfjsWeights(specs, data);
  const theirs = tf.io.decodeWeights(data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer, specs as TF.io.WeightsManifestEntry[]);
  for (const s of specs) {
    assert.deepEqual([...ours.get(s.name)!.data], [...theirs[s.name]!.dataSync()], s.name);
    assert.deepEqual(ours.get(s.name)!.shape, s.shape);
  }
  assert.deepEqual([...ours.get('f16')!.data], [1, -2, 65504, 2 ** -24]);
  // A scale without min (which TF.js itself refuses) reads as q · scale.
  const symmetric = decodeTfjsWeights([{ name: 'w', shape: [2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5 } }], Buffer.from([3, 200]));
  assert.deepEqual([...symmetric.get('w')!.data], [1.5, 100]);
});

test('tfjs weights: a shard of the wrong length or an unknown dtype is a clear error', () => {
  const specs: TfjsWeightSpec[] = [{ name: 'conv/kernel', shape: [3, 3, 3, 8], dtype: 'float32', quantization: { dtype: 'uint8', min: 0, scale: 1 } }];
  assert.throws(() => decodeTfjsWeights(specs, new Uint8Array(215), 'model.json'), /model\.json: the shards hold 215 bytes but the manifest's 1 weights need 216 bytes; a shard file is truncated/);
  assert.throws(() => decodeTfjsWeights(specs, new Uint8Array(300), 'model.json'), /hold 300 bytes but .* need 216 bytes/);
  assert.throws(() => decodeTfjsWeights([{ name: 's', shape: [1], dtype: 'string' }], new Uint8Array(4)), /weight 's' has dtype 'string'; graft reads float32, int32 and bool/);
  assert.throws(() => decodeTfjsWeights([{ name: 'q', shape: [1], dtype: 'float32', quantization: { dtype: 'int4' as 'uint8' } }], new Uint8Array(1)), /quantization dtype 'int4'; TF.js defines uint8, uint16 and float16/);
});

/** A random-weight Keras model with every supported layer class, built and run by TF.js. */
function syntheticModel() {
  const L = tf.layers;
  type T = TF.SymbolicTensor;
  const call = (layer: { apply(x: T | T[]): unknown }, x: T | T[]) => layer.apply(x) as T;
  const x = tf.input({ shape: [16, 15, 3] });
  // Stride-2 'same' on 16 × 15: the padding falls (0, 1) on H and (1, 1) on W.
  const b = call(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 'conv_s2' }), x);
  const c = call(L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, useBias: true, name: 'dw' }), x);
  const d = call(L.reLU({ maxValue: 6 }), call(L.batchNormalization({ center: false, name: 'bn_a' }), c));
  const e = call(L.concatenate(), [b, d]);
  // Even kernel and dilation under 'same': (0, 1) on H, (2, 2) on W.
  const f = call(L.conv2d({ filters: 14, kernelSize: [2, 3], dilationRate: [1, 2], padding: 'same', activation: 'elu', name: 'conv_dil' }), e);
  const g = call(L.add(), [e, call(L.batchNormalization({ name: 'bn_b' }), f)]);
  const h = call(L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), g);
  const i = call(L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }), g);
  const j = call(L.multiply(), [h, i]);
  const k = call(L.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same' }), j);
  const l = call(L.reLU({ maxValue: 4 }), k);
  const m = call(L.leakyReLU({ alpha: 0.2 }), call(L.elu({}), l));
  const n = call(L.zeroPadding2d({ padding: [[0, 1], [1, 0]] }), call(L.cropping2D({ cropping: [[1, 0], [0, 1]] }), m));
  const p = call(L.dense({ units: 12, activation: 'selu', name: 'fc_flat' }), call(L.flatten(), n));
  const q = call(L.globalAveragePooling2d({}), g);
  const r = call(L.globalMaxPooling2d({}), g);
  const s = call(L.globalAveragePooling2d({}), call(L.dense({ units: 5, activation: 'tanh', name: 'fc_4d' }), j));
  const v = call(L.concatenate(), [p, q, r, s]);
  const acts = (['softplus', 'softsign', 'tanh', 'sigmoid', 'hardSigmoid', 'swish', 'relu6', 'linear'] as const).map((a) => call(L.activation({ activation: a }), v));
  const w = call(L.average(), [call(L.maximum(), [acts[0]!, acts[1]!]), call(L.minimum(), [acts[2]!, acts[3]!]), acts[4]!, acts[5]!, acts[6]!, acts[7]!]);
  const y = call(L.dense({ units: 4, activation: 'softmax', name: 'classifier' }), call(L.dropout({ rate: 0.3 }), call(L.thresholdedReLU({ theta: 0.1 }), w)));
  const model = tf.model({ inputs: x, outputs: y });
  const rnd = lcg(7);
  for (const layer of model.layers) {
    const current = layer.getWeights();
    if (!current.length) continue;
    layer.setWeights(current.map((t, idx) => {
      const variance = layer.weights[idx]!.name.includes('variance');
      return tf.tensor(Float32Array.from({ length: t.size }, () => (variance ? 0.5 + rnd() : rnd() - 0.5)), t.shape);
    }));
  }
  return model;
}

test('tfjs import: a model.json folder with two .bin shards runs every supported layer class as TF.js does', async (t) => {
  const oracle = syntheticModel();
  let saved: TF.io.ModelArtifacts | undefined;
  await oracle.save(tf.io.withSaveHandler(async (a) => {
    saved = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  const bytes = new Uint8Array(saved!.weightData as ArrayBuffer);
  const folder = mkdtempSync(join(dir, 'synthetic-'));
  writeFileSync(join(folder, 'group1-shard1of2.bin'), bytes.subarray(0, 1000));
  writeFileSync(join(folder, 'group1-shard2of2.bin'), bytes.subarray(1000));
  const manifest = [{ paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: saved!.weightSpecs }];
  writeFileSync(join(folder, 'model.json'), JSON.stringify({ format: 'layers-model', modelTopology: saved!.modelTopology, weightsManifest: manifest }));

  const model = loadTfjsLayersModel(folder);
  assert.equal(model.outputActivation, 'softmax');
  const images = Float32Array.from(makeImages(['noise', 'gradient'], 16).subarray(0, 2 * 16 * 15 * 3), (v) => 2 * v - 1);
  const diff = await compare(model, oracle, images, [2, 16, 15, 3]);
  t.diagnostic(`synthetic model max |Δp| vs TF.js: ${diff.toExponential(2)}`);
  assert.ok(diff <= TOL.probabilities, `max |Δp| = ${diff}`);

  // A truncated shard names the shards and both byte counts.
  writeFileSync(join(folder, 'group1-shard2of2.bin'), bytes.subarray(1000, bytes.length - 4));
  assert.throws(() => loadTfjsLayersModel(join(folder, 'model.json')), /shards group1-shard1of2\.bin, group1-shard2of2\.bin\): the shards hold \d+ bytes but the manifest's \d+ weights need \d+ bytes/);
});

test('tfjs import: an unsupported layer class is one error naming the layer, its class and the supported classes', () => {
  const topology = {
    class_name: 'Model',
    config: {
      name: 'm',
      layers: [
        { name: 'input_1', class_name: 'InputLayer', config: { batch_input_shape: [null, 8, 8, 3] }, inbound_nodes: [] },
        { name: 'my_lambda', class_name: 'Lambda', config: {}, inbound_nodes: [[['input_1', 0, 0, {}]]] },
        { name: 'pool', class_name: 'GlobalAveragePooling2D', config: {}, inbound_nodes: [[['my_lambda', 0, 0, {}]]] },
      ],
      input_layers: [['input_1', 0, 0]],
      output_layers: [['pool', 0, 0]],
    },
  };
  assert.throws(() => new KerasModel(parseKerasTopology(topology, 'custom/model.json'), { source: 'custom/model.json' }),
    /custom\/model\.json: graft cannot import layer 'my_lambda' \(class Lambda\)\. Supported layer classes: InputLayer, Conv2D, DepthwiseConv2D, Dense, BatchNormalization/);
});

test('tfjs import: ReLU with threshold, negative_slope and max_value follows Keras backend.relu', () => {
  const topology = {
    class_name: 'Sequential',
    config: { name: 's', layers: [{ class_name: 'ReLU', config: { name: 'act', batch_input_shape: [null, 6], max_value: 4, negative_slope: 0.1, threshold: 0.5 } }] },
  };
  const model = new KerasModel(parseKerasTopology(topology, 'relu.json'));
  const y = noGrad(() => model.forward(tensor([[-2, 0, 0.4, 0.5, 3, 5]])));
  assert.ok(maxAbsDiff(y.toArray(), [-0.25, -0.05, -0.01, 0, 3, 4]) < 1e-6, `${[...y.toArray()]}`);
});

test('nsfwjs MobileNetV2: Keras names, features and head, and class probabilities equal to TF.js', async (t) => {
  const model = loadNsfwjsModel('nsfwjs_mobilenet_v2');
  const names = [...model.stateDict().keys()];
  for (const key of ['Conv1.kernel', 'bn_Conv1.gamma', 'bn_Conv1.moving_variance', 'expanded_conv_depthwise.depthwise_kernel', 'dense_3.bias']) assert.ok(names.includes(key), key);
  assert.equal(names.length, 266);
  assert.deepEqual(model.preprocess, { inputSize: [3, 224, 224], mean: [0, 0, 0], std: [1, 1, 1], interpolation: 'bilinear', cropPct: 1, minSize: 32 });
  assert.equal(model.numFeatures, 1280);

  const images = makeImages(['gradient', 'checkerboard', 'noise'], 224);
  const features = noGrad(() => model.forwardFeatures(tensorFromNhwc(images, [3, 224, 224, 3])));
  assert.deepEqual(features.shape, [3, 1280, 7, 7]);
  assert.deepEqual(noGrad(() => model.forwardHead(features, true)).shape, [3, 1280]);
  // forwardHead's logits through the softmax forward() leaves out are Keras's probabilities.
  const ours = noGrad(() => softmax(model.forwardHead(features), -1)).toArray();
  const oracle = await nsfwjsOracle('nsfwjs_mobilenet_v2');
  const theirs = tf.tidy(() => (oracle.predict(tf.tensor(images, [3, 224, 224, 3])) as TF.Tensor).dataSync());
  const diff = maxAbsDiff(ours, theirs);
  t.diagnostic(`MobileNetV2 max |Δp| vs TF.js over 3 images: ${diff.toExponential(2)}`);
  assert.ok(diff <= TOL.probabilities, `max |Δp| = ${diff}`);
  for (let b = 0; b < 3; b++) assert.ok(Math.abs(Array.from(ours.subarray(5 * b, 5 * b + 5)).reduce((p, v) => p + v, 0) - 1) < 1e-5);
});

test('nsfwjs MobileNetV2 mid (a TF.js graph model): TensorFlow scopes as names, and probabilities equal to TF.js', async (t) => {
  const model = loadNsfwjsModel('nsfwjs_mobilenet_v2_mid') as TfGraphModel;
  assert.ok(model instanceof TfGraphModel);
  const names = [...model.stateDict().keys()];
  for (const key of ['keras_layer.MobilenetV2.Conv.weight', 'keras_layer.MobilenetV2.expanded_conv_1.depthwise.weight', 'keras_layer.MobilenetV2.expanded_conv_1.project.bias', 'dense.weight']) assert.ok(names.includes(key), key);
  assert.equal(model.numFeatures, 1792);
  const images = makeImages(['checkerboard', 'noise'], 224);
  const features = noGrad(() => model.forwardFeatures(tensorFromNhwc(images, [2, 224, 224, 3])));
  assert.deepEqual(features.shape, [2, 1792, 7, 7]);
  const ours = noGrad(() => softmax(model.forwardHead(features), -1)).toArray();
  await tf.setBackend('cpu');
  const oracle = await tf.loadGraphModel({ load: async () => nsfwjsArtifacts('nsfwjs_mobilenet_v2_mid') });
  const theirs = tf.tidy(() => (oracle.predict(tf.tensor(images, [2, 224, 224, 3])) as TF.Tensor).dataSync());
  const diff = maxAbsDiff(ours, theirs);
  t.diagnostic(`MobileNetV2 mid max |Δp| vs TF.js over 2 images: ${diff.toExponential(2)}`);
  assert.ok(diff <= TOL.probabilities, `max |Δp| = ${diff}`);
});

test('nsfwjs InceptionV3: class probabilities equal to TF.js at 299²', async (t) => {
  const model = loadNsfwjsModel('nsfwjs_inception_v3');
  assert.equal(model.numFeatures, 2048);
  assert.deepEqual(model.preprocess.inputSize, [3, 299, 299]);
  const images = makeImages(['gradient', 'noise'], 299);
  const diff = await compare(model, await nsfwjsOracle('nsfwjs_inception_v3'), images, [2, 299, 299, 3]);
  t.diagnostic(`InceptionV3 max |Δp| vs TF.js over 2 images: ${diff.toExponential(2)}`);
  assert.ok(diff <= TOL.probabilities, `max |Δp| = ${diff}`);
});

test('nsfwjs at a smaller input: the head still averages the whole feature map (MobileNetV2 at 96², InceptionV3 at 96²)', () => {
  const small = loadNsfwjsModel('nsfwjs_mobilenet_v2', { imageSize: 96 });
  const x = tensorFromNhwc(makeImages(['gradient', 'noise'], 96), [2, 96, 96, 3]);
  const features = noGrad(() => small.forwardFeatures(x));
  assert.deepEqual(features.shape, [2, 1280, 3, 3]);
  const pooled = noGrad(() => small.forwardHead(features, true)).toArray();
  const f = features.toArray();
  const mean = new Float32Array(2 * 1280);
  for (let i = 0; i < mean.length; i++) for (let k = 0; k < 9; k++) mean[i]! += f[9 * i + k]! / 9;
  assert.ok(maxAbsDiff(pooled, mean) < 1e-5, `pooled features are the 3×3 map's mean (max |Δ| ${maxAbsDiff(pooled, mean)})`);
  // InceptionV3's valid-padded stem leaves a 1×1 map at 96²; the 8×8 window of 299² would not fit.
  const inception = loadNsfwjsModel('nsfwjs_inception_v3', { imageSize: 96 });
  assert.equal(inception.preprocess.minSize, 75);
  const p = noGrad(() => softmax(inception.forward(x), -1)).toArray();
  assert.equal(p.length, 10);
  for (let b = 0; b < 2; b++) assert.ok(Math.abs(Array.from(p.subarray(5 * b, 5 * b + 5)).reduce((s, v) => s + v, 0) - 1) < 1e-5);
  assert.throws(() => loadNsfwjsModel('nsfwjs_inception_v3', { imageSize: 64 }), /needs an input of at least 75×75/);
});

test('nsfwjs registry entries load pretrained weights, take a fresh classifier, and train without leaking buffers', () => {
  assert.deepEqual(listModels('nsfwjs'), ['nsfwjs_inception_v3', 'nsfwjs_mobilenet_v2', 'nsfwjs_mobilenet_v2_mid']);
  const model = createModel('nsfwjs_mobilenet_v2', { numClasses: 10 }) as KerasModel;
  assert.equal(model.numClasses, 10);
  assert.equal(model.family, 'nsfwjs');
  const pretrained = loadNsfwjsModel('nsfwjs_mobilenet_v2');
  assert.deepEqual(model.stateDict().get('Conv_1.kernel')!.toArray(), pretrained.stateDict().get('Conv_1.kernel')!.toArray());
  assert.deepEqual(noGrad(() => model.forwardHead(randn([2, 1280, 7, 7]))).shape, [2, 10]);
  assert.throws(() => model.forward(randn([1, 3, 256, 256])), /expected input \(B, 3, 224, 224\) \(NCHW\); got \[1, 3, 256, 256\]\. Load the model with \{ imageSize: \[256, 256\] \}/);

  const x = tensorFromNhwc(makeImages(['gradient', 'noise'], 224), [2, 224, 224, 3]);
  const y = tensor([3, 7], [2], { dtype: 'int32' });
  model.train();
  const baseline = memory().liveBuffers;
  const loss = tidy(() => {
    const l = crossEntropy(model.forward(x), y);
    l.backward();
    return l.item();
  });
  assert.ok(Number.isFinite(loss));
  assert.ok(model.getModule('dense_3').parameters().every((p) => p.grad !== null));
  const grads = model.parameters().filter((p) => p.grad).length;
  assert.equal(memory().liveBuffers, baseline + grads, 'only the gradients outlive the step');
});

test('tfjs graph import: an unsupported op is one error naming the node, its op and the supported ops', () => {
  const nodes = [
    { name: 'input', op: 'Placeholder', attr: { shape: { shape: { dim: [{ size: '-1' }, { size: '8' }, { size: '8' }, { size: '3' }] } } } },
    { name: 'block/warp', op: 'ImageProjectiveTransformV3', input: ['input'] },
    { name: 'out', op: 'Relu', input: ['block/warp'] },
  ];
  assert.throws(() => new TfGraphModel({ nodes, outputs: ['out'] }, new Map(), { source: 'g/model.json' }),
    /g\/model\.json: graft cannot import node 'block\/warp' \(op ImageProjectiveTransformV3\)\. Supported ops: Placeholder, Const, Conv2D, _FusedConv2D/);
});

test('nsfwjs MobileNetV2: the whole pretrained head (1280 → 256 → 128 → 5) gives way to one Linear on the pooled features', async () => {
  const { applyMethod } = await import('../src/adapters/apply.js');
  const model = createModel('nsfwjs_mobilenet_v2', {});
  const x = randn([2, 3, 224, 224]);
  const pooled = noGrad(() => model.eval().forwardHead(model.forwardFeatures(x), true));
  const probe = applyMethod(model, 'linear-probe', { numClasses: 10, headFrom: 'features' });
  const names = model.namedModules().map(([p]) => p);
  for (const gone of ['dense_1', 'dense_2', 'dense_3']) assert.ok(!names.includes(gone), `${gone} removed`);
  assert.deepEqual(probe.trainableParameters().map((t) => t.shape), [[10, 1280], [10]]);
  const head = model.getModule('classifier') as unknown as { forward(t: typeof x): typeof x };
  const logits = noGrad(() => probe.eval().forward(x));
  const expected = noGrad(() => head.forward(pooled));
  assert.deepEqual(logits.shape, [2, 10]);
  const a = logits.toArray(), b = expected.toArray();
  assert.ok(Array.from(a).every((v, i) => Math.abs(v - b[i]!) < 1e-4), 'logits = classifier(pooled features)');
});
