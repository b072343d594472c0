// AdaLoRA on a Linear or Conv2d (PEFT's SVDLinear / SVDConv2d): ΔW = B · (A ⊙ E) · scaling /
// (ranknum + 1e-5), with the SVD-form triplets lora_A (r, in), lora_E (r, 1), lora_B (out, r).
// Module names follow huggingface/peft (`lora_A.<adapter>`, `lora_E.<adapter>`, `lora_B.<adapter>`,
// saved without the adapter name and, being ParameterDict entries in PEFT, without `.weight`).
// ranknum (PEFT: init_r, kept when the matrices are truncated) is a number here, never saved.
import { Conv2d, Dropout, Identity, type Linear, ModuleDict, ParameterModule } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { tidy } from '../../tensor/memory.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { randn, tensor, zeros } from '../../ops/creation.js';
import { add, affine, mul, sub } from '../../ops/elementwise.js';
import { assign, reshape } from '../../ops/layout.js';
import { conv2d } from '../../ops/conv.js';
import { linear, matmul } from '../../ops/matmul.js';
import { AdapterLayer } from '../layer.js';

export interface AdaLoraLayerOptions {
  /** Triplets this layer holds (init_r, or the kept count of a truncated adapter). */
  r: number;
  /** PEFT's ranknum: init_r, the divisor of the scaling whatever the kept rank. */
  ranknum: number;
  alpha: number;
  dropout: number;
  generator?: Generator;
}

interface AdapterState {
  /** PEFT: lora_alpha if lora_alpha > 0 else r. */
  scaling: number;
  ranknum: number;
}

const DICTS = ['lora_A', 'lora_E', 'lora_B'] as const;

export class AdaLoraLayer extends AdapterLayer {
  readonly lora_A = new ModuleDict<ParameterModule>();
  readonly lora_E = new ModuleDict<ParameterModule>();
  readonly lora_B = new ModuleDict<ParameterModule>();
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
    if (!a) throw new Error(`AdaLoRA layer has no adapter '${name}'; it has ${this.adapterNames().join(', ') || 'none'}`);
    return a;
  }

  /** The triplet count adapter `name` holds now. */
  rank(name: string): number {
    return this.tensors(name).E.shape[0]!;
  }

  ranknum(name: string): number {
    return this.adapter(name).ranknum;
  }

  /** PEFT saves ParameterDict entries as `lora_A`, not `lora_A.weight`. */
  override peftKey(localKey: string, name: string): string | null {
    for (const d of DICTS) if (localKey === `${d}.${name}.weight`) return d;
    return null;
  }

  tensors(name: string): { A: Tensor; E: Tensor; B: Tensor } {
    return { A: this.lora_A.get(name)!.weight, E: this.lora_E.get(name)!.weight, B: this.lora_B.get(name)!.weight };
  }

  /** Columns of A: in features, or (in/groups)·kh·kw for a convolution so ΔW has the base weight's (grouped) layout. */
  private inDim(): number {
    const b = this.base_layer;
    return b instanceof Conv2d ? (b.inChannels / b.groups) * b.kernelSize[0] * b.kernelSize[1] : b.inFeatures;
  }

  private outDim(): number {
    const b = this.base_layer;
    return b instanceof Conv2d ? b.outChannels : b.outFeatures;
  }

  /** Adds adapter `name`: E = 0 (so ΔW = 0 at init), A, B ~ N(0, 0.02), as PEFT's reset_lora_parameters. */
  addAdapter(name: string, o: AdaLoraLayerOptions): void {
    if (this.adapters.has(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    if (!Number.isInteger(o.r) || o.r < 0) throw new Error(`AdaLoRA rank must be a non-negative integer; got ${o.r}`);
    const gen = o.generator ?? defaultGenerator;
    const like = this.base_layer.weight;
    const opts = { dtype: like.dtype, backend: like.backend };
    this.setTriplets(name, {
      A: randn([o.r, this.inDim()], { ...opts, std: 0.02, generator: gen }),
      E: zeros([o.r, 1], opts),
      B: randn([this.outDim(), o.r], { ...opts, std: 0.02, generator: gen }),
    });
    this.lora_dropout.set(name, o.dropout > 0 ? new Dropout(o.dropout) : new Identity());
    this.adapters.set(name, { scaling: o.alpha > 0 ? o.alpha : o.r, ranknum: o.ranknum });
    this.activeAdapter ??= name;
  }

  private setTriplets(name: string, t: { A: Tensor; E: Tensor; B: Tensor }): void {
    for (const d of DICTS) {
      const old = this[d].get(name);
      const m = new ParameterModule(t[d.slice(-1) as 'A' | 'E' | 'B']);
      if (old) {
        m.weight.requiresGrad = old.weight.requiresGrad;
        this[d].delete(name);
        old.dispose();
      }
      this[d].set(name, m);
    }
  }

  /**
   * Keeps only the triplets flagged in `keep` (one flag per current rank): PEFT's truncation on
   * save, done in memory once training is over so the trained model and the saved file compute
   * the same thing. ranknum is unchanged, so ΔW is unchanged too (the dropped triplets have E = 0).
   */
  truncate(name: string, keep: readonly boolean[]): void {
    const { A, E, B } = this.tensors(name);
    const r = E.shape[0]!;
    if (keep.length !== r) throw new Error(`AdaLoRA truncate: ${keep.length} flags for rank ${r}`);
    const idx = keep.flatMap((k, i) => (k ? [i] : []));
    if (idx.length === r) return;
    const rows = (t: Tensor, cols: number) => {
      const src = t.toArray();
      const out = new Float32Array(idx.length * cols);
      idx.forEach((i, j) => out.set(src.subarray(i * cols, (i + 1) * cols), j * cols));
      return tensor(out, [idx.length, cols], { backend: t.backend });
    };
    const columns = (t: Tensor) => {
      const [out, rr] = t.shape as [number, number];
      const src = t.toArray();
      const dst = new Float32Array(out * idx.length);
      for (let o = 0; o < out; o++) idx.forEach((i, j) => (dst[o * idx.length + j] = src[o * rr + i]!));
      return tensor(dst, [out, idx.length], { backend: t.backend });
    };
    this.setTriplets(name, { A: rows(A, A.shape[1]!), E: rows(E, 1), B: columns(B) });
  }

  deleteAdapter(name: string): void {
    this.adapter(name);
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before deleting it`);
    for (const d of [this.lora_A, this.lora_E, this.lora_B, this.lora_dropout] as ModuleDict[]) {
      d.get(name)?.dispose();
      if (d.has(name)) d.delete(name);
    }
    this.adapters.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = this.adapterNames()[0] ?? null;
  }

  /** ΔW merges into every base layer, grouped convolutions included (A has the grouped layout). */
  canMerge(): boolean {
    return true;
  }

  /** ΔW = B · (A ⊙ E) · scaling / (ranknum + 1e-5) in the base weight's layout (Conv2d: (out, in/groups, kh, kw), as PEFT's SVDConv2d). */
  deltaWeight(name: string): Tensor {
    const { scaling, ranknum } = this.adapter(name);
    const { A, E, B } = this.tensors(name);
    const W = this.base_layer.weight;
    if (E.shape[0] === 0) return zeros(W.shape, { dtype: W.dtype, backend: W.backend });
    return reshape(affine(matmul(B, mul(A, E)), scaling / (ranknum + 1e-5)), W.shape);
  }

  forward(x: Tensor): Tensor {
    const result = this.base_layer.forward(x);
    const name = this.activeAdapter;
    if (this.bypassed() || name === null || this.rank(name) === 0) return result;
    const xd = this.lora_dropout.get(name)!.forward(x);
    const base = this.base_layer;
    const { scaling, ranknum } = this.adapter(name);
    const { A, E, B } = this.tensors(name);
    const s = scaling / (ranknum + 1e-5);
    if (base instanceof Conv2d) {
      // A grouped kernel's ΔW is grouped too: one convolution on it. Otherwise, as LoRA's Conv2d,
      // A ⊙ E as an r-channel convolution then B as a 1×1 (the same sum, without a full-size kernel
      // or its gradient).
      if (base.groups !== 1) return add(result, conv2d(xd, this.deltaWeight(name), null, base.convOptions));
      const [kh, kw] = base.kernelSize;
      const r = A.shape[0]!;
      const h = conv2d(xd, reshape(mul(A, E), [r, base.inChannels, kh, kw]), null, base.convOptions);
      return add(result, affine(conv2d(h, reshape(B, [B.shape[0]!, r, 1, 1])), s));
    }
    return add(result, affine(linear(linear(xd, mul(A, E)), B), s));
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
