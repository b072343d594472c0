// (IA)³ (Liu et al. 2022) on a Linear or Conv2d: a learned vector l scales the layer's output,
// y = l ⊙ base(x), or, for a feed-forward module, its input, y = base(l ⊙ x). Layout as
// huggingface/peft's tuners/ia3/layer.py: `ia3_l.<adapter>` of shape (out, 1) or (1, in) on a
// Linear, (1, C, 1, 1) on a Conv2d, saved as `<module>.ia3_l`.
import { Conv2d, ModuleDict, ParameterModule, type Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { keep, tidy } from '../../tensor/memory.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { div, mul } from '../../ops/elementwise.js';
import { assign, expand, reshape } from '../../ops/layout.js';
import { full, randn } from '../../ops/creation.js';
import { AdapterLayer } from '../layer.js';

export interface Ia3LayerOptions {
  feedforward: boolean;
  /** true: l = 1 (the identity); false: l ~ N(0, 1), as PEFT's init_ia3_weights=False. */
  init: boolean;
  generator?: Generator;
}

/** Below this magnitude an entry of l erases (or underflows) what it scales, so w·l / l would not give w back. */
const LOSSY = 1e-20;

/** What merging changed, to undo it: the base tensors themselves when l has an entry that loses information. */
interface MergeRecord {
  weight: Tensor | null;
  bias: Tensor | null;
}

export class Ia3Layer extends AdapterLayer {
  readonly ia3_l = new ModuleDict<ParameterModule>();
  readonly adapterDicts = ['ia3_l'] as const;
  private readonly feedforward = new Map<string, boolean>();
  private readonly records = new Map<string, MergeRecord>();

  constructor(base: Linear | Conv2d) {
    super(base);
    this.module('ia3_l', this.ia3_l);
  }

  adapterNames(): string[] {
    return [...this.feedforward.keys()];
  }

  /** Whether adapter `name` scales the input (a feed-forward module) rather than the output. */
  isFeedforward(name: string): boolean {
    const ff = this.feedforward.get(name);
    if (ff === undefined) throw new Error(`(IA)³ layer has no adapter '${name}'; it has ${this.adapterNames().join(', ') || 'none'}`);
    return ff;
  }

  /** PEFT keeps ia3_l in a ParameterDict, so its key has no `.weight`. */
  override peftKey(localKey: string, name: string): string | null {
    return localKey === `ia3_l.${name}.weight` ? 'ia3_l' : null;
  }

  vector(name: string): Tensor {
    this.isFeedforward(name);
    return this.ia3_l.get(name)!.weight;
  }

  addAdapter(name: string, o: Ia3LayerOptions): void {
    if (this.feedforward.has(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    const base = this.base_layer;
    const conv = base instanceof Conv2d;
    const features = o.feedforward ? (conv ? base.inChannels : (base as Linear).inFeatures) : (conv ? base.outChannels : (base as Linear).outFeatures);
    const shape = conv ? [1, features, 1, 1] : o.feedforward ? [1, features] : [features, 1];
    const value = o.init ? full(shape, 1) : randn(shape, { generator: o.generator ?? defaultGenerator });
    this.ia3_l.set(name, new ParameterModule(value));
    this.feedforward.set(name, o.feedforward);
    this.activeAdapter ??= name;
  }

  deleteAdapter(name: string): void {
    this.isFeedforward(name);
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before deleting it`);
    this.ia3_l.get(name)!.dispose();
    this.ia3_l.delete(name);
    this.feedforward.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = this.adapterNames()[0] ?? null;
  }

  canMerge(): boolean {
    return true;
  }

  forward(x: Tensor): Tensor {
    const name = this.activeAdapter;
    if (this.bypassed() || name === null) return this.base_layer.forward(x);
    const l = this.vector(name);
    if (this.isFeedforward(name)) return this.base_layer.forward(mul(x, l));
    // A Linear's output is (…, out): the (out, 1) vector applies flattened, as PEFT does.
    return mul(this.base_layer.forward(x), this.isConv ? l : reshape(l, [-1]));
  }

  /**
   * The factor that multiplies the base weight elementwise: rows (output scaling) or columns
   * (input scaling) of W. On a grouped Conv2d, weight column j of output channel o reads input
   * channel group(o)·(in/groups) + j, so the input vector is laid out per group.
   */
  private weightFactor(name: string): Tensor {
    const l = this.vector(name);
    const base = this.base_layer;
    if (!(base instanceof Conv2d)) return l;
    if (!this.isFeedforward(name)) return reshape(l, [-1, 1, 1, 1]);
    const g = base.groups;
    const perGroup = base.inChannels / g;
    const tiled = expand(reshape(l, [g, 1, perGroup]), [g, base.outChannels / g, perGroup]);
    return reshape(tiled, [base.outChannels, perGroup, 1, 1]);
  }

  /** W ← W ⊙ l (and b ← b ⊙ l for output scaling), as PEFT's merge. */
  merge(name: string | null = this.activeAdapter): void {
    if (name === null) return;
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is already merged`);
    const ff = this.isFeedforward(name);
    const W = this.base_layer.weight;
    const bias = this.base_layer.bias;
    noGrad(() => tidy(() => {
      const l = this.vector(name);
      const lossy = Array.from(l.toArray()).some((v) => Math.abs(v) < LOSSY);
      this.records.set(name, {
        weight: lossy ? keep(W.clone()) : null,
        bias: lossy && bias && !ff ? keep(bias.clone()) : null,
      });
      assign(W, mul(W, this.weightFactor(name)));
      if (bias && !ff) assign(bias, mul(bias, reshape(l, [-1])));
    }));
    this.mergedAdapters.push(name);
  }

  /**
   * Divides l back out (exact up to float rounding). PEFT divides by l + 1e-8, which is
   * inexact for every l and wrong where l = 0; where l has an entry that erased what it scaled,
   * graft restores the base tensors it kept at merge time instead.
   */
  unmerge(): void {
    while (this.mergedAdapters.length) {
      const name = this.mergedAdapters.pop()!;
      const record = this.records.get(name)!;
      this.records.delete(name);
      const W = this.base_layer.weight;
      const bias = this.base_layer.bias;
      const ff = this.isFeedforward(name);
      noGrad(() => tidy(() => {
        if (record.weight) {
          assign(W, record.weight);
          if (record.bias && bias) assign(bias, record.bias);
        } else {
          assign(W, div(W, this.weightFactor(name)));
          if (bias && !ff) assign(bias, div(bias, reshape(this.vector(name), [-1])));
        }
      }));
      record.weight?.dispose();
      record.bias?.dispose();
    }
  }

  override dispose(): void {
    for (const r of this.records.values()) {
      r.weight?.dispose();
      r.bias?.dispose();
    }
    this.records.clear();
    super.dispose();
  }
}
