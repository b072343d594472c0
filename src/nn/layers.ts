// Layers with PyTorch's parameter names and default initialisation.
import { Module } from './module.js';
import type { Tensor } from '../tensor/tensor.js';
import { defaultGenerator, type Generator } from '../tensor/random.js';
import { ones, rand, zeros } from '../ops/creation.js';
import { linear } from '../ops/matmul.js';
import { adaptiveAvgPool2d, avgPool2d, conv2d, conv2dAct, maxPool2d, type Conv2dOptions, type ConvActivation, type Pool2dOptions, type WeightPacks } from '../ops/conv.js';
import { batchNorm, layerNorm, layerNorm2d } from '../ops/norm.js';
import { add, gelu, hardswish, mul, neg, relu, relu6, rsqrt, sigmoid, silu, sub, tanh } from '../ops/elementwise.js';
import { contiguous, expand, reshape, transpose } from '../ops/layout.js';
import { bytesPerElement } from '../tensor/dtype.js';
import { totalmem } from 'node:os';
import { isGradEnabled, isReplaying, noGrad, stageScope } from '../tensor/autograd.js';
import { keep, tidy } from '../tensor/memory.js';
import { dropout, dropPath } from '../ops/nn.js';
import { packingEnabled, thenFinally } from '../ops/util.js';
import { computePrecision, frozenWeightPacks } from '../ops/precision.js';
import type { FusedActivation } from '../backends/backend.js';

type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** U(−1/√fan_in, 1/√fan_in): PyTorch's default for Linear/Conv weights (kaiming_uniform, a = √5) and biases. */
function fanInUniform(shape: number[], fanIn: number, gen: Generator): Tensor {
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return rand(shape, { low: -bound, high: bound, generator: gen });
}

/**
 * A hook run at the end of every Linear / Conv2d constructor that builds its own weight: a module
 * it returns is constructed instead (quantising layer by layer while a model is built:
 * `withQuantizedLayers` in nn/quant4.ts). Null: none.
 */
let layerHook: ((layer: Linear | Conv2d) => Module | null) | null = null;

/** Runs `fn` with `hook` applied to each Linear and Conv2d constructed (not nested). */
export function withLayerHook<T>(hook: (layer: Linear | Conv2d) => Module | null, fn: () => T): T {
  if (layerHook) throw new Error('withLayerHook: a layer hook is already active');
  layerHook = hook;
  try {
    return fn();
  } finally {
    layerHook = null;
  }
}

/** The module a hook puts in place of `layer` (the hook is off while it runs), or null. */
function hooked(layer: Linear | Conv2d): Module | null {
  const hook = layerHook;
  if (!hook) return null;
  layerHook = null;
  try {
    return hook(layer);
  } finally {
    layerHook = hook;
  }
}

/**
 * Deferred weights (see withDeferredWeights): stand-ins that hold one zero broadcast to the
 * weight's shape (stride 0), so a model of any size is built without its weights in memory.
 */
let deferring = false;
const standIns = new WeakSet<Tensor>();

function standIn(shape: number[]): Tensor {
  const one = zeros(shape.map(() => 1));
  const t = noGrad(() => expand(one, shape));
  if (t !== one) one.dispose();
  standIns.add(t);
  return t;
}

/**
 * Runs `fn` (building a model) with the weight of every Linear and groups = 1 Conv2d left as a
 * stand-in, uninitialised and without memory, until `initWeight` gives it values (the loader of
 * models/deferred-load.ts: the checkpoint's tensor, or its 4-bit form). Nothing computes with a
 * stand-in; biases and every other parameter are made as usual.
 */
export function withDeferredWeights<T>(fn: () => T): T {
  if (deferring) throw new Error('withDeferredWeights: already deferring');
  deferring = true;
  try {
    return fn();
  } finally {
    deferring = false;
  }
}

/** Whether `t` is a deferred weight's stand-in. */
export function isDeferred(t: Tensor | null | undefined): boolean {
  return !!t && standIns.has(t);
}

/** Gives a layer's deferred weight its values: `w` (taken over), or PyTorch's default initialisation. */
export function initWeight(layer: Linear | Conv2d, w?: Tensor, gen: Generator = defaultGenerator): void {
  if (!isDeferred(layer.weight)) throw new Error('initWeight: the weight is not deferred');
  const shape = [...layer.weight.shape];
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  layer.weight.dispose();
  layer.weight = layer.setWeight(w ?? fanInUniform(shape, fanIn, gen));
}

export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  /** `weight: false` leaves the weight out (a subclass that stores it otherwise: Linear4bit). */
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias?: boolean; weight?: boolean; generator?: Generator } = {}) {
    super();
    const gen = opts.generator ?? defaultGenerator;
    this.weight = opts.weight === false ? (undefined as unknown as Tensor) : this.param('weight', deferring ? standIn([outFeatures, inFeatures]) : fanInUniform([outFeatures, inFeatures], inFeatures, gen));
    this.bias = opts.bias === false ? null : this.param('bias', fanInUniform([outFeatures], inFeatures, gen));
    const replaced = opts.weight === false ? null : hooked(this);
    if (replaced) return replaced as unknown as Linear;
  }
  /** Registers `w` as the weight parameter (initWeight's). */
  setWeight(w: Tensor): Tensor {
    return this.param('weight', w);
  }
  forward(x: Tensor): Tensor {
    return this.forwardAct(x, null);
  }

  /** act(forward(x)), the activation fused into the product where an inference cache packs the weight. */
  forwardAct(x: Tensor, act: FusedActivation | null): Tensor {
    const precision = computePrecision();
    if (foldCache && !isGradEnabled()) {
      const { weight, packs } = foldCache.linearOperand(this);
      return linear(x, weight, this.bias, { ...(packs ? { packs, precision } : {}), ...(act ? { act } : {}) });
    }
    // Under --precision bf16 a frozen weight is read from its bf16 copies (src/ops/precision.ts).
    const frozen = precision === 'bf16' ? frozenWeightPacks(this.weight) : null;
    return linear(x, this.weight, this.bias, { ...(frozen ? { packs: frozen, precision } : {}), ...(act ? { act } : {}) });
  }
}

export class Conv2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair,
    opts: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number; bias?: boolean; weight?: boolean; generator?: Generator } = {}) {
    super();
    this.kernelSize = pair(kernelSize);
    this.stride = pair(opts.stride ?? 1);
    this.padding = pair(opts.padding ?? 0);
    this.dilation = pair(opts.dilation ?? 1);
    this.groups = opts.groups ?? 1;
    if (inChannels % this.groups || outChannels % this.groups) throw new Error(`Conv2d: channels ${inChannels}→${outChannels} are not divisible by groups=${this.groups}`);
    const gen = opts.generator ?? defaultGenerator;
    const fanIn = (inChannels / this.groups) * this.kernelSize[0] * this.kernelSize[1];
    const shape = [outChannels, inChannels / this.groups, ...this.kernelSize];
    this.weight = opts.weight === false ? (undefined as unknown as Tensor) : this.param('weight', deferring && this.groups === 1 ? standIn(shape) : fanInUniform(shape, fanIn, gen));
    this.bias = opts.bias === false ? null : this.param('bias', fanInUniform([outChannels], fanIn, gen));
    const replaced = opts.weight === false ? null : hooked(this);
    if (replaced) return replaced as unknown as Conv2d;
  }
  /** Registers `w` as the weight parameter (initWeight's). */
  setWeight(w: Tensor): Tensor {
    return this.param('weight', w);
  }
  get convOptions(): Conv2dOptions {
    return { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups };
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.convOptions);
  }
}

/**
 * A buffer graft derives itself, which a checkpoint may therefore leave out: a 'counter' is
 * bookkeeping graft never computes with (BatchNorm's num_batches_tracked, as its momentum is
 * fixed), loaded when present; a 'recomputed' buffer is a function of the layer's configuration
 * (Swin's relative_position_index), which a checkpoint that has it must match.
 */
export type DerivedBuffer = 'counter' | 'recomputed';

/** A layer declaring its derived buffers by local name; checkpoint loaders read the declaration. */
export interface DerivesBuffers {
  readonly derivedBuffers: Readonly<Record<string, DerivedBuffer>>;
}

/** BatchNorm over channels; `frozen` keeps batch statistics fixed even in train mode (linear probing). */
export class BatchNorm2d extends Module implements DerivesBuffers {
  readonly derivedBuffers: Readonly<Record<string, DerivedBuffer>> = { num_batches_tracked: 'counter' };
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  numBatchesTracked: Tensor;
  frozen = false;
  constructor(readonly numFeatures: number, readonly eps = 1e-5, public momentum = 0.1) {
    super();
    this.weight = this.param('weight', ones([numFeatures]));
    this.bias = this.param('bias', zeros([numFeatures]));
    this.runningMean = this.buffer('running_mean', zeros([numFeatures]));
    this.runningVar = this.buffer('running_var', ones([numFeatures]));
    this.numBatchesTracked = this.buffer('num_batches_tracked', zeros([], { dtype: 'int32' }));
  }
  forward(x: Tensor): Tensor {
    const batchStats = this.training && !this.frozen;
    // A checkpoint's recomputation normalises as the first pass did, without updating the statistics again.
    const update = !(batchStats && isReplaying());
    return batchNorm(x, update ? this.runningMean : null, update ? this.runningVar : null, this.weight, this.bias, {
      training: batchStats, momentum: this.momentum, eps: this.eps,
    });
  }
}

export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(readonly normalizedShape: number, readonly eps = 1e-5, opts: { affine?: boolean; channelsFirst?: boolean } = {}) {
    super();
    const affine = opts.affine ?? true;
    this.channelsFirst = opts.channelsFirst ?? false;
    this.weight = affine ? this.param('weight', ones([normalizedShape])) : null;
    this.bias = affine ? this.param('bias', zeros([normalizedShape])) : null;
  }
  /** Normalise axis 1 of (B, C, H, W) instead of the last axis (timm's LayerNorm2d). */
  readonly channelsFirst: boolean;
  forward(x: Tensor): Tensor {
    return this.channelsFirst ? layerNorm2d(x, this.weight, this.bias, this.eps) : layerNorm(x, this.weight, this.bias, this.eps);
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}

export class DropPath extends Module {
  constructor(readonly p = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropPath(x, this.p, this.training);
  }
}

const activations = { relu, relu6, gelu: (x: Tensor) => gelu(x), gelu_tanh: (x: Tensor) => gelu(x, 'tanh'), silu, sigmoid, tanh, hardswish, identity: (x: Tensor) => x };
export type ActivationName = keyof typeof activations;

/** A parameter-free activation layer by name. */
export class Activation extends Module {
  constructor(readonly kind: ActivationName) {
    super();
    if (!(kind in activations)) throw new Error(`unknown activation '${kind}'; one of ${Object.keys(activations).join(', ')}`);
  }
  forward(x: Tensor): Tensor {
    return activations[this.kind](x);
  }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

export class MaxPool2d extends Module {
  constructor(readonly kernel: Pair, readonly opts: Pool2dOptions = {}) {
    super();
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernel, this.opts);
  }
}

export class AvgPool2d extends Module {
  constructor(readonly kernel: Pair, readonly opts: Pool2dOptions = {}) {
    super();
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernel, this.opts);
  }
}

export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }
  forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Children named '0', '1', … applied in order (torch.nn.Sequential). */
export class Sequential extends Module {
  constructor(...layers: Module[]) {
    super();
    layers.forEach((l, i) => this.module(String(i), l));
  }
  forward(x: Tensor): Tensor {
    return runFolded(this.children().map(([, m]) => m), x);
  }
}

// Folding a BatchNorm that uses its running statistics (eval mode, or frozen for adapter
// training) into the convolution before it: BN(conv(x, W) + b) = conv(x, W·s) + (b − μ)·s + β
// with s = γ / √(σ² + ε) per output channel. One pass over the activations instead of three
// (convolution, normalisation read and write), in forward and backward alike; gradients reach
// x, and W, γ, β where they are trainable, through the ops that build the folded weights.
/** A module that is, right now, exactly a Conv2d (itself, or an adapter wrapper that adds nothing). */
export interface ConvLike {
  plainConv(): Conv2d | null;
}

function plainConvOf(m: Module | null): Conv2d | null {
  if (m instanceof Conv2d) return m;
  const c = m as Partial<ConvLike> | null;
  return typeof c?.plainConv === 'function' ? c.plainConv() : null;
}

/** Whether `bn` normalises with its running statistics (so it is an affine map per channel). */
export function usesRunningStats(bn: Module | null): bn is BatchNorm2d {
  return bn instanceof BatchNorm2d && (!bn.training || bn.frozen) && bn.runningMean !== null && bn.runningVar !== null;
}

/** The activation `m` is, when conv2dAct can fuse it into the convolution before it. */
export function fusableActivation(m: Module | null | undefined): ConvActivation | null {
  return m instanceof Activation && (m.kind === 'relu' || m.kind === 'relu6') ? m.kind : null;
}

/**
 * conv then bn as one convolution, or null when they cannot be folded (the BatchNorm uses batch
 * statistics, or the conv module carries an unmerged adapter). `input` is the conv's input.
 * With `act`, the ReLU / ReLU6 after the BatchNorm runs inside the same convolution (conv2dAct).
 * `window` replaces the conv's padding (a zero padding before it folded in as well).
 */
export function convBatchNormFolded(convModule: Module | null, bn: Module | null, input: Tensor, act: ConvActivation | null = null, window?: Pick<Conv2dOptions, 'padding' | 'paddingEnd'>): Tensor | null {
  if (!usesRunningStats(bn)) return null;
  const conv = plainConvOf(convModule);
  // A 4-bit convolution (Conv2d4bit) is not folded: folding would build its whole float weight.
  if (!conv || (conv as Partial<{ isQuantized4: boolean }>).isQuantized4) return null;
  const cache = foldCache && !isGradEnabled() ? foldCache : null;
  let folded: { weight: Tensor; bias: Tensor; packs?: WeightPacks } | null = cache?.get(conv, bn) ?? null;
  if (!folded) {
    const c = conv.outChannels;
    const fold = () => {
      let s = rsqrt(add(bn.runningVar!, bn.eps));
      if (bn.weight) s = mul(s, bn.weight);
      const weight = mul(conv.weight, reshape(s, [c, 1, 1, 1]));
      let bias = mul(conv.bias ? sub(conv.bias, bn.runningMean!) : neg(bn.runningMean!), s);
      if (bn.bias) bias = add(bias, bn.bias);
      return { weight, bias };
    };
    // Outside every scope: the cache owns these until it is disposed.
    folded = cache ? cache.set(conv, bn, tidy(fold)) : fold();
  }
  let opts = window ? { ...conv.convOptions, ...window } : conv.convOptions;
  // A cached fold keeps the backend's packed copies of its weight too.
  if (folded.packs) opts = { ...opts, packs: folded.packs };
  return act ? conv2dAct(input, folded.weight, folded.bias, opts, act) : conv2d(input, folded.weight, folded.bias, opts);
}

interface Folded {
  bn: BatchNorm2d;
  /** The conv bias this was folded with. */
  bias0: Tensor | null;
  weight: Tensor;
  bias: Tensor;
  /** The folded weight packed for the backend's inference kernels (Conv2dOptions.packs). */
  packs: WeightPacks;
}

/**
 * What inference passes reuse across a run of them (withFoldedWeights): each conv + BatchNorm
 * pair folded once (with the backend's packed copies of the folded weight, where it makes them),
 * and Linear weights packed (or, on backends that pack none, copied in (in, out) order). Entries are keyed by the weight
 * tensor they were made from, so modules sharing a cache see their own entries whatever weight
 * they hold (a server's adapters, each with its merged copies, share one cache); an entry whose
 * weight is no longer used stays until forget() or dispose().
 */
export class FoldCache {
  private readonly folded = new Map<Tensor, Folded>();
  private readonly stored = new Map<Tensor, Tensor>();
  private readonly linearPacks = new Map<Tensor, WeightPacks>();
  private storedBytes = 0;

  /**
   * @param linearBudgetBytes how much memory the (in, out) copies of Linear weights may take
   * (linearWeight); the layers beyond it read their weight as it is.
   */
  constructor(readonly linearBudgetBytes = Math.min(2 ** 30, totalmem() / 16)) {}

  /**
   * The weight of `m` as linear() reads it fastest without a graph, while the budget allows: the
   * weight with a place for its packed copy where the backend packs products' operands (made by
   * linear() on first use), else linearWeight's copy; beyond the budget, the weight itself.
   */
  linearOperand(m: Linear): { weight: Tensor; packs: WeightPacks | null } {
    const w = m.weight;
    if (!packingEnabled || typeof w.backend.matmulPack !== 'function') return { weight: this.linearWeight(m), packs: null };
    let packs = this.linearPacks.get(w);
    if (!packs) {
      if (w.rank !== 2 || !w.isDense() || this.storedBytes + bytesOf(w) > this.linearBudgetBytes) return { weight: w, packs: null };
      packs = new Map();
      this.linearPacks.set(w, packs);
      this.storedBytes += bytesOf(w);
    }
    return { weight: w, packs };
  }

  /**
   * The weight of `m` as linear() reads it fastest without a graph on a backend that packs no
   * operands: a (out, in) view of a copy stored (in, out), made on first use while the budget
   * allows, else the weight itself.
   */
  linearWeight(m: Linear): Tensor {
    const w = m.weight;
    let t = this.stored.get(w);
    if (!t) {
      if (w.rank !== 2 || !w.isDense() || this.storedBytes + bytesOf(w) > this.linearBudgetBytes) return w;
      t = keep(tidy(() => contiguous(transpose(w, 0, 1))));
      this.stored.set(w, t);
      this.storedBytes += bytesOf(t);
    }
    return transpose(t, 0, 1);
  }

  /** The folded pair of `conv` (with its current weight and bias) and `bn`, or null. */
  get(conv: Conv2d, bn: BatchNorm2d): Folded | null {
    const f = this.folded.get(conv.weight);
    return f && f.bn === bn && f.bias0 === conv.bias ? f : null;
  }

  set(conv: Conv2d, bn: BatchNorm2d, t: { weight: Tensor; bias: Tensor }): Folded {
    this.forget(conv.weight);
    const f = { bn, bias0: conv.bias, weight: keep(t.weight), bias: keep(t.bias), packs: new Map() };
    this.folded.set(conv.weight, f);
    return f;
  }

  /** Frees what was made from `weight` (a weight about to be disposed). */
  forget(weight: Tensor): void {
    const f = this.folded.get(weight);
    if (f) {
      f.weight.dispose();
      f.bias.dispose();
      for (const t of f.packs.values()) t?.dispose();
      this.folded.delete(weight);
    }
    const packs = this.linearPacks.get(weight);
    if (packs) {
      for (const p of packs.values()) p?.dispose();
      this.storedBytes -= bytesOf(weight);
      this.linearPacks.delete(weight);
    }
    const t = this.stored.get(weight);
    if (t) {
      this.storedBytes -= bytesOf(t);
      t.dispose();
      this.stored.delete(weight);
    }
  }

  dispose(): void {
    for (const w of [...new Set([...this.folded.keys(), ...this.stored.keys(), ...this.linearPacks.keys()])]) this.forget(w);
  }
}

const bytesOf = (t: Tensor) => t.size * bytesPerElement(t.dtype);

let foldCache: FoldCache | null = null;

/**
 * Runs `fn` (forward passes under noGrad that do not modify any weight: evaluation, prediction,
 * timing) with each conv + BatchNorm pair folded once instead of on every forward pass. The
 * folded weights are freed when `fn` (or the promise it returns) finishes, unless `cache` is
 * given: then they stay in it for the next run (a server's cache), and its owner disposes it.
 */
export function withFoldedWeights<T>(fn: () => T, cache?: FoldCache): T {
  if (foldCache) return fn(); // nested: the outer run owns the cache
  const active = cache ?? new FoldCache();
  foldCache = active;
  const done = () => {
    if (foldCache === active) foldCache = null;
    if (!cache) active.dispose();
  };
  return thenFinally(fn, done);
}

/**
 * Runs modules in order, a Conv2d directly followed by a BatchNorm2d folded where it can be, and
 * a ReLU / ReLU6 right after such a pair fused into the same convolution. Without a graph each
 * step runs in its own memory scope (stageScope) and frees the step before it.
 */
export function runFolded(modules: readonly Module[], x: Tensor): Tensor {
  let h = x;
  for (let i = 0; i < modules.length; i++) {
    const m = modules[i]!;
    const next = modules[i + 1] ?? null;
    const act = fusableActivation(modules[i + 2]);
    const input = h;
    const folded = next ? stageScope(() => convBatchNormFolded(m, next, input, act)) : null;
    if (folded) {
      h = folded;
      i += act ? 2 : 1;
    } else h = stageScope(() => m.forward(input));
    // Without a graph nothing else holds an inner stage's output: free it once the next has run.
    if (input !== x && input !== h && !isGradEnabled()) input.dispose();
  }
  return h;
}

/** bn(conv(x)), folded into one convolution where it can be. */
export function convBn(conv: Module, bn: Module, x: Tensor): Tensor {
  return convBatchNormFolded(conv, bn, x) ?? bn.forward(conv.forward(x));
}

/** act(bn(conv(x))) for act ReLU / ReLU6: one convolution with the activation fused where the pair folds. */
export function convBnAct(conv: Module, bn: Module, x: Tensor, act: ConvActivation): Tensor {
  return convBatchNormFolded(conv, bn, x, act) ?? (act === 'relu' ? relu : relu6)(bn.forward(conv.forward(x)));
}

/** Named children without a forward of their own (torch.nn.ModuleDict). */
/** Named child modules (PyTorch's nn.ModuleDict), kept in the module registry alone. */
export class ModuleDict<M extends Module = Module> extends Module {
  constructor(entries: Record<string, M> = {}) {
    super();
    for (const [k, m] of Object.entries(entries)) this.set(k, m);
  }
  set(key: string, m: M): void {
    this.module(key, m);
  }
  get(key: string): M | undefined {
    return this.child(key) as M | undefined;
  }
  has(key: string): boolean {
    return this.child(key) !== undefined;
  }
  delete(key: string): void {
    this.removeChild(key);
  }
  keys(): string[] {
    return this.children().map(([k]) => k);
  }
  forward(): Tensor {
    throw new Error('ModuleDict has no forward; call one of its modules');
  }
}

/** One trainable tensor as a module with the parameter name `weight` (PEFT's DoRA magnitude layout). */
export class ParameterModule extends Module {
  weight: Tensor;
  constructor(value: Tensor) {
    super();
    this.weight = this.param('weight', value);
  }
  forward(): Tensor {
    return this.weight;
  }
}
