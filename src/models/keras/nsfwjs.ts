// The pretrained classifiers of the npm package nsfwjs, fine-tuned to 5 classes and
// uint8-quantised: Keras MobileNetV2 (224²) and InceptionV3 (299²) as TF.js LayersModels, and
// MobileNetV2 1.4 "mid" (224², a TF Hub backbone) as a TF.js graph model. nsfwjs
// ships them as browserify bundles: dist/models/<model>/model.min.js exports the model.json
// object and each group1-shard*.min.js exports its shard as a base64 string. nsfwjs feeds
// pixels / 255 (tf.browser.fromPixels(img).toFloat().div(255)), resized bilinearly to the
// model's size.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { decodeWeightsManifest, parseTfjsModelJson, TfjsFormatError, type TfjsArtifacts } from '../../io/tfjs.js';
import { ConfigError } from '../../errors.js';
import { registerModel } from '../registry.js';
import type { CreateModelOptions } from '../model.js';
import { modelFromArtifacts, type LoadKerasOptions } from './load.js';
import type { KerasModel } from './keras-model.js';
import type { TfGraphModel } from './graph-model.js';

/** Class order of the nsfwjs classifiers' outputs. */
export const NSFWJS_CLASSES = ['Drawing', 'Hentai', 'Neutral', 'Porn', 'Sexy'] as const;

const NSFWJS_MODELS = {
  // minSize: the smallest input the graph's windows fit (Keras's documented minimum for each);
  // featureMap: the side of the last feature map at the native size, which the head averages.
  nsfwjs_mobilenet_v2: { folder: 'mobilenet_v2', size: 224, minSize: 32, featureMap: 7 },
  nsfwjs_mobilenet_v2_mid: { folder: 'mobilenet_v2_mid', size: 224, minSize: 32, featureMap: 7 },
  nsfwjs_inception_v3: { folder: 'inception_v3', size: 299, minSize: 75, featureMap: 8 },
} as const;

export type NsfwjsModelName = keyof typeof NSFWJS_MODELS;
export const NSFWJS_MODEL_NAMES = Object.keys(NSFWJS_MODELS) as NsfwjsModelName[];

/** The installed nsfwjs package folder. Its "exports" map hides dist/models, so files are read by path. */
export function nsfwjsRoot(): string {
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve('nsfwjs');
  } catch {
    throw new Error('the nsfwjs package is not installed; run: npm install nsfwjs@4.4.0');
  }
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'nsfwjs') return dir;
  }
  throw new Error(`could not find the nsfwjs package folder above ${entry}`);
}

/** Requires a bundle by absolute path and drops it from the module cache (shards are tens of MB). */
function requireBundle(path: string): unknown {
  const require = createRequire(import.meta.url);
  if (!existsSync(path)) throw new TfjsFormatError(`${path} is missing from the nsfwjs package; reinstall it with: npm install nsfwjs@4.4.0`);
  const value: unknown = require(path);
  delete require.cache[path];
  return value;
}

/** The model.json and decoded weights of an nsfwjs model, from its bundles in a folder. */
export function readNsfwjsBundles(folder: string): TfjsArtifacts {
  const modelPath = join(folder, 'model.min.js');
  const modelJson = parseTfjsModelJson(requireBundle(modelPath), modelPath);
  const readShard = (p: string): Uint8Array => {
    const file = join(folder, `${p}.min.js`);
    const b64 = requireBundle(file);
    if (typeof b64 !== 'string') throw new TfjsFormatError(`${file} does not export a base64 string`);
    return Buffer.from(b64, 'base64');
  };
  return { modelJson, weights: decodeWeightsManifest(modelJson.weightsManifest, readShard, modelPath), source: modelPath };
}

function modelSpec(name: string): (typeof NSFWJS_MODELS)[NsfwjsModelName] {
  const spec = (NSFWJS_MODELS as Record<string, (typeof NSFWJS_MODELS)[NsfwjsModelName]>)[name];
  if (!spec) throw new Error(`unknown nsfwjs model '${name}'; one of ${NSFWJS_MODEL_NAMES.join(', ')}`);
  return spec;
}

/** The folder of an nsfwjs model's bundles. */
export function nsfwjsModelFolder(name: NsfwjsModelName): string {
  return join(nsfwjsRoot(), 'dist', 'models', modelSpec(name).folder);
}

/**
 * nsfwjs's heads average the backbone's last feature map (7×7 for MobileNetV2 at 224², 8×8 for
 * InceptionV3 at 299²) with an AveragePooling2D of that window: a global average at the native
 * size, which a smaller input would leave too small for the window (and a larger one would turn
 * into several pooled cells, changing the Dense layer's input width). At another size that layer
 * becomes the global average it was (GlobalAveragePooling2D, keepdims: the same 1×1 map), so
 * every pretrained layer keeps its shape.
 */
function poolWholeFeatureMap(topology: Record<string, unknown>, featureMap: number): void {
  const config = (topology['model_config'] as { config?: { layers?: unknown } } | undefined)?.config ?? (topology['config'] as { layers?: unknown } | undefined);
  const layers = Array.isArray(config?.layers) ? (config.layers as { class_name?: string; config?: Record<string, unknown> }[]) : [];
  for (const layer of layers) {
    const pool = layer.config?.['pool_size'];
    if (layer.class_name !== 'AveragePooling2D' || !Array.isArray(pool) || pool[0] !== featureMap || pool[1] !== featureMap) continue;
    layer.class_name = 'GlobalAveragePooling2D';
    layer.config = { name: layer.config!['name'], trainable: layer.config!['trainable'], data_format: layer.config!['data_format'], keepdims: true };
  }
}

/**
 * A pretrained nsfwjs classifier in graft, with nsfwjs's preprocessing (pixels / 255 at 224² or
 * 299²; the mid model maps them to [−1, 1] inside its graph). forward() gives logits over
 * NSFWJS_CLASSES; predict() gives nsfwjs's probabilities.
 */
export function loadNsfwjsModel(name: NsfwjsModelName, opts: LoadKerasOptions = {}): KerasModel | TfGraphModel {
  const { size, minSize, featureMap } = modelSpec(name);
  const [h, w] = opts.imageSize === undefined ? [size, size] : typeof opts.imageSize === 'number' ? [opts.imageSize, opts.imageSize] : opts.imageSize;
  if (Math.min(h, w) < minSize) throw new ConfigError(`data.imageSize: ${name} needs an input of at least ${minSize}×${minSize} (its windows do not fit ${h}×${w}); give --image-size ${minSize} or more, or leave it out`);
  const artifacts = readNsfwjsBundles(nsfwjsModelFolder(name));
  if (h !== size || w !== size) poolWholeFeatureMap(artifacts.modelJson.modelTopology, featureMap);
  return modelFromArtifacts(artifacts, {
    family: 'nsfwjs',
    ...opts,
    preprocess: { inputSize: [3, h, w], mean: [0, 0, 0], std: [1, 1, 1], interpolation: 'bilinear', cropPct: 1, minSize, ...opts.preprocess },
  });
}

for (const name of NSFWJS_MODEL_NAMES) {
  registerModel(name, {
    family: 'nsfwjs',
    create: (opts: CreateModelOptions) => loadNsfwjsModel(name, {
      numClasses: opts.numClasses,
      imageSize: opts.imageSize,
    }),
  });
}
