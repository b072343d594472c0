// DyLoRA on a Linear or Conv2d (Valipour et al. 2023): a LoRA layer of rank r_max that computes
// with the prefix A[:b], B[:, :b] and scale alpha / b for a rank b chosen from outside: drawn per
// step while training, the chosen (or any asked) rank otherwise. In 'frozen' mode the rows below
// b are used but detached, so only the b-th row of A and column of B get gradient (the official
// code's `dynamic` module). The matrices are PEFT's LoRA ones (lora_A, lora_B), so a prefix is a
// plain LoRA adapter of rank b.
import { Conv2d, type Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import { add, affine, mul } from '../../ops/elementwise.js';
import { tensor } from '../../ops/creation.js';
import { concat, reshape, slice } from '../../ops/layout.js';
import { conv2d } from '../../ops/conv.js';
import { linear, matmul } from '../../ops/matmul.js';
import { LoraLayer } from '../lora/layer.js';
import type { DyLoraMode } from './config.js';

export interface DyLoraLayerOptions {
  rMax: number;
  alpha: number;
  dropout: number;
  mode: DyLoraMode;
  /** The rank used outside training. */
  evalRank: number;
  generator?: Generator;
}

interface RankState {
  alpha: number;
  mode: DyLoraMode;
  trainRank: number;
  evalRank: number;
}

export class DyLoraLayer extends LoraLayer {
  private readonly ranks = new Map<string, RankState>();

  constructor(base: Linear | Conv2d) {
    if (base instanceof Conv2d && base.groups !== 1) {
      throw new Error(`DyLoRA on a grouped Conv2d (groups=${base.groups}) is not supported: a rank prefix would cut across the groups of lora_B. Exclude this layer or use LoRA on it.`);
    }
    super(base);
  }

  addDyLora(name: string, o: DyLoraLayerOptions): void {
    this.addAdapter(name, { r: o.rMax, alpha: o.alpha, dropout: o.dropout, useRslora: false, init: true, variant: null, generator: o.generator });
    this.ranks.set(name, { alpha: o.alpha, mode: o.mode, trainRank: o.rMax, evalRank: o.evalRank });
  }

  private state(name: string): RankState {
    const s = this.ranks.get(name);
    if (!s) throw new Error(`DyLoRA layer has no adapter '${name}'`);
    return s;
  }

  /** Sets the rank used in training (per step) or outside it. */
  setRank(name: string, b: number, phase: 'train' | 'eval'): void {
    const s = this.state(name);
    if (!(b >= 1 && b <= this.rank(name))) throw new Error(`DyLoRA rank ${b} is outside 1…${this.rank(name)}`);
    if (phase === 'eval' && this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged at rank ${s.evalRank}; unmerge before changing its rank`);
    if (phase === 'train') s.trainRank = b;
    else s.evalRank = b;
  }

  currentRank(name: string): number {
    const s = this.state(name);
    return this.training ? s.trainRank : s.evalRank;
  }

  override deleteAdapter(name: string): void {
    super.deleteAdapter(name);
    this.ranks.delete(name);
  }

  /** A[:b] and B[:, :b] (rank axis 0 of A, 1 of B), the lower ranks detached in frozen training. */
  private prefix(name: string, b: number): { A: Tensor; B: Tensor } {
    const A = this.lora_A.get(name)!.weight;
    const B = this.lora_B.get(name)!.weight;
    const frozen = this.training && this.state(name).mode === 'frozen' && b > 1;
    const cut = (t: Tensor, axis: number) => (frozen
      ? concat([slice(t, axis, 0, b - 1).detach(), slice(t, axis, b - 1, b)], axis)
      : b === t.shape[axis] ? t : slice(t, axis, 0, b));
    return { A: cut(A, 0), B: cut(B, 1) };
  }

  /** ΔW at the current rank b: (alpha / b) · B[:, :b] A[:b] in the base weight's layout. */
  override deltaWeight(name: string): Tensor {
    const b = this.currentRank(name);
    const { A, B } = this.prefix(name, b);
    const scale = this.state(name).alpha / b;
    const W = this.base_layer.weight;
    return reshape(affine(matmul(reshape(B, [B.shape[0]!, b]), reshape(A, [b, -1])), scale), W.shape);
  }

  override forward(x: Tensor): Tensor {
    const result = this.base_layer.forward(x);
    const name = this.activeAdapter;
    if (this.bypassed() || name === null) return result;
    const b = this.currentRank(name);
    const xd = this.lora_dropout.get(name)!.forward(x);
    const base = this.base_layer;
    const scale = this.state(name).alpha / b;
    const r = this.lora_A.get(name)!.weight.shape[0]!;
    if (base instanceof Conv2d && b < r && !(this.training && this.state(name).mode === 'frozen')) {
      // A convolution at every rank b: all r channels, those from b on multiplied by zero (the
      // same sum and gradients as the prefix A[:b], B[:, :b], which slicing would copy per step),
      // so the kernels keep one shape whatever rank is drawn.
      const A = this.lora_A.get(name)!.weight;
      const mask = (A.dtype === 'float64' ? new Float64Array(r) : new Float32Array(r)).fill(scale, 0, b);
      const h = mul(conv2d(xd, A, null, base.convOptions), tensor(mask, [r, 1, 1], { dtype: A.dtype, backend: A.backend }));
      return add(result, conv2d(h, this.lora_B.get(name)!.weight));
    }
    const { A, B } = this.prefix(name, b);
    const h = base instanceof Conv2d ? conv2d(conv2d(xd, A, null, base.convOptions), B) : linear(linear(xd, A), B);
    return add(result, affine(h, scale));
  }
}
