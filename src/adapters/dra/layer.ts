// DRA on a Linear or Conv2d: y = base(x) + Σ_k s_k · B_k A_k x  +  s · B A x, where (B_k, A_k, s_k)
// are frozen history segments (earlier allocations folded in at a re-allocation, exact and still
// low-rank; the base weight is never touched) and (B, A, s = alpha / r) the pair being trained.
// A is (r, in) — (r, in/groups·kh·kw) on a convolution, so ΔW has the base weight's layout —
// and B is (out, r). On an ungrouped convolution the path runs as a conv to r channels and a
// 1×1 conv; on a grouped one through ΔW. Every segment is computed as the current pair was, so a
// fold changes no output bit: the segment computes what the pair did, and the fresh pair (B = 0)
// adds exact zeros. Saved keys: lora_A.weight, lora_B.weight, lora_history.<k>.A.weight, .B.weight.
import { Module } from '../../nn/module.js';
import { Conv2d, Dropout, Identity, type Linear, ModuleDict, ParameterModule } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { keep, tidy } from '../../tensor/memory.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { randn, zeros } from '../../ops/creation.js';
import { add, affine, sub } from '../../ops/elementwise.js';
import { assign, reshape } from '../../ops/layout.js';
import { conv2d } from '../../ops/conv.js';
import { linear, matmul } from '../../ops/matmul.js';
import { AdapterLayer } from '../layer.js';

/** A frozen factor: a buffer (saved and loaded, never trained). */
export class FrozenFactor extends Module {
  weight: Tensor;
  constructor(value: Tensor) {
    super();
    this.weight = this.buffer('weight', value);
  }
  forward(): Tensor {
    return this.weight;
  }
}

/** One frozen history segment: an earlier (B, A) with its scaling. */
export class HistorySegment extends Module {
  A: FrozenFactor;
  B: FrozenFactor;
  constructor(A: Tensor, B: Tensor, readonly scaling: number) {
    super();
    this.A = this.module('A', new FrozenFactor(A));
    this.B = this.module('B', new FrozenFactor(B));
  }
  get rank(): number {
    return this.A.weight.shape[0]!;
  }
  forward(): Tensor {
    throw new Error('a DRA history segment is applied by its layer');
  }
}

/** The history of one adapter: segments '0', '1', … oldest first. */
export class DraHistory extends Module {
  segments(): HistorySegment[] {
    return this.children().map(([, m]) => m as HistorySegment);
  }
  push(s: HistorySegment): void {
    this.module(String(this.children().length), s);
  }
  forward(): Tensor {
    throw new Error('a DRA history is applied by its layer');
  }
}

interface AdapterState {
  alpha: number;
}

export interface DraLayerOptions {
  r: number;
  alpha: number;
  dropout: number;
  /** Ranks of the history segments to build (a saved adapter's), oldest first; their values are loaded after. */
  history?: readonly number[];
  generator?: Generator;
}

const DICTS = ['lora_A', 'lora_B', 'lora_history'] as const;

export class DraLayer extends AdapterLayer {
  readonly lora_A = new ModuleDict<ParameterModule>();
  readonly lora_B = new ModuleDict<ParameterModule>();
  readonly lora_history = new ModuleDict<DraHistory>();
  readonly lora_dropout = new ModuleDict<Dropout | Identity>();
  readonly adapterDicts = DICTS;
  private readonly adapters = new Map<string, AdapterState>();

  constructor(base: Linear | Conv2d) {
    super(base);
    for (const d of DICTS) this.module(d, this[d]);
    this.module('lora_dropout', this.lora_dropout);
  }

  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  private adapter(name: string): AdapterState {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`DRA layer has no adapter '${name}'; it has ${this.adapterNames().join(', ') || 'none'}`);
    return a;
  }

  /** Columns of A: in features, or (in/groups)·kh·kw for a convolution. */
  inDim(): number {
    const b = this.base_layer;
    return b instanceof Conv2d ? (b.inChannels / b.groups) * b.kernelSize[0] * b.kernelSize[1] : b.inFeatures;
  }

  outDim(): number {
    const b = this.base_layer;
    return b instanceof Conv2d ? b.outChannels : b.outFeatures;
  }

  /** Parameters of the base weight (the layer's size in the parameter-share score). */
  baseParams(): number {
    return this.base_layer.weight.size;
  }

  rank(name: string): number {
    return this.lora_A.get(name)!.weight.shape[0]!;
  }

  scaling(name: string): number {
    return this.adapter(name).alpha / this.rank(name);
  }

  historyRanks(name: string): number[] {
    return this.lora_history.get(name)!.segments().map((s) => s.rank);
  }

  /** The trained pair's tensors. */
  pair(name: string): { A: Tensor; B: Tensor } {
    return { A: this.lora_A.get(name)!.weight, B: this.lora_B.get(name)!.weight };
  }

  addDra(name: string, o: DraLayerOptions): void {
    if (this.adapters.has(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    this.adapters.set(name, { alpha: o.alpha });
    this.lora_dropout.set(name, o.dropout > 0 ? new Dropout(o.dropout) : new Identity());
    const history = new DraHistory();
    const like = this.base_layer.weight;
    for (const r of o.history ?? []) {
      history.push(new HistorySegment(zeros([r, this.inDim()], { dtype: like.dtype, backend: like.backend }), zeros([this.outDim(), r], { dtype: like.dtype, backend: like.backend }), o.alpha / r));
    }
    this.lora_history.set(name, history);
    this.resize(name, o.r, o.generator);
    this.activeAdapter ??= name;
  }

  /**
   * A fresh trained pair of rank r (A gaussian with std 1/√(columns of A), B = 0, so it adds
   * nothing yet), replacing the current one, whose values are dropped.
   */
  resize(name: string, r: number, generator: Generator = defaultGenerator): void {
    this.adapter(name);
    if (!Number.isInteger(r) || r < 1) throw new Error(`DRA rank must be a positive integer; got ${r}`);
    const like = this.base_layer.weight;
    const opts = { dtype: like.dtype, backend: like.backend };
    const A = new ParameterModule(randn([r, this.inDim()], { ...opts, std: 1 / Math.sqrt(this.inDim()), generator }));
    const B = new ParameterModule(zeros([this.outDim(), r], opts));
    for (const [dict, m] of [[this.lora_A, A], [this.lora_B, B]] as const) {
      const old = dict.get(name);
      if (old) {
        m.weight.requiresGrad = old.weight.requiresGrad;
        dict.delete(name);
        old.dispose();
      }
      dict.set(name, m);
    }
  }

  /** Moves the trained pair (values and scaling) into the frozen history as its newest segment. */
  fold(name: string): void {
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before re-allocating`);
    const { A, B } = this.pair(name);
    const s = this.scaling(name);
    const copy = (t: Tensor) => noGrad(() => keep(t.clone()));
    this.lora_history.get(name)!.push(new HistorySegment(copy(A), copy(B), s));
  }

  /** A re-allocation: the pair folded into the history, then a fresh pair of rank r. */
  reallocate(name: string, r: number, generator: Generator = defaultGenerator): void {
    this.fold(name);
    this.resize(name, r, generator);
  }

  deleteAdapter(name: string): void {
    this.adapter(name);
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before deleting it`);
    for (const d of [this.lora_A, this.lora_B, this.lora_history, this.lora_dropout] as ModuleDict[]) {
      d.get(name)?.dispose();
      if (d.has(name)) d.delete(name);
    }
    this.adapters.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = this.adapterNames()[0] ?? null;
  }

  canMerge(): boolean {
    return true;
  }

  private segmentDelta(A: Tensor, B: Tensor, s: number): Tensor {
    return reshape(affine(matmul(B, A), s), this.base_layer.weight.shape);
  }

  /** ΔW = Σ_k s_k B_k A_k + s B A in the base weight's layout. */
  deltaWeight(name: string): Tensor {
    let total: Tensor | null = null;
    for (const seg of this.lora_history.get(name)!.segments()) {
      const d = this.segmentDelta(seg.A.weight, seg.B.weight, seg.scaling);
      total = total ? add(total, d) : d;
    }
    const { A, B } = this.pair(name);
    const d = this.segmentDelta(A, B, this.scaling(name));
    return total ? add(total, d) : d;
  }

  /** One low-rank path s · B A x, the same computation for history segments and the trained pair. */
  private path(x: Tensor, A: Tensor, B: Tensor, s: number): Tensor {
    const base = this.base_layer;
    if (!(base instanceof Conv2d)) return affine(linear(linear(x, A), B), s);
    if (base.groups !== 1) return conv2d(x, this.segmentDelta(A, B, s), null, base.convOptions);
    const r = A.shape[0]!;
    const [kh, kw] = base.kernelSize;
    const h = conv2d(x, reshape(A, [r, base.inChannels, kh, kw]), null, base.convOptions);
    return affine(conv2d(h, reshape(B, [base.outChannels, r, 1, 1])), s);
  }

  forward(x: Tensor): Tensor {
    let result = this.base_layer.forward(x);
    const name = this.activeAdapter;
    if (this.bypassed() || name === null) return result;
    const xd = this.lora_dropout.get(name)!.forward(x);
    for (const seg of this.lora_history.get(name)!.segments()) result = add(result, this.path(xd, seg.A.weight, seg.B.weight, seg.scaling));
    const { A, B } = this.pair(name);
    return add(result, this.path(xd, A, B, this.scaling(name)));
  }

  merge(name: string | null = this.activeAdapter): void {
    if (name === null) return;
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is already merged`);
    const W = this.base_layer.weight;
    noGrad(() => tidy(() => assign(W, add(W, this.deltaWeight(name)))));
    this.mergedAdapters.push(name);
  }

  unmerge(): void {
    while (this.mergedAdapters.length) {
      const name = this.mergedAdapters.pop()!;
      const W = this.base_layer.weight;
      noGrad(() => tidy(() => assign(W, sub(W, this.deltaWeight(name)))));
    }
  }
}
