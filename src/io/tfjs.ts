// TF.js model artifacts: a model.json ({ modelTopology, weightsManifest }) and binary weight
// shards. Each manifest group lists its shard paths and its weights; the group's weights lie
// back to back in the concatenation of its shards, in manifest order. A weight is stored as its
// dtype, or quantised (tfjs-core io_utils.decodeWeights, tfjs-converter quantization.py):
//   uint8 / uint16: value = q · scale + min   (int32 weights round the result)
//   float16:        IEEE half-precision bits
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../backends/backend.js';
import { f16ToF32 } from './safetensors.js';

export interface TfjsQuantization {
  dtype: 'uint8' | 'uint16' | 'float16';
  scale?: number;
  min?: number;
}

export interface TfjsWeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: TfjsQuantization;
  group?: string;
}

export interface TfjsWeightsGroup {
  paths: string[];
  weights: TfjsWeightSpec[];
}

/** The parsed model.json. `modelTopology` is a Keras model config for LayersModels, a GraphDef for graph models. */
export interface TfjsModelJson {
  modelTopology: Record<string, unknown>;
  weightsManifest: TfjsWeightsGroup[];
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
}

/** One decoded weight on the host: float32 (dequantised), int32, or uint8 for bool. */
export interface TfjsWeight {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

export class TfjsFormatError extends Error {
  override name = 'TfjsFormatError';
}

const STORED_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function numel(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/** Bytes one weight occupies in its shard, checking what can be checked before reading. */
function storedBytes(spec: TfjsWeightSpec, source: string): number {
  if (!Array.isArray(spec.shape) || spec.shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TfjsFormatError(`${source}: weight '${spec.name}' has an invalid shape ${JSON.stringify(spec.shape)}`);
  }
  const q = spec.quantization;
  if (q) {
    if (q.dtype !== 'uint8' && q.dtype !== 'uint16' && q.dtype !== 'float16') {
      throw new TfjsFormatError(`${source}: weight '${spec.name}' has quantization dtype '${String(q.dtype)}'; TF.js defines uint8, uint16 and float16`);
    }
    if (q.dtype === 'float16' && spec.dtype !== 'float32') {
      throw new TfjsFormatError(`${source}: weight '${spec.name}' is float16-quantised but has dtype ${spec.dtype}; float16 applies to float32 weights only`);
    }
    if (q.dtype !== 'float16' && typeof q.scale !== 'number') {
      throw new TfjsFormatError(`${source}: weight '${spec.name}' is ${q.dtype}-quantised without a numeric scale`);
    }
    if (spec.dtype !== 'float32' && spec.dtype !== 'int32') {
      throw new TfjsFormatError(`${source}: weight '${spec.name}' has dtype ${spec.dtype}; quantisation applies to float32 and int32 weights`);
    }
    return numel(spec.shape) * STORED_BYTES[q.dtype]!;
  }
  const bytes = STORED_BYTES[spec.dtype];
  if (spec.dtype === 'uint8' || spec.dtype === 'uint16' || bytes === undefined) {
    throw new TfjsFormatError(`${source}: weight '${spec.name}' has dtype '${spec.dtype}'; graft reads float32, int32 and bool weights (string and complex64 are not numeric parameters)`);
  }
  return numel(spec.shape) * bytes;
}

function decodeOne(spec: TfjsWeightSpec, bytes: Uint8Array): TfjsWeight {
  const n = numel(spec.shape);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const q = spec.quantization;
  if (q?.dtype === 'float16') {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = f16ToF32(view.getUint16(2 * i, true));
    return { name: spec.name, shape: spec.shape, data };
  }
  if (q) {
    // Affine quantisation. TF.js requires min for uint8/uint16; a manifest without it (symmetric
    // quantisation) is read with min = 0.
    const scale = q.scale!;
    const min = q.min ?? 0;
    const read = q.dtype === 'uint8' ? (i: number) => bytes[i]! : (i: number) => view.getUint16(2 * i, true);
    if (spec.dtype === 'int32') {
      const data = new Int32Array(n);
      for (let i = 0; i < n; i++) data[i] = Math.round(read(i) * scale + min);
      return { name: spec.name, shape: spec.shape, data };
    }
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = read(i) * scale + min;
    return { name: spec.name, shape: spec.shape, data };
  }
  if (spec.dtype === 'bool') return { name: spec.name, shape: spec.shape, data: bytes.slice() };
  const data = spec.dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  const getter = spec.dtype === 'int32' ? (i: number) => view.getInt32(4 * i, true) : (i: number) => view.getFloat32(4 * i, true);
  for (let i = 0; i < n; i++) data[i] = getter(i);
  return { name: spec.name, shape: spec.shape, data };
}

/**
 * Decodes one manifest group's weights from the concatenation of its shards. The byte count
 * must match the manifest exactly: a shorter or longer buffer means a truncated shard or a
 * shard of another model.
 */
export function decodeTfjsWeights(specs: readonly TfjsWeightSpec[], data: Uint8Array, source = 'weights'): Map<string, TfjsWeight> {
  const sizes = specs.map((s) => storedBytes(s, source));
  const expected = sizes.reduce((p, s) => p + s, 0);
  if (data.byteLength !== expected) {
    throw new TfjsFormatError(`${source}: the shards hold ${data.byteLength} bytes but the manifest's ${specs.length} weights need ${expected} bytes; a shard file is truncated, corrupt or from another model`);
  }
  const out = new Map<string, TfjsWeight>();
  let offset = 0;
  specs.forEach((spec, i) => {
    if (out.has(spec.name)) throw new TfjsFormatError(`${source}: weight '${spec.name}' appears twice in the manifest`);
    out.set(spec.name, decodeOne(spec, data.subarray(offset, offset + sizes[i]!)));
    offset += sizes[i]!;
  });
  return out;
}

/** Checks the parts of a model.json every reader relies on. */
export function parseTfjsModelJson(value: unknown, source: string): TfjsModelJson {
  const obj = value as Partial<TfjsModelJson> | null;
  if (!obj || typeof obj !== 'object' || !obj.modelTopology || typeof obj.modelTopology !== 'object') {
    throw new TfjsFormatError(`${source}: not a TF.js model.json (no modelTopology object)`);
  }
  const manifest = obj.weightsManifest ?? [];
  if (!Array.isArray(manifest) || manifest.some((g) => !Array.isArray(g?.paths) || !Array.isArray(g?.weights))) {
    throw new TfjsFormatError(`${source}: weightsManifest must be a list of { paths, weights } groups`);
  }
  return { ...obj, modelTopology: obj.modelTopology, weightsManifest: manifest } as TfjsModelJson;
}

/** Decodes every group of a manifest, reading each shard path with `readShard`. */
export function decodeWeightsManifest(manifest: readonly TfjsWeightsGroup[], readShard: (path: string) => Uint8Array, source: string): Map<string, TfjsWeight> {
  const out = new Map<string, TfjsWeight>();
  for (const group of manifest) {
    const shards = group.paths.map(readShard);
    const total = shards.reduce((p, s) => p + s.byteLength, 0);
    const joined = shards.length === 1 ? shards[0]! : new Uint8Array(total);
    if (shards.length > 1) {
      let at = 0;
      for (const s of shards) {
        joined.set(s, at);
        at += s.byteLength;
      }
    }
    const decoded = decodeTfjsWeights(group.weights, joined, `${source} (shards ${group.paths.join(', ')})`);
    for (const [name, w] of decoded) {
      if (out.has(name)) throw new TfjsFormatError(`${source}: weight '${name}' appears in two manifest groups`);
      out.set(name, w);
    }
  }
  return out;
}

export interface TfjsArtifacts {
  modelJson: TfjsModelJson;
  weights: Map<string, TfjsWeight>;
  /** Where the artifacts came from, for messages. */
  source: string;
}

/** Reads model.json and its shard files (paths relative to model.json) from a folder or a model.json path. */
export function readTfjsModel(folderOrModelJson: string): TfjsArtifacts {
  const jsonPath = existsSync(folderOrModelJson) && statSync(folderOrModelJson).isDirectory() ? join(folderOrModelJson, 'model.json') : folderOrModelJson;
  if (!existsSync(jsonPath)) throw new TfjsFormatError(`no TF.js model at ${jsonPath}: expected a folder holding model.json and its weight shards, or the path of a model.json`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(jsonPath, 'utf8'));
  } catch (e) {
    throw new TfjsFormatError(`${jsonPath} is not valid JSON: ${(e as Error).message}`);
  }
  const modelJson = parseTfjsModelJson(parsed, jsonPath);
  const dir = dirname(jsonPath);
  const readShard = (p: string): Uint8Array => {
    const file = join(dir, p);
    if (!existsSync(file)) throw new TfjsFormatError(`${jsonPath} names the weight shard '${p}', but ${file} does not exist`);
    return readFileSync(file);
  };
  return { modelJson, weights: decodeWeightsManifest(modelJson.weightsManifest, readShard, jsonPath), source: jsonPath };
}

/** A decoded weight as a graft tensor (float32, int32, or uint8 for bool). */
export function weightTensor(w: TfjsWeight, backend?: Backend<any>): Tensor {
  return tensor(w.data, w.shape, backend ? { backend } : {});
}
