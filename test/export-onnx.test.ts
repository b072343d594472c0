// ONNX export (src/export/onnx): the exported file of a run, loaded in onnxruntime-node, gives
// graft predict's top-1 and scores within 1e-4 on the same images, for LoRA, DoRA and full
// fine-tuning of CNNs (nsfwjs' Keras MobileNetV2 among them) and ViTs, with a batch size other than the one traced (dynamic batch).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { predictCommand } from '../src/cli/commands.js';
import { exportCommand } from '../src/cli/export-command.js';
import { decodeImage } from '../src/data/image.js';
import { prepareImage } from '../src/data/transforms.js';
import { Generator } from '../src/tensor/random.js';
import { readRunManifest, buildRunModel } from '../src/train/run.js';
import { makeTinyRun, TINY_BACKBONES, TINY_CLASSES, writeTestImages, type TinyBackbone } from './helpers/tiny-runs.js';

const SCORE_TOLERANCE = 1e-4;

function softmax(row: Float32Array): number[] {
  const max = Math.max(...row);
  const e = Array.from(row, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** graft predict's JSON for `files`. */
export async function graftScores(run: string, files: string[]): Promise<number[][]> {
  let out = '';
  await predictCommand(run, files, 'json', (s) => (out += s));
  return (JSON.parse(out) as { predictions: { scores: number[] }[] }).predictions.map((p) => p.scores);
}

/** The images as graft's evaluation transform prepares them, one batch (B, 3, H, W). */
export async function pixelBatch(run: string, files: string[]): Promise<{ data: Float32Array; dims: number[] }> {
  const { config, classes } = readRunManifest(run);
  const { model, preprocess } = await buildRunModel(config, classes);
  model.dispose();
  const [c, h, w] = preprocess.inputSize;
  const data = new Float32Array(files.length * c * h * w);
  for (let i = 0; i < files.length; i++) await prepareImage(await decodeImage(files[i]!), preprocess, null, new Generator(0), data, i * c * h * w);
  return { data, dims: [files.length, c, h, w] };
}

export function maxDiff(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((v, k) => (m = Math.max(m, Math.abs(v - b[i]![k]!)))));
  return m;
}

const argmax = (r: number[]) => r.indexOf(Math.max(...r));

// nsfwjs' pretrained Keras MobileNetV2 (its LayersModel graph), at 64² so that TensorFlow's
// 'same' windows pad unevenly; with its pretrained head and with the head rebuilt from features.
const KERAS = {
  label: 'nsfwjs Keras MobileNetV2', config: { model: 'nsfwjs_mobilenet_v2', data: { source: 'unused', perClass: 1, imageSize: 64 } }, targets: '.*(project|expand)$',
};
const BACKBONES: Record<string, TinyBackbone> = {
  ...TINY_BACKBONES,
  keras: KERAS,
  keras_features: { ...KERAS, label: 'nsfwjs Keras MobileNetV2 (head from features)', config: { ...KERAS.config, headFrom: 'features' } },
};

const CASES: [string, string][] = [
  ['keras', 'lora'], ['keras_features', 'dora'], ['keras_features', 'full'],
  ['resnet', 'lora'], ['resnet', 'dora'], ['resnet', 'full'],
  ['mobilenet', 'lora'], ['mobilenet', 'linear-probe'],
  ['vit', 'lora'], ['vit', 'dora'], ['vit', 'full'],
  ['dinov2', 'lora'], ['dinov2', 'scratch'],
];

const images = writeTestImages(3);
const diffs: string[] = [];

for (const [backbone, method] of CASES) {
  test(`export onnx: ${BACKBONES[backbone]!.label} ${method} in onnxruntime matches graft predict`, async () => {
    const files = await images;
    const run = await makeTinyRun(BACKBONES[backbone]!, method);
    const file = join(mkdtempSync(join(tmpdir(), 'graft-onnx-')), 'model.onnx');
    await exportCommand(run, { format: 'onnx', output: file }, () => {});
    const session = await ort.InferenceSession.create(readFileSync(file));
    assert.deepEqual(session.inputNames, ['pixel_values']);
    assert.deepEqual(session.outputNames, ['logits']);
    const { data, dims } = await pixelBatch(run, files);
    const out = await session.run({ pixel_values: new ort.Tensor('float32', data, dims) });
    const logits = out['logits']!;
    assert.deepEqual(logits.dims, [files.length, TINY_CLASSES.length]);
    const onnxScores = files.map((_, i) => softmax((logits.data as Float32Array).subarray(i * 3, i * 3 + 3)));
    const want = await graftScores(run, files);
    const d = maxDiff(onnxScores, want);
    diffs.push(`${backbone} ${method}: ${d.toExponential(2)}`);
    assert.ok(d <= SCORE_TOLERANCE, `${backbone} ${method}: scores differ from graft predict by ${d}`);
    assert.deepEqual(onnxScores.map(argmax), want.map(argmax));
    // One image alone: the batch axis is not fixed to the traced size.
    const one = await session.run({ pixel_values: new ort.Tensor('float32', data.subarray(0, data.length / files.length), [1, ...dims.slice(1)]) });
    assert.deepEqual(one['logits']!.dims, [1, 3]);
    await session.release();
  });
}

test('export onnx: preprocessing, classes and opset are in the metadata', async () => {
  const run = await makeTinyRun(TINY_BACKBONES['resnet']!, 'lora');
  const file = join(mkdtempSync(join(tmpdir(), 'graft-onnx-')), 'model.onnx');
  await exportCommand(run, { format: 'onnx', output: file }, () => {});
  const bytes = readFileSync(file).toString('latin1');
  for (const key of ['graft.preprocess', 'graft.classes', 'graft.opset', 'graft.method']) assert.ok(bytes.includes(key), `metadata ${key} missing`);
  assert.ok(bytes.includes(JSON.stringify(TINY_CLASSES)));
});

test('export onnx: an adapter that cannot merge (LoRA on depthwise convolutions) is refused, naming the layer', async () => {
  const run = await makeTinyRun({ ...TINY_BACKBONES['mobilenet']!, targets: 'features\\.1\\.conv\\.0\\.0', adapter: { r: 16, alpha: 16 } }, 'lora');
  await assert.rejects(exportCommand(run, { format: 'onnx', output: join(mkdtempSync(join(tmpdir(), 'graft-onnx-')), 'model.onnx') }, () => {}),
    /features\.1\.conv\.0\.0 \(LoraLayer\).*cannot be merged.*ONNX export writes merged models only/);
});

test('export onnx: score differences', () => {
  console.log(`max |score − graft predict|: ${diffs.join(', ')}`);
});
