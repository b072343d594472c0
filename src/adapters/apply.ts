// The methods a comparison runs: the baselines the papers judge PEFT against (scratch, linear
// probe, full fine-tuning) and every registered adapter method, each turning a backbone into
// the module to train.
import { Module } from '../nn/module.js';
import { Activation, BatchNorm2d, Dropout, Linear, Sequential } from '../nn/layers.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Generator } from '../tensor/random.js';
import { classifierPath } from '../models/head.js';
import { PeftModel } from './peft-model.js';
import { SharedAdapterOptionsSchema, type AdapterConfig } from './method.js';
import { adapterMethods, getAdapterMethod, isAdapterMethod } from './registry.js';

/** The baselines: every parameter from random init, a head on a frozen backbone, every parameter from the pretrained weights. */
export const BASELINES = ['scratch', 'linear-probe', 'full'] as const;
export type Baseline = (typeof BASELINES)[number];

/** Every method name: the baselines, then the registered adapter methods. */
export function methodNames(): string[] {
  return [...BASELINES, ...adapterMethods().map((m) => m.name)];
}

export function isMethodName(name: string): boolean {
  return (BASELINES as readonly string[]).includes(name) || isAdapterMethod(name);
}

export interface MethodOptions {
  numClasses: number;
  /** Head for linear probing: one Linear, or Linear → GELU → Dropout → Linear. */
  head?: 'linear' | 'mlp';
  mlpHidden?: number;
  /** An adapter method's configuration (default: the method's defaults on 'all-linear'); the head is added to its modulesToSave. */
  adapterConfig?: AdapterConfig;
  generator?: Generator;
  /**
   * Where the new head starts: 'classifier' replaces the last Linear (the pretrained layers before
   * it stay, as in torchvision's fine-tuning recipes); 'features' replaces everything after the
   * pooled features, for pretrained heads that are a task-specific MLP (nsfwjs).
   */
  headFrom?: 'classifier' | 'features';
  /**
   * The path of a head the model already has, new and sized for the task (a segmentation decode
   * head): it is trained (kept in modulesToSave) and no classifier is replaced.
   */
  headPath?: string;
}

interface HeadReplaceable {
  replaceHeadWithLinear(numClasses: number, generator?: Generator): string;
}

function headFromFeatures(model: Module, numClasses: number, gen?: Generator): void {
  const m = model as Partial<HeadReplaceable>;
  if (typeof m.replaceHeadWithLinear === 'function') {
    m.replaceHeadWithLinear(numClasses, gen);
    return;
  }
  const path = headPath(model);
  const parent = path.includes('.') ? model.getModule(path.slice(0, path.lastIndexOf('.'))) : null;
  const linears = parent ? parent.namedModules().filter(([, x]) => x instanceof Linear).length : 1;
  if (linears > 1) {
    throw new Error(`${model.constructor.name}'s classifier has ${linears} Linear layers; head 'features' replaces a head of one Linear or an imported Keras head. Use headFrom 'classifier'.`);
  }
}

/** The classifier's path by the models' one head rule (classifierPath), or an error when the model has none. */
export function headPath(model: Module): string {
  const path = classifierPath(model);
  if (path === null) throw new Error(`${model.constructor.name} has no Linear classifier to replace (built with numClasses 0?)`);
  return path;
}

/** Replaces the classifier with a fresh one for `numClasses` (linear or a small MLP). */
export function replaceHead(model: Module, numClasses: number, kind: 'linear' | 'mlp' = 'linear', hidden = 256, gen?: Generator): string {
  const path = headPath(model);
  const old = model.getModule(path) as Linear;
  const head = kind === 'linear'
    ? new Linear(old.inFeatures, numClasses, { generator: gen })
    : new Sequential(new Linear(old.inFeatures, hidden, { generator: gen }), new Activation('gelu'), new Dropout(0.1), new Linear(hidden, numClasses, { generator: gen }));
  model.setModule(path, head);
  old.dispose();
  return path;
}

/** A frozen backbone (eval mode always, BatchNorm statistics fixed) under a trained head. */
export class LinearProbe extends Module {
  constructor(readonly model: Module, readonly headName: string) {
    super();
    this.module('model', model);
    model.requiresGrad_(false);
    model.getModule(headName).requiresGrad_(true);
    // The backbone's BatchNorms keep their statistics; a head's own (a segmentation head's) trains.
    for (const [path, m] of model.namedModules()) if (m instanceof BatchNorm2d) m.frozen = path !== headName && !path.startsWith(`${headName}.`);
  }
  override train(mode = true): this {
    super.train(false);
    this.model.getModule(this.headName).train(mode);
    return this;
  }
  forward(x: Tensor): Tensor {
    return this.model.forward(x);
  }
}

/**
 * Prepares `model` (pretrained, or freshly initialised for `scratch`) for training with `method`
 * (a baseline or a registered adapter method). The classifier is replaced for `numClasses` in
 * every method.
 */
export function applyMethod(model: Module, method: string, opts: MethodOptions): Module {
  if (!isMethodName(method)) throw new Error(`unknown method '${method}'; methods: ${methodNames().join(', ')}`);
  if (opts.headFrom === 'features' && !opts.headPath) headFromFeatures(model, opts.numClasses, opts.generator);
  const head = opts.headPath ?? replaceHead(model, opts.numClasses, method === 'linear-probe' ? opts.head ?? 'linear' : 'linear', opts.mlpHidden, opts.generator);
  if (method === 'scratch' || method === 'full') return model.requiresGrad_(true);
  if (method === 'linear-probe') return new LinearProbe(model, head);
  const adapter = getAdapterMethod(method);
  const config = opts.adapterConfig ?? adapter.configFromRun(SharedAdapterOptionsSchema.parse({}), adapter.optionsSchema.parse({}));
  // A saved adapter's configuration already lists the head (a reloaded run passes it back).
  const modulesToSave = [...new Set([head, ...(config.modulesToSave ?? [])])];
  const peft = new PeftModel(model, adapter, { ...config, modulesToSave }, 'default', { generator: opts.generator });
  // The backbone is frozen, its BatchNorm statistics included: batch statistics of a few images
  // would otherwise drift from the running ones used at test time. A BatchNorm listed in
  // modulesToSave is trained, statistics and all.
  for (const [path, m] of peft.model.namedModules()) if (m instanceof BatchNorm2d) m.frozen = !path.includes('.modules_to_save.');
  return peft;
}
