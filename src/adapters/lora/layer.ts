// LoRA on a Linear or Conv2d: y = base(x) + s · B(A(dropout(x))), several named adapters with
// one active, merge/unmerge into the base weight. Module names follow huggingface/peft
// (`base_layer`, `lora_A.<adapter>`, `lora_B.<adapter>`, `lora_magnitude_vector.<adapter>`).
import { Conv2d, Dropout, Identity, Linear, ModuleDict } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { tidy } from '../../tensor/memory.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { add, affine, mul, sub } from '../../ops/elementwise.js';
import { matmul, linear } from '../../ops/matmul.js';
import { conv2d } from '../../ops/conv.js';
import { reshape } from '../../ops/layout.js';
import { randn, tensor, zeros } from '../../ops/creation.js';
import { assign } from '../../ops/layout.js';
import { AdapterLayer } from '../layer.js';
import type { LoraInit } from './config.js';
import type { LoraVariant } from './variant.js';
import type { DoraMagnitude } from './dora.js';
import { svdTopR } from './svd.js';

export type { LoraInit } from './config.js';

export interface LoraLayerOptions {
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  init: LoraInit;
  variant: LoraVariant | null;
  generator?: Generator;
}

interface AdapterState {
  scaling: number;
  r: number;
  variant: LoraVariant | null;
}

export class LoraLayer extends AdapterLayer {
  readonly lora_A = new ModuleDict<Linear | Conv2d>();
  readonly lora_B = new ModuleDict<Linear | Conv2d>();
  readonly lora_dropout = new ModuleDict<Dropout | Identity>();
  /** DoRA's magnitude per adapter (holding its own merge record). */
  readonly lora_magnitude_vector = new ModuleDict<DoraMagnitude>();
  readonly adapterDicts = ['lora_A', 'lora_B', 'lora_magnitude_vector'] as const;
  private readonly adapters = new Map<string, AdapterState>();

  constructor(base: Linear | Conv2d) {
    super(base);
    this.module('lora_A', this.lora_A);
    this.module('lora_B', this.lora_B);
    this.module('lora_dropout', this.lora_dropout);
    this.module('lora_magnitude_vector', this.lora_magnitude_vector);
  }

  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  scaling(name: string): number {
    return this.adapter(name).scaling;
  }

  rank(name: string): number {
    return this.adapter(name).r;
  }

  private adapter(name: string): AdapterState {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`LoRA layer has no adapter '${name}'; it has ${this.adapterNames().join(', ') || 'none'}`);
    return a;
  }

  /** PEFT stores DoRA's magnitude without the `.weight` suffix (lora/model.py keeps that for old files). */
  override peftKey(localKey: string, name: string): string | null {
    if (localKey === `lora_magnitude_vector.${name}.weight`) return 'lora_magnitude_vector';
    return super.peftKey(localKey, name);
  }

  /** Adds adapter `name` with rank r: A kaiming-uniform (or gaussian / PiSSA), B = 0. */
  addAdapter(name: string, o: LoraLayerOptions): void {
    if (this.adapters.has(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    if (!Number.isInteger(o.r) || o.r <= 0) throw new Error(`LoRA rank must be a positive integer; got ${o.r}`);
    const gen = o.generator ?? defaultGenerator;
    const base = this.base_layer;
    let A: Linear | Conv2d;
    let B: Linear | Conv2d;
    if (base instanceof Conv2d) {
      if (o.r % base.groups !== 0) {
        throw new Error(`LoRA on a grouped Conv2d needs r divisible by groups: r=${o.r}, groups=${base.groups}. Choose r as a multiple of ${base.groups}.`);
      }
      if (o.variant && base.groups !== 1) {
        throw new Error(`${o.variant.name} on a grouped Conv2d (groups=${base.groups}) is not supported: its weight norm needs ΔW in the grouped layout. Use plain LoRA on this layer or exclude it.`);
      }
      A = new Conv2d(base.inChannels, o.r, base.kernelSize, { stride: base.stride, padding: base.padding, dilation: base.dilation, bias: false, generator: gen });
      B = new Conv2d(o.r, base.outChannels, 1, { groups: base.groups, bias: false, generator: gen });
    } else {
      A = new Linear(base.inFeatures, o.r, { bias: false, generator: gen });
      B = new Linear(o.r, base.outFeatures, { bias: false, generator: gen });
    }
    noGrad(() => {
      assign(B.weight, zeros(B.weight.shape));
      if (o.init === 'gaussian') assign(A.weight, randn(A.weight.shape, { std: 1 / o.r, generator: gen }));
    });
    const scaling = o.useRslora ? o.alpha / Math.sqrt(o.r) : o.alpha / o.r;
    this.lora_A.set(name, A);
    this.lora_B.set(name, B);
    this.lora_dropout.set(name, o.dropout > 0 ? new Dropout(o.dropout) : new Identity());
    this.adapters.set(name, { scaling, r: o.r, variant: o.variant });
    if (o.init === 'pissa') this.pissaInit(name);
    o.variant?.init(this, name);
    this.activeAdapter ??= name;
  }

  /** PiSSA: the top-r singular triplets of W move into B and A; W keeps the residual. */
  private pissaInit(name: string): void {
    if (this.isConv) throw new Error('PiSSA initialisation is for Linear layers (as in PEFT)');
    const { scaling } = this.adapter(name);
    const A = this.lora_A.get(name)!.weight;
    const B = this.lora_B.get(name)!.weight;
    const W = this.base_layer.weight;
    noGrad(() => tidy(() => {
      const { u, s, vt } = svdTopR(W, A.shape[0]!);
      // A = diag(sqrt(S/scaling)) Vᵀ_r, B = U_r diag(sqrt(S/scaling)), W ← W − scaling·B A.
      const root = s.map((x) => Math.sqrt(x / scaling));
      assign(A, mul(vt, reshape(fromArray(root, W), [-1, 1])));
      assign(B, mul(u, reshape(fromArray(root, W), [1, -1])));
      assign(W, sub(W, affine(matmul(B, A), scaling)));
    }));
  }

  deleteAdapter(name: string): void {
    this.adapter(name);
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before deleting it`);
    for (const d of [this.lora_A, this.lora_B, this.lora_dropout, this.lora_magnitude_vector] as ModuleDict[]) {
      d.get(name)?.dispose();
      if (d.has(name)) d.delete(name);
    }
    this.adapters.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = this.adapterNames()[0] ?? null;
  }

  /** Whether the adapters can be merged into the base weight (not LoRA on a grouped convolution). */
  canMerge(): boolean {
    return !(this.base_layer instanceof Conv2d && this.base_layer.groups !== 1);
  }

  /** ΔW = s · B A in the base weight's layout (Linear: (out, in); Conv2d: (out, in, kh, kw)). */
  deltaWeight(name: string): Tensor {
    const { scaling } = this.adapter(name);
    const A = this.lora_A.get(name)!.weight;
    const B = this.lora_B.get(name)!.weight;
    if (!this.isConv) return affine(matmul(B, A), scaling);
    const base = this.base_layer as Conv2d;
    if (base.groups !== 1) {
      throw new Error(`LoRA on a grouped Conv2d (groups=${base.groups}) mixes channels across groups, so it cannot be merged into the grouped base weight; keep it unmerged`);
    }
    const [r, cin, kh, kw] = A.shape as [number, number, number, number];
    // Σ_r B[o, r] · A[r, i, kh, kw]: a (out, r) × (r, in·kh·kw) product.
    const flat = matmul(reshape(B, [B.shape[0]!, r]), reshape(A, [r, cin * kh * kw]));
    return affine(reshape(flat, [B.shape[0]!, cin, kh, kw]), scaling);
  }

  /** The LoRA path alone for adapter `name`: s · B(A(x)). */
  loraOutput(name: string, x: Tensor): Tensor {
    const A = this.lora_A.get(name)!;
    const B = this.lora_B.get(name)!;
    return affine(B.forward(A.forward(x)), this.adapter(name).scaling);
  }

  /** base(x) without its bias, the term DoRA rescales. */
  baseWithoutBias(x: Tensor): Tensor {
    const b = this.base_layer;
    return b instanceof Conv2d ? conv2d(x, b.weight, null, b.convOptions) : linear(x, b.weight);
  }

  forward(x: Tensor): Tensor {
    const result = this.base_layer.forward(x);
    const name = this.activeAdapter;
    if (this.bypassed() || name === null) return result;
    const state = this.adapter(name);
    const xd = this.lora_dropout.get(name)!.forward(x);
    if (state.variant) return state.variant.forward(this, name, x, xd, result);
    return add(result, this.loraOutput(name, xd));
  }

  /** Adds the active (or named) adapter's ΔW into the base weight; forward then skips the LoRA path. */
  merge(name: string | null = this.activeAdapter): void {
    if (name === null) return;
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is already merged`);
    const state = this.adapter(name);
    const W = this.base_layer.weight;
    noGrad(() => tidy(() => {
      if (state.variant) state.variant.merge(this, name);
      else assign(W, add(W, this.deltaWeight(name)));
    }));
    this.mergedAdapters.push(name);
  }

  /** Removes merged adapters from the base weight, last merged first. */
  unmerge(): void {
    while (this.mergedAdapters.length) {
      const name = this.mergedAdapters.pop()!;
      const state = this.adapter(name);
      const W = this.base_layer.weight;
      noGrad(() => tidy(() => {
        if (state.variant) state.variant.unmerge(this, name);
        else assign(W, sub(W, this.deltaWeight(name)));
      }));
    }
  }
}

function fromArray(values: number[], like: Tensor): Tensor {
  return tensor(Float32Array.from(values), [values.length], { dtype: like.dtype, backend: like.backend });
}
