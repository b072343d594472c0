// Frozen 4-bit base layers (bitsandbytes' Linear4bit, and a Conv2d of the same kind, which
// bitsandbytes and PEFT lack). They are Linear / Conv2d to the rest of graft, so every adapter
// method wraps them; forward and the gradient to the input run the 4-bit kernels (src/ops/quant4.ts),
// which dequantise a chunk at a time. `weight` reads as a float tensor dequantised on demand (for
// methods that compute with W itself: DoRA's norm, OFT, LoHa/LoKr, merging), a fresh tensor each
// read. The state dict uses bitsandbytes' names (Linear4bit's `<prefix>weight.<key>`):
// weight (packed uint8, (ceil(n/2), 1)), weight.absmax, weight.quant_map, weight.nested_absmax,
// weight.nested_quant_map and weight.quant_state.bitsandbytes__<nf4|fp4> (the JSON of the rest).
import { ConfigError, WeightsError } from '../errors.js';
import { Module } from './module.js';
import { Conv2d, Linear, withLayerHook } from './layers.js';
import { Tensor } from '../tensor/tensor.js';
import { keep } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { tensor } from '../ops/creation.js';
import { conv2d4bit, linear4bit, type Q4Tensors } from '../ops/quant4.js';
import { computePrecision } from '../ops/precision.js';
import { linear } from '../ops/matmul.js';
import { conv2d } from '../ops/conv.js';
import {
  blockScales, checkBlocksize, codeOf, dequantize4, quantize4, DEFAULT_BLOCKSIZE, NESTED_BLOCKSIZE,
  type QuantState4, type QuantType, type Quantized4,
} from '../tensor/quant4.js';

export interface QuantizeOptions {
  quantType?: QuantType;
  blocksize?: number;
  doubleQuant?: boolean;
}

/** The JSON bitsandbytes packs under weight.quant_state.bitsandbytes__<type> (QuantState.as_dict(packed=True)). */
interface PackedQuantState {
  quant_type: QuantType;
  blocksize: number;
  dtype: string;
  shape: number[];
  nested_blocksize?: number;
  nested_dtype?: string;
  nested_offset?: number;
}

const STATE_KEYS = ['weight', 'weight.absmax', 'weight.quant_map', 'weight.nested_absmax', 'weight.nested_quant_map'] as const;

/** What one quantised layer holds, as tensors (the module's buffers). */
class Q4Store {
  q: Quantized4;
  /** A float weight while merged adapters are folded in (merge dequantises first); null otherwise. */
  float: Tensor | null = null;
  constructor(q: Quantized4) {
    this.q = q;
  }
}

interface Quant4Layer {
  readonly store: Q4Store;
}

function jsonOf(state: QuantState4): PackedQuantState {
  const j: PackedQuantState = { quant_type: state.quantType, blocksize: state.blocksize, dtype: 'float32', shape: [...state.shape] };
  if (state.nested) Object.assign(j, { nested_blocksize: state.nested.blocksize, nested_dtype: 'float32', nested_offset: state.nested.offset });
  return j;
}

function bufferTensors(q: Quantized4): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  m.set('weight', tensor(q.packed, [q.packed.length, 1], { dtype: 'uint8' }));
  const a = q.state.absmax;
  m.set('weight.absmax', tensor(a, [a.length], { dtype: a instanceof Uint8Array ? 'uint8' : 'float32' }));
  m.set('weight.quant_map', tensor(Float32Array.from(codeOf(q.state.quantType)), [16]));
  if (q.state.nested) {
    m.set('weight.nested_absmax', tensor(q.state.nested.absmax, [q.state.nested.absmax.length]));
    m.set('weight.nested_quant_map', tensor(q.state.nested.code, [q.state.nested.code.length]));
  }
  const json = new TextEncoder().encode(JSON.stringify(jsonOf(q.state)));
  m.set(`weight.quant_state.bitsandbytes__${q.state.quantType}`, tensor(json, [json.length], { dtype: 'uint8' }));
  return m;
}

/** Registers the store's tensors as the module's buffers under bitsandbytes' names. */
function registerBuffers(m: Module, q: Quantized4, register: (name: string, t: Tensor | null) => void, previous: Map<string, Tensor> | null): Map<string, Tensor> {
  const next = noGrad(() => bufferTensors(q));
  if (previous) for (const [k, t] of previous) if (!next.has(k)) {
    register(k, null);
    t.dispose();
  } else t.dispose();
  for (const [k, t] of next) register(k, t);
  void m;
  // The state's arrays become views of the buffers, so the codes and scales are held once.
  const view = (t: Tensor) => t.backend.read(t.buf(), t.dtype, 0, t.size);
  q.packed = view(next.get('weight')!) as Uint8Array;
  q.state.absmax = view(next.get('weight.absmax')!) as Float32Array | Uint8Array;
  if (q.state.nested) {
    q.state.nested.absmax = view(next.get('weight.nested_absmax')!) as Float32Array;
    q.state.nested.code = view(next.get('weight.nested_quant_map')!) as Float32Array;
  }
  return next;
}

/** The float weight, dequantised (a fresh tensor; the float weight while adapters are merged). */
function floatWeight(store: Q4Store): Tensor {
  if (store.float) return store.float;
  return tensor(dequantize4(store.q), store.q.state.shape);
}

/** The kernels' view of the weight: packed codes, per-block float scales (decoded when nested), code. */
function q4Tensors(store: Q4Store, buffers: Map<string, Tensor>): { w: Q4Tensors; scratch: Tensor | null } {
  const st = store.q.state;
  const scratch = st.nested ? tensor(blockScales(st), [st.absmax.length]) : null;
  return {
    w: { packed: buffers.get('weight')!, scales: scratch ?? buffers.get('weight.absmax')!, code: buffers.get('weight.quant_map')!, blocksize: st.blocksize, shape: st.shape },
    scratch,
  };
}

function readQuantized(buffers: Map<string, Tensor>, shape: readonly number[] | null): Quantized4 {
  const key = [...buffers.keys()].find((k) => k.startsWith('weight.quant_state.bitsandbytes__'))!;
  // uint8 tensors may arrive widened to float32 by a loader: their values are the bytes
  const bytes = (t: Tensor) => Uint8Array.from(t.toArray() as ArrayLike<number>);
  const json = JSON.parse(new TextDecoder().decode(bytes(buffers.get(key)!))) as PackedQuantState;
  if (json.quant_type !== 'nf4' && json.quant_type !== 'fp4') throw new Error(`quant_type ${String(json.quant_type)} (graft reads nf4 and fp4)`);
  checkBlocksize(json.blocksize);
  if (!Array.isArray(json.shape)) throw new Error('quant_state has no shape');
  const nested = json.nested_offset !== undefined;
  const absmaxValues = buffers.get('weight.absmax')!.toArray() as ArrayLike<number>;
  const absmax = nested ? Uint8Array.from(absmaxValues) : Float32Array.from(absmaxValues);
  return {
    packed: bytes(buffers.get('weight')!),
    state: {
      quantType: json.quant_type, blocksize: json.blocksize, shape: [...(shape ?? json.shape)], absmax,
      nested: nested
        ? { absmax: Float32Array.from(buffers.get('weight.nested_absmax')!.toArray() as ArrayLike<number>), code: Float32Array.from(buffers.get('weight.nested_quant_map')!.toArray() as ArrayLike<number>), blocksize: json.nested_blocksize ?? NESTED_BLOCKSIZE, offset: json.nested_offset! }
        : null,
    },
  };
}

function quantizeFrom(w: Tensor, opts: QuantizeOptions): Quantized4 {
  return quantize4(w.toArray() as Float32Array, w.shape, { quantType: opts.quantType ?? 'nf4', blocksize: opts.blocksize ?? DEFAULT_BLOCKSIZE, doubleQuant: opts.doubleQuant ?? false });
}

/** Rounding error of re-quantising: the largest and the root-mean-square difference. */
export interface RequantizeReport {
  maxAbsError: number;
  rmsError: number;
}

function requantizeStore(store: Q4Store, opts: QuantizeOptions): RequantizeReport {
  const f = store.float;
  if (!f) return { maxAbsError: 0, rmsError: 0 };
  const values = f.toArray() as Float32Array;
  store.q = quantize4(values, store.q.state.shape, { quantType: opts.quantType ?? store.q.state.quantType, blocksize: opts.blocksize ?? store.q.state.blocksize, doubleQuant: opts.doubleQuant ?? store.q.state.nested !== null });
  const back = dequantize4(store.q);
  let max = 0;
  let sq = 0;
  for (let i = 0; i < values.length; i++) {
    const d = Math.abs(values[i]! - back[i]!);
    if (d > max) max = d;
    sq += d * d;
  }
  f.dispose();
  store.float = null;
  return { maxAbsError: max, rmsError: Math.sqrt(sq / Math.max(values.length, 1)) };
}

function defineWeight(layer: Module & Quant4Layer): void {
  Object.defineProperty(layer, 'weight', {
    get: () => floatWeight(layer.store),
    set: () => {
      throw new Error('a 4-bit layer\'s weight is frozen; call dequantizeForMerge() first to edit it as float');
    },
    configurable: true,
    enumerable: false,
  });
}

/** bitsandbytes' Linear4bit: a frozen 4-bit (out, in) weight, the bias as in Linear. */
export class Linear4bit extends Linear implements Quant4Layer {
  readonly store: Q4Store;
  private buffers: Map<string, Tensor>;
  constructor(inFeatures: number, outFeatures: number, q: Quantized4, bias: Tensor | null) {
    super(inFeatures, outFeatures, { bias: false, weight: false });
    if (q.state.shape.length !== 2 || q.state.shape[0] !== outFeatures || q.state.shape[1] !== inFeatures) throw new WeightsError(`Linear4bit: a quantised weight of shape [${q.state.shape.join(', ')}] does not fit (${outFeatures}, ${inFeatures})`);
    this.store = new Q4Store(q);
    this.buffers = registerBuffers(this, q, (n, t) => this.buffer(n, t), null);
    defineWeight(this);
    if (bias) this.bias = this.param('bias', bias);
  }
  /** A Linear4bit from a float Linear (its weight quantised, its bias kept). */
  static fromLinear(l: Linear, opts: QuantizeOptions = {}): Linear4bit {
    const q = quantizeFrom(l.weight, opts);
    const b = l.bias ? noGrad(() => l.bias!.clone()) : null;
    const m = new Linear4bit(l.inFeatures, l.outFeatures, q, b);
    if (b) m.bias!.requiresGrad = l.bias!.requiresGrad;
    return m;
  }
  get quantized(): Quantized4 {
    return this.store.q;
  }
  /** The frozen weights the 4-bit codes stand for (describeTrainable counts them). */
  storedWeightCount(): number {
    return this.store.q.state.shape.reduce((a, b) => a * b, 1);
  }
  override forward(x: Tensor): Tensor {
    if (this.store.float) return linear(x, this.store.float, this.bias);
    const { w, scratch } = q4Tensors(this.store, this.buffers);
    const y = linear4bit(x, w, this.bias, { precision: computePrecision() });
    scratch?.dispose();
    return y;
  }
  /** Keeps a float copy of the weight that edits (merging adapters) write into; forward then uses it. */
  dequantizeForMerge(): Tensor {
    if (!this.store.float) this.store.float = keep(floatWeight(this.store));
    return this.store.float;
  }
  /** Quantises the float copy again (after merging) and reports the rounding error. */
  requantize(opts: QuantizeOptions = {}): RequantizeReport {
    const r = requantizeStore(this.store, opts);
    this.buffers = registerBuffers(this, this.store.q, (n, t) => this.buffer(n, t), this.buffers);
    return r;
  }
  /** Replaces the quantised state by the one in `state` (bitsandbytes' keys relative to this layer). */
  loadQuantized(state: Map<string, Tensor>): void {
    this.store.q = readQuantized(state, this.store.q.state.shape);
    this.buffers = registerBuffers(this, this.store.q, (n, t) => this.buffer(n, t), this.buffers);
  }
}

/** A frozen 4-bit Conv2d (groups = 1): conv2d forward and backward-to-input dequantise by chunks of output channels. */
export class Conv2d4bit extends Conv2d implements Quant4Layer {
  /** Read by convBatchNormFolded, which leaves 4-bit convolutions unfolded. */
  readonly isQuantized4 = true;
  readonly store: Q4Store;
  private buffers: Map<string, Tensor>;
  constructor(c: Conv2d, q: Quantized4, bias: Tensor | null) {
    super(c.inChannels, c.outChannels, c.kernelSize, { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups, bias: false, weight: false });
    if (c.groups !== 1) throw new ConfigError(`Conv2d4bit: 4-bit convolutions take groups = 1; this one has groups = ${c.groups} (grouped and depthwise convolutions stay in float)`);
    this.store = new Q4Store(q);
    this.buffers = registerBuffers(this, q, (n, t) => this.buffer(n, t), null);
    defineWeight(this);
    if (bias) this.bias = this.param('bias', bias);
  }
  static fromConv(c: Conv2d, opts: QuantizeOptions = {}): Conv2d4bit {
    const q = quantizeFrom(c.weight, opts);
    const b = c.bias ? noGrad(() => c.bias!.clone()) : null;
    const m = new Conv2d4bit(c, q, b);
    if (b) m.bias!.requiresGrad = c.bias!.requiresGrad;
    return m;
  }
  get quantized(): Quantized4 {
    return this.store.q;
  }
  /** The frozen weights the 4-bit codes stand for (describeTrainable counts them). */
  storedWeightCount(): number {
    return this.store.q.state.shape.reduce((a, b) => a * b, 1);
  }
  override forward(x: Tensor): Tensor {
    if (this.store.float) return conv2d(x, this.store.float, this.bias, this.convOptions);
    const { w, scratch } = q4Tensors(this.store, this.buffers);
    const y = conv2d4bit(x, w, this.bias, this.convOptions);
    scratch?.dispose();
    return y;
  }
  dequantizeForMerge(): Tensor {
    if (!this.store.float) this.store.float = keep(floatWeight(this.store));
    return this.store.float;
  }
  requantize(opts: QuantizeOptions = {}): RequantizeReport {
    const r = requantizeStore(this.store, opts);
    this.buffers = registerBuffers(this, this.store.q, (n, t) => this.buffer(n, t), this.buffers);
    return r;
  }
  loadQuantized(state: Map<string, Tensor>): void {
    this.store.q = readQuantized(state, this.store.q.state.shape);
    this.buffers = registerBuffers(this, this.store.q, (n, t) => this.buffer(n, t), this.buffers);
  }
}

export type Quant4Module = Linear4bit | Conv2d4bit;

export function isQuantized(m: Module | null | undefined): m is Quant4Module {
  return m instanceof Linear4bit || m instanceof Conv2d4bit;
}

/** The 4-bit form of a float layer, or null for layers that stay float (grouped convolutions, tiny layers). */
export function quantizeLayer(m: Module, opts: QuantizeOptions = {}): Quant4Module | null {
  if (isQuantized(m)) return null;
  if (opts.blocksize !== undefined) checkBlocksize(opts.blocksize, 'quantisation block size');
  if (m instanceof Linear) return Linear4bit.fromLinear(m, opts);
  if (m instanceof Conv2d && m.groups === 1) return Conv2d4bit.fromConv(m, opts);
  return null;
}

/** Whether a state-dict key relative to a layer is one of the 4-bit layer's own (bitsandbytes' names). */
export function isQuantStateKey(localKey: string): boolean {
  return (STATE_KEYS as readonly string[]).includes(localKey) || localKey.startsWith('weight.quant_state.bitsandbytes__');
}

export { Tensor };

/** What quantising a model changed: layers, parameter counts and base-weight bytes before and after. */
export interface QuantizeSummary {
  layers: string[];
  quantizedParams: number;
  floatBytesBefore: number;
  bytesAfter: number;
}

/**
 * Replaces every Linear and groups = 1 Conv2d of `model` (but those `skip` names, e.g. the
 * classifier) by its 4-bit form, one layer at a time (each float weight is dropped as soon as its
 * layer is quantised).
 */
export function quantizeModule(model: Module, opts: QuantizeOptions = {}, skip: (path: string) => boolean = () => false): QuantizeSummary {
  const summary: QuantizeSummary = { layers: [], quantizedParams: 0, floatBytesBefore: 0, bytesAfter: 0 };
  for (const [path, m] of model.namedModules()) {
    if (!path || skip(path) || !(m instanceof Linear || m instanceof Conv2d) || isQuantized(m)) continue;
    const q = quantizeLayer(m, opts);
    if (!q) continue;
    summary.layers.push(path);
    summary.quantizedParams += m.weight.size;
    summary.floatBytesBefore += m.weight.size * 4;
    summary.bytesAfter += quantStateBytes(q);
    model.setModule(path, q);
    m.weight.dispose();
  }
  return summary;
}

/** Bytes of a 4-bit layer's stored weight state (codes, scales, maps, the JSON). */
export function quantStateBytes(m: Quant4Module): number {
  let b = 0;
  for (const [k, t] of m.stateDict()) if (isQuantStateKey(k)) b += t.size * (t.dtype === 'uint8' ? 1 : 4);
  return b;
}

/** A float layer's 4-bit form built from a stored quantised state (no float weight made). */
export function fromQuantized(m: Linear | Conv2d, q: Quantized4): Quant4Module {
  const bias = m.bias ? noGrad(() => m.bias!.clone()) : null;
  const out = m instanceof Conv2d ? new Conv2d4bit(m, q, bias) : new Linear4bit(m.inFeatures, m.outFeatures, q, bias);
  if (bias) out.bias!.requiresGrad = m.bias!.requiresGrad;
  return out;
}

/** The key of a bitsandbytes 4-bit layer's packed state: `<P>.weight.quant_state.bitsandbytes__<nf4|fp4>` (P: group 1). */
export const QUANT_STATE_KEY = /^(.*)\.weight\.quant_state\.bitsandbytes__(nf4|fp4)$/;

/** The float shape a stored 4-bit layer stands for, from its quant_state tensor (the JSON bytes). */
export function quantStateShape(stateTensor: Tensor): number[] {
  const json = JSON.parse(new TextDecoder().decode(Uint8Array.from(stateTensor.toArray() as ArrayLike<number>))) as Partial<PackedQuantState>;
  if (!Array.isArray(json.shape) || json.shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error('quant_state has no valid shape');
  return json.shape;
}

/**
 * One 4-bit layer of a bitsandbytes checkpoint from its tensors under `<P>.weight` (`local`:
 * keys relative to P: weight, weight.absmax, …, weight.quant_state.bitsandbytes__<type>),
 * checked for completeness and consistency; the error names the layer and the file (`what`).
 */
export function readQuantizedLayer(local: Map<string, Tensor>, prefix: string, what = 'the checkpoint'): Quantized4 {
  const stateKey = [...local.keys()].find((k) => k.startsWith('weight.quant_state.bitsandbytes__'));
  if (!stateKey) throw new WeightsError(`${what}: the 4-bit layer ${prefix} has no ${prefix}.weight.quant_state.bitsandbytes__<nf4|fp4>`);
  for (const need of ['weight', 'weight.absmax']) if (!local.has(need)) throw new WeightsError(`${what}: the 4-bit layer ${prefix} has ${prefix}.${stateKey} but no ${prefix}.${need}; the checkpoint is incomplete`);
  let q: Quantized4;
  try {
    q = readQuantized(local, null);
  } catch (e) {
    throw new WeightsError(`${what}: the 4-bit state of ${prefix} cannot be read (${(e as Error).message})`);
  }
  const n = q.state.shape.reduce((a, b) => a * b, 1);
  if (q.packed.length !== Math.ceil(n / 2)) throw new WeightsError(`${what}: ${prefix}.weight holds ${q.packed.length} bytes, but its quant_state shape [${q.state.shape.join(', ')}] needs ${Math.ceil(n / 2)}`);
  return q;
}

/**
 * Runs `fn` (building a model) with every Linear and groups = 1 Conv2d quantised as soon as it is
 * constructed, its float weight freed at once: a model of random weights is never whole in float
 * (peak: the 4-bit model plus one float layer). For a model built to load a float checkpoint, load
 * first and use quantizeModule.
 */
export function withQuantizedLayers<T>(opts: QuantizeOptions, fn: () => T): T {
  return withLayerHook((layer) => {
    const q = quantizeLayer(layer, opts);
    if (q) {
      layer.weight.dispose();
      layer.bias?.dispose();
    }
    return q;
  }, fn);
}
