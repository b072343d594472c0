// The layer LoHa and LoKr share (PEFT's lycoris_utils.LycorisLayer): per-adapter factors in
// ModuleDicts named like PEFT's ParameterDicts (on disk `<dict>`, no `.weight`), ΔW rebuilt from
// them on every forward pass, rank and module dropout in training, merge and unmerge through ΔW.
import { Conv2d, Linear, ModuleDict, ParameterModule } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { isGradEnabled, noGrad } from '../../tensor/autograd.js';
import { tidy } from '../../tensor/memory.js';
import { defaultGenerator } from '../../tensor/random.js';
import { add, mul, sub } from '../../ops/elementwise.js';
import { linear } from '../../ops/matmul.js';
import { conv2d } from '../../ops/conv.js';
import { assign } from '../../ops/layout.js';
import { tensor } from '../../ops/creation.js';
import { AdapterLayer } from '../layer.js';

/** Per-adapter hyper-parameters (PEFT's LycorisLayer.other_param_names). */
export interface LycorisAdapterOptions {
  r: number;
  alpha: number;
  rankDropout: number;
  moduleDropout: number;
  /** Whether rank dropout rescales the kept rows by 1 / (kept share): always in LoHa, LoKr's rank_dropout_scale. */
  rankDropoutScale: boolean;
}

interface AdapterState extends LycorisAdapterOptions {
  scaling: number;
}

export abstract class LycorisLayer extends AdapterLayer {
  private readonly states = new Map<string, AdapterState>();

  /** `dicts`: the ParameterDict names of the method (PEFT's adapter_layer_names), registered in that order. */
  constructor(base: Linear | Conv2d, dicts: readonly string[]) {
    super(base);
    for (const d of dicts) this.module(d, new ModuleDict<ParameterModule>());
  }

  /** The method's display name in errors (LoHa, LoKr). */
  protected abstract readonly methodName: string;

  /** ΔW of adapter `name` in the base weight's layout, scaled by alpha / r, without dropout. */
  abstract deltaWeight(name: string): Tensor;

  /**
   * The adapter's own term (x ΔWᵀ for a Linear, the convolution of x with ΔW for a Conv2d) in
   * training, computed from the factors without forming ΔW (so without a full-size weight
   * gradient either), or null where ΔW folded into the base weight is cheaper. Called only while
   * gradients are recorded; the default is null.
   */
  protected factorDelta(_name: string, _x: Tensor): Tensor | null {
    return null;
  }

  adapterNames(): string[] {
    return [...this.states.keys()];
  }

  scaling(name: string): number {
    return this.state(name).scaling;
  }

  rank(name: string): number {
    return this.state(name).r;
  }

  protected state(name: string): AdapterState {
    const s = this.states.get(name);
    if (!s) throw new Error(`${this.methodName} layer has no adapter '${name}'; it has ${this.adapterNames().join(', ') || 'none'}`);
    return s;
  }

  private dict(d: string): ModuleDict<ParameterModule> {
    return this.child(d) as ModuleDict<ParameterModule>;
  }

  /** Whether adapter `name` has a tensor in ParameterDict `d` (which factors exist depends on the layer's shape). */
  protected hasFactor(d: string, name: string): boolean {
    return this.dict(d).has(name);
  }

  /** Adapter `name`'s tensor in ParameterDict `d`. */
  factor(d: string, name: string): Tensor {
    const p = this.dict(d).get(name);
    if (!p) throw new Error(`${this.methodName} adapter '${name}' has no ${d} on this layer`);
    return p.weight;
  }

  protected setFactor(d: string, name: string, value: Tensor): void {
    this.dict(d).set(name, new ParameterModule(value));
  }

  /** Checks the options and records adapter `name`; the subclass then creates its factors. */
  protected beginAdapter(name: string, o: LycorisAdapterOptions): void {
    if (this.states.has(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    if (!Number.isInteger(o.r) || o.r <= 0) throw new Error(`${this.methodName} rank r must be a positive integer; got ${o.r}`);
    this.states.set(name, { ...o, scaling: o.alpha / o.r });
    this.activeAdapter ??= name;
  }

  /** PEFT's ParameterDicts save as `<dict>` (the adapter name dropped, no `.weight`). */
  override peftKey(localKey: string, name: string): string | null {
    for (const d of this.adapterDicts) if (localKey === `${d}.${name}.weight`) return d;
    return null;
  }

  deleteAdapter(name: string): void {
    this.state(name);
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before deleting it`);
    for (const d of this.adapterDicts) {
      const dict = this.dict(d);
      dict.get(name)?.dispose();
      if (dict.has(name)) dict.delete(name);
    }
    this.states.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = this.adapterNames()[0] ?? null;
  }

  /** ΔW is built in the base weight's own layout (grouped kernels included), so every layer merges. */
  canMerge(): boolean {
    return true;
  }

  /**
   * Rank dropout (PEFT's get_delta_weight in training): each output row of ΔW is kept with
   * probability 1 − p, the kept rows divided by the kept share when `rankDropoutScale`.
   */
  private rankDropoutMask(s: AdapterState, like: Tensor, shape: (rows: number) => number[]): Tensor {
    const rows = this.base_layer.weight.shape[0]!;
    const mask = like.dtype === 'float64' ? new Float64Array(rows) : new Float32Array(rows);
    let kept = 0;
    for (let i = 0; i < rows; i++) {
      mask[i] = defaultGenerator.uniform() >= s.rankDropout ? 1 : 0;
      kept += mask[i]!;
    }
    // PEFT divides by the mean even when every row was dropped (0/0); graft keeps the zero ΔW then.
    if (s.rankDropoutScale && kept > 0) for (let i = 0; i < rows; i++) mask[i] = mask[i]! * (rows / kept);
    return tensor(mask, shape(rows), { dtype: like.dtype, backend: like.backend });
  }

  /**
   * base(x) with the adapter, PEFT's base(x) + base_op(x, ΔW): where the method computes
   * base_op(x, ΔW) from the factors (factorDelta), that sum; otherwise the base layer run on W + ΔW (one
   * convolution or matrix product instead of two; the frozen W gets no gradient). Rank dropout
   * masks output channels either way.
   */
  forward(x: Tensor): Tensor {
    const base = this.base_layer;
    const name = this.activeAdapter;
    if (this.bypassed() || name === null) return base.forward(x);
    const s = this.state(name);
    // Module dropout: in training PEFT skips the whole adapter with probability module_dropout.
    if (this.training && s.moduleDropout > 0 && defaultGenerator.uniform() < s.moduleDropout) return base.forward(x);
    const dropout = this.training && s.rankDropout > 0;
    const delta = isGradEnabled() ? this.factorDelta(name, x) : null;
    if (delta) {
      // Output channels: the last axis of a Linear's output, axis 1 of a convolution's.
      const channels = (rows: number) => (base instanceof Conv2d ? [rows, 1, 1] : [rows]);
      return add(base.forward(x), dropout ? mul(delta, this.rankDropoutMask(s, delta, channels)) : delta);
    }
    let dw = this.deltaWeight(name);
    if (dropout) dw = mul(dw, this.rankDropoutMask(s, dw, (rows) => [rows, ...dw.shape.slice(1).map(() => 1)]));
    const w = add(base.weight, dw);
    return base instanceof Conv2d ? conv2d(x, w, base.bias, base.convOptions) : linear(x, w, base.bias);
  }

  /** W ← W + ΔW of the active (or named) adapter; forward then computes the base layer alone. */
  merge(name: string | null = this.activeAdapter): void {
    if (name === null) return;
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is already merged`);
    this.state(name);
    const W = this.base_layer.weight;
    noGrad(() => tidy(() => assign(W, add(W, this.deltaWeight(name)))));
    this.mergedAdapters.push(name);
  }

  /** Removes merged adapters from the base weight, last merged first. */
  unmerge(): void {
    const W = this.base_layer.weight;
    while (this.mergedAdapters.length) {
      const name = this.mergedAdapters.pop()!;
      noGrad(() => tidy(() => assign(W, sub(W, this.deltaWeight(name)))));
    }
  }
}
