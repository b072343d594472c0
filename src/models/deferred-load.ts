// Loading a checkpoint into a model built with deferred weights (withDeferredWeights in
// nn/layers.ts), one layer at a time, so the float model is never whole in memory. The family
// loader (vit/checkpoint.ts, cnn/checkpoint.ts) runs as for any checkpoint, with all its checks,
// on every small tensor of the file, and sees each deferred weight as the model's own tensor
// (which loadStateDict leaves alone); then each deferred layer reads its own weight from the file:
// as float, quantised to 4 bits as soon as it is read, or as the file's stored 4-bit state (a
// bitsandbytes checkpoint, bit for bit, never dequantised). The peak while loading is the model's
// final size plus one layer's float weight.
import { WeightsError } from '../errors.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { Conv2d, initWeight, isDeferred, Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { fromQuantized, QUANT_STATE_KEY, quantizeLayer, quantStateShape, readQuantizedLayer, type QuantizeOptions } from '../nn/quant4.js';
import { expand } from '../ops/layout.js';
import { zeros } from '../ops/creation.js';
import { noGrad } from '../tensor/autograd.js';
import { shapeEq } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';

/** A safetensors checkpoint read lazily, with bitsandbytes' 4-bit layers seen as one `<P>.weight` each. */
export class CheckpointReader {
  readonly file: SafetensorsFile;
  /** 4-bit layers by prefix P: the state keys beside `<P>.weight`, relative to P. */
  private readonly fourBit = new Map<string, string[]>();
  private readonly shapes = new Map<string, readonly number[]>();

  constructor(path: string) {
    this.file = new SafetensorsFile(path);
    try {
      const keys = this.file.keys();
      for (const k of keys) {
        const m = QUANT_STATE_KEY.exec(k);
        if (!m) continue;
        const p = m[1]!;
        this.fourBit.set(p, keys.filter((j) => j === `${p}.weight` || j.startsWith(`${p}.weight.`)).map((j) => j.slice(p.length + 1)));
        const t = this.file.get(k);
        try {
          this.shapes.set(`${p}.weight`, quantStateShape(t));
        } catch (e) {
          throw new WeightsError(`${path}: the 4-bit state of ${p} cannot be read (${(e as Error).message})`);
        } finally {
          t.dispose();
        }
      }
      const aux = new Set([...this.fourBit].flatMap(([p, local]) => local.filter((l) => l !== 'weight').map((l) => `${p}.${l}`)));
      for (const k of keys) if (!aux.has(k) && !this.shapes.has(k)) this.shapes.set(k, this.file.tensors.get(k)!.shape);
    } catch (e) {
      this.file.close();
      throw e;
    }
  }

  /** The keys a family loader reads: the file's, less the 4-bit layers' state keys beside `<P>.weight`. */
  keys(): string[] {
    return [...this.shapes.keys()];
  }

  /** Each key's shape; a 4-bit weight's is the float shape it stands for. */
  shape(key: string): readonly number[] {
    return this.shapes.get(key)!;
  }

  /** The prefix P when `key` is a 4-bit layer's `<P>.weight`, else null. */
  fourBitPrefix(key: string): string | null {
    const p = key.endsWith('.weight') ? key.slice(0, -'.weight'.length) : null;
    return p !== null && this.fourBit.has(p) ? p : null;
  }

  get hasFourBit(): boolean {
    return this.fourBit.size > 0;
  }

  /** A float tensor as stored (a fresh tensor; the caller disposes it). */
  float(key: string): Tensor {
    return this.file.get(key);
  }

  /** The stored 4-bit state of the layer P. */
  quantized(prefix: string) {
    const local = new Map<string, Tensor>();
    try {
      for (const l of this.fourBit.get(prefix)!) local.set(l, this.file.get(`${prefix}.${l}`));
      return readQuantizedLayer(local, prefix, this.file.path);
    } finally {
      for (const t of local.values()) t.dispose();
    }
  }

  close(): void {
    this.file.close();
  }
}

export interface DeferredLoadOptions {
  /** Quantise the float weights as they are read (every deferred layer but those `skip` names); null keeps them float. */
  quantize: QuantizeOptions | null;
  skip?: (path: string) => boolean;
}

export interface DeferredLoadSummary {
  /** Layers made 4-bit from the file's stored state. */
  stored4bit: string[];
  /** Layers quantised as they were read. */
  quantized: string[];
  /** Layers the checkpoint had no weight for (a head of another class count): initialised. */
  initialised: string[];
}

/** A stand-in without memory, of a shape the model does not have (so the loader reports the mismatch). */
function shapeOnly(shape: readonly number[]): Tensor {
  const one = zeros(shape.map(() => 1));
  const t = noGrad(() => expand(one, shape));
  if (t !== one) one.dispose();
  return t;
}

/**
 * Loads `reader` into `model` (built under withDeferredWeights): `load` is the family loader,
 * called once with every key of the checkpoint (`modelKeyOf` says which model key each becomes,
 * null when the loader drops it); then every deferred layer takes its weight from the file, one
 * at a time. A 4-bit layer in the file that is not a Linear or groups = 1 Conv2d of the model is
 * refused.
 */
export function loadDeferred(
  model: Module, reader: CheckpointReader, modelKeyOf: (fileKey: string) => string | null,
  load: (state: Map<string, Tensor>) => void, opts: DeferredLoadOptions,
): DeferredLoadSummary {
  const own = model.stateDict();
  const state = new Map<string, Tensor>();
  const made: Tensor[] = [];
  const source = new Map<string, string>();
  try {
    for (const k of reader.keys()) {
      const name = modelKeyOf(k);
      const mine = name === null ? undefined : own.get(name);
      const shape = reader.shape(k);
      const p = reader.fourBitPrefix(k);
      if (mine && isDeferred(mine) && shapeEq(shape, mine.shape)) {
        source.set(name!, k);
        state.set(k, mine);
        continue;
      }
      if (p !== null && mine && !isDeferred(mine)) throw new WeightsError(`${reader.file.path}: the 4-bit layer ${p} is not a Linear or Conv2d of this model (it becomes ${name})`);
      const t = (mine && isDeferred(mine)) || p !== null ? shapeOnly(shape) : reader.float(k);
      made.push(t);
      state.set(k, t);
    }
    load(state);
  } finally {
    for (const t of made) t.dispose();
  }

  const summary: DeferredLoadSummary = { stored4bit: [], quantized: [], initialised: [] };
  const skip = opts.skip ?? (() => false);
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv2d) || !isDeferred(m.weight)) continue;
    const k = source.get(path ? `${path}.weight` : 'weight');
    const p = k === undefined ? null : reader.fourBitPrefix(k);
    if (p !== null) {
      model.setModule(path, fromQuantized(m, reader.quantized(p)));
      m.dispose();
      summary.stored4bit.push(path);
      continue;
    }
    if (k === undefined) summary.initialised.push(path);
    initWeight(m, k === undefined ? undefined : reader.float(k));
    if (!opts.quantize || skip(path)) continue;
    const q = quantizeLayer(m, opts.quantize);
    if (!q) continue;
    model.setModule(path, q);
    m.weight.dispose();
    summary.quantized.push(path);
  }
  return summary;
}
