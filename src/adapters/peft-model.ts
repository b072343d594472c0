// A base model with named adapters grafted on, one active, each of any registered method; saving
// and loading in the Hugging Face PEFT layout (adapter_config.json + adapter_model.safetensors
// with keys `base_model.model.<module path>.<adapter tensor>`, the adapter name left out).
import { isQuantized, type Quant4Module, type RequantizeReport } from '../nn/quant4.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Module, describeTrainable } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { keep, tidy } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { assign } from '../ops/layout.js';
import { loadTensorsInto, saveSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { findTargets } from './targets.js';
import { AdapterLayer, type BaseLayer } from './layer.js';
import { ModulesToSaveWrapper } from './modules-to-save.js';
import { getAdapterMethod, methodForPeftJson } from './registry.js';
import type { AdapterConfig, AdapterMethod, GraftOptions, RankChoice, TrainingHooks } from './method.js';

export { ModulesToSaveWrapper } from './modules-to-save.js';

const PEFT_PREFIX = 'base_model.model.';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyMethod = AdapterMethod<any>;

/** An adapter's merged weights per layer (PeftModel.mergedCopies); its owner disposes them. */
export interface MergedCopies {
  readonly adapter: string;
  readonly layers: ReadonlyMap<AdapterLayer, { weight: Tensor; bias: Tensor | null }>;
  dispose(): void;
}

interface AdapterEntry {
  method: AnyMethod;
  config: AdapterConfig;
}

export class PeftModel<M extends Module = Module> extends Module {
  private readonly entries = new Map<string, AdapterEntry>();
  activeAdapter: string;

  /** Grafts adapter `adapterName` of `method` (a registered name or a method object) onto `model`. */
  constructor(readonly model: M, method: string | AnyMethod, config: AdapterConfig, adapterName = 'default', opts: GraftOptions = {}) {
    super();
    this.module('model', model);
    model.requiresGrad_(false);
    this.activeAdapter = adapterName;
    this.addAdapter(adapterName, method, config, opts);
  }

  /** Every adapter layer in the model with its path. */
  adapterLayers(): [string, AdapterLayer][] {
    return this.model.namedModules().filter((e): e is [string, AdapterLayer] => e[1] instanceof AdapterLayer);
  }

  private wrappers(): [string, ModulesToSaveWrapper][] {
    return this.model.namedModules().filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper);
  }

  adapterNames(): string[] {
    return [...this.entries.keys()];
  }

  /** The method and configuration of adapter `name` (default: the active one). */
  adapter(name = this.activeAdapter): AdapterEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`no adapter '${name}'; adapters: ${this.adapterNames().join(', ') || 'none'}`);
    return e;
  }

  /** Grafts adapter `name` onto the modules its config targets. */
  addAdapter(name: string, methodOrName: string | AnyMethod, rawConfig: AdapterConfig, opts: GraftOptions = {}): void {
    if (this.entries.has(name)) throw new Error(`adapter '${name}' already exists; delete it first or choose another name`);
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`adapter name '${name}' must use letters, digits, '_' or '-'`);
    const method = typeof methodOrName === 'string' ? getAdapterMethod(methodOrName) : methodOrName;
    const config = method.validate(rawConfig);
    const targets = findTargets(this.model, config, method);
    // Graft into a copy of the list first: a failure on one layer leaves no half-grafted adapter behind.
    const grafted: [string, AdapterLayer, boolean][] = [];
    try {
      for (const path of targets) {
        const target = this.model.getModule(path);
        const layer = method.graft(target, path, name, config, opts);
        if (layer !== target) this.model.setModule(path, layer);
        grafted.push([path, layer, layer !== target]);
      }
    } catch (e) {
      for (const [path, layer, wrapped] of grafted.reverse()) {
        if (layer.adapterNames().includes(name)) layer.deleteAdapter(name);
        if (wrapped) this.model.setModule(path, layer.base_layer);
      }
      throw e;
    }
    for (const target of config.modulesToSave ?? []) {
      const matches = this.model.namedModules().filter(([p]) => p === target || p.endsWith(`.${target}`));
      if (matches.length === 0) throw new Error(`modulesToSave: no module named '${target}'; see 'graft inspect' for module names`);
      for (const [path, m] of matches) {
        if (m instanceof ModulesToSaveWrapper) m.addAdapter(name);
        else if (!path.includes('.original_module') && !path.includes('.modules_to_save.')) {
          const w = new ModulesToSaveWrapper(m);
          this.model.setModule(path, w);
          w.addAdapter(name);
        }
      }
    }
    this.entries.set(name, { method, config });
    this.setAdapter(this.entries.has(this.activeAdapter) ? this.activeAdapter : name);
  }

  /** Makes `name` the active adapter; only its parameters are trainable. */
  setAdapter(name: string): void {
    this.adapter(name);
    const layers = this.adapterLayers();
    if (layers.some(([, l]) => l.mergedAdapters.length)) throw new Error('unmerge adapters before switching the active one');
    this.activeAdapter = name;
    for (const [, l] of layers) l.activeAdapter = l.adapterNames().includes(name) ? name : null;
    for (const [, w] of this.wrappers()) w.active = w.modules_to_save.has(name) ? name : null;
    this.model.requiresGrad_(false);
    const params = new Set(this.model.parameters());
    for (const [, t] of this.adapterState(name)) if (params.has(t)) t.requiresGrad = true;
  }

  deleteAdapter(name: string): void {
    this.adapter(name);
    for (const [, l] of this.adapterLayers()) if (l.adapterNames().includes(name)) l.deleteAdapter(name);
    for (const [, w] of this.wrappers()) w.deleteAdapter(name);
    this.entries.delete(name);
    const next = this.adapterNames()[0];
    if (next) this.setAdapter(next);
  }

  forward(x: Tensor): Tensor {
    return this.model.forward(x);
  }

  /** The training hooks of the active adapter's method (empty when it has none). */
  trainingHooks(): TrainingHooks {
    const { method, config } = this.adapter();
    return method.trainingHooks?.(this.model, this.activeAdapter, config) ?? {};
  }

  /** The active adapter's rank choice, for methods trained for several ranks (null otherwise). */
  rankChoice(): RankChoice | null {
    const { method, config } = this.adapter();
    return method.rankChoice?.(this.model, this.activeAdapter, config) ?? null;
  }

  /**
   * Folds the active adapter into the base weights. A 4-bit base layer is dequantised first (it
   * then holds a float weight); `requantize` quantises it again afterwards, and the rounding error
   * of each such layer is returned by path.
   */
  /** The rounding errors of the last mergeAndUnload with requantize (path → error). */
  lastRequantize = new Map<string, RequantizeReport>();

  merge(opts: { requantize?: boolean } = {}): Map<string, RequantizeReport> {
    const reports = new Map<string, RequantizeReport>();
    for (const [path, l] of this.adapterLayers()) {
      const base = l.base_layer as unknown;
      if (isQuantized(base as Module)) (base as Quant4Module).dequantizeForMerge();
      l.merge(this.activeAdapter);
      if (opts.requantize && isQuantized(base as Module)) reports.set(path, (base as Quant4Module).requantize());
    }
    return reports;
  }

  /**
   * Runs `fn` with the active adapter merged into every layer that allows it (inference then
   * costs what the base model costs), then restores the exact base weights. Layers that cannot
   * merge keep their separate path.
   */
  async withMerged<T>(fn: () => Promise<T>): Promise<T> {
    // 4-bit bases keep their adapter path (merging would need their float weight).
    const layers = this.adapterLayers().map(([, l]) => l).filter((l) => l.canMerge() && l.activeAdapter !== null && l.mergedAdapters.length === 0 && !isQuantized(l.base_layer));
    const saved = layers.map((l) => keep(l.base_layer.weight.clone()));
    try {
      for (const l of layers) l.merge(l.activeAdapter);
      return await fn();
    } finally {
      layers.forEach((l, i) => {
        if (l.mergedAdapters.length) l.unmerge();
        // Merging and unmerging round in float32; the saved copy makes the base weights exact again.
        assign(l.base_layer.weight, saved[i]!);
        saved[i]!.dispose();
      });
    }
  }

  /**
   * The base weight and bias of every layer the active adapter can merge into, copied with the
   * adapter merged in; the model is left exactly as it was. withMergedCopies runs forward passes
   * on them: what a server keeps per adapter, so that a batch costs what the merged model costs
   * while the base stays shared.
   */
  mergedCopies(): MergedCopies {
    const layers = new Map<AdapterLayer, { weight: Tensor; bias: Tensor | null }>();
    const dispose = () => {
      for (const c of layers.values()) {
        c.weight.dispose();
        c.bias?.dispose();
      }
      layers.clear();
    };
    try {
      for (const [, l] of this.adapterLayers()) {
        if (!l.canMerge() || l.activeAdapter === null || l.mergedAdapters.length || isQuantized(l.base_layer)) continue;
        const base = l.base_layer as BaseLayer;
        const saved = noGrad(() => [keep(base.weight.clone()), base.bias ? keep(base.bias.clone()) : null] as const);
        try {
          l.merge(l.activeAdapter);
          layers.set(l, noGrad(() => ({ weight: keep(base.weight.clone()), bias: base.bias ? keep(base.bias.clone()) : null })));
          l.unmerge();
        } finally {
          // Merging and unmerging round in float32; the saved copies make the base exact again.
          assign(base.weight, saved[0]);
          if (base.bias && saved[1]) assign(base.bias, saved[1]);
          saved[0].dispose();
          saved[1]?.dispose();
        }
      }
    } catch (e) {
      dispose();
      throw e;
    }
    return { adapter: this.activeAdapter, layers, dispose };
  }

  /** Runs `fn` (forward passes under noGrad) with the active adapter's merged copies in place of the base weights. */
  withMergedCopies<T>(copies: MergedCopies, fn: () => T): T {
    if (copies.adapter !== this.activeAdapter) throw new Error(`merged copies of adapter '${copies.adapter}' used while '${this.activeAdapter}' is active`);
    const swapped: [AdapterLayer, Tensor, Tensor | null][] = [];
    try {
      for (const [l, c] of copies.layers) {
        const base = l.base_layer as BaseLayer;
        swapped.push([l, base.weight, base.bias]);
        base.weight = c.weight;
        base.bias = c.bias;
        l.mergedAdapters.push(copies.adapter);
      }
      return fn();
    } finally {
      for (const [l, weight, bias] of swapped) {
        const base = l.base_layer as BaseLayer;
        base.weight = weight;
        base.bias = bias;
        l.mergedAdapters.pop();
      }
    }
  }

  unmerge(): void {
    for (const [, l] of this.adapterLayers()) l.unmerge();
  }

  /** Merges the active adapter and returns the plain model (adapter layers replaced by their merged base layers). */
  mergeAndUnload(opts: { requantize?: boolean } = {}): M {
    this.lastRequantize = this.merge(opts);
    for (const [path, l] of this.adapterLayers()) this.model.setModule(path, l.base_layer);
    for (const [path, w] of this.wrappers()) this.model.setModule(path, w.current());
    this.model.requiresGrad_(true);
    return this.model;
  }

  trainableSummary() {
    return describeTrainable(this.model);
  }

  /** Adapter `name`'s tensors by in-memory key and by PEFT's on-disk key (without the base_model.model. prefix). */
  private adapterState(name: string): [string, Tensor, string][] {
    const out: [string, Tensor, string][] = [];
    const owners: [string, { peftKey(k: string, n: string): string | null } & Module][] = [...this.adapterLayers(), ...this.wrappers()];
    // Python PEFT's module path on the model's checkpoint class (models/model.ts peftModulePath).
    const peftPath = (p: string) => (this.model as Partial<{ peftModulePath(p: string): string }>).peftModulePath?.(p) ?? p;
    for (const [path, owner] of owners) {
      for (const [key, t] of [...owner.namedParameters(), ...owner.namedBuffers()]) {
        const disk = owner.peftKey(key, name);
        if (disk !== null) out.push([`${path}.${key}`, t, `${peftPath(path)}.${disk}`]);
      }
    }
    return out;
  }

  /** Adapter `name`'s tensors under PEFT's on-disk keys. */
  adapterStateDict(name = this.activeAdapter): Map<string, Tensor> {
    return new Map(this.adapterState(name).map(([, t, disk]) => [PEFT_PREFIX + disk, t]));
  }

  /** Writes adapter_config.json and adapter_model.safetensors into `dir` (each atomically). */
  saveAdapter(dir: string, name = this.activeAdapter): void {
    const { method, config } = this.adapter(name);
    mkdirSync(dir, { recursive: true });
    saveSafetensors(join(dir, 'adapter_model.safetensors'), this.adapterStateDict(name), { format: 'pt' });
    writeFileAtomic(join(dir, 'adapter_config.json'), JSON.stringify(method.toPeftJson(config, this.model.constructor.name), null, 2) + '\n');
  }

  /** Writes the active adapter cut to rank b alone (RankChoice.truncated: e.g. a plain LoRA adapter) into `dir`. */
  saveAdapterAtRank(dir: string, b: number): void {
    const choice = this.rankChoice();
    if (!choice) throw new Error(`adapter '${this.activeAdapter}' (${this.adapter().method.name}) has one rank; it has no rank-${b} form to save`);
    const { json, cut } = choice.truncated(b, this.model.constructor.name);
    const tensors = tidy(() => new Map([...this.adapterStateDict()].map(([k, t]) => [k, keep(cut(k, t))])));
    mkdirSync(dir, { recursive: true });
    try {
      saveSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    } finally {
      const own = new Set(this.adapterStateDict().values());
      for (const t of tensors.values()) if (!own.has(t)) t.dispose();
    }
    writeFileAtomic(join(dir, 'adapter_config.json'), JSON.stringify(json, null, 2) + '\n');
  }

  /** Loads a PEFT-layout adapter folder as adapter `name` (strict: every key and shape must match). */
  loadAdapter(dir: string, name = 'default'): void {
    const configPath = join(dir, 'adapter_config.json');
    const weightsPath = join(dir, 'adapter_model.safetensors');
    for (const p of [configPath, weightsPath]) if (!existsSync(p)) throw new Error(`${dir} is not an adapter folder: ${p} is missing`);
    const json = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
    const method = methodForPeftJson(json, configPath);
    this.addAdapter(name, method, method.fromPeftJson(json, configPath));
    try {
      this.loadAdapterWeights(weightsPath, name);
    } catch (e) {
      this.deleteAdapter(name);
      throw e;
    }
  }

  /** Copies adapter `name`'s tensors from a safetensors file in PEFT's layout (every key, shape and dtype kind must match). */
  loadAdapterWeights(weightsPath: string, name = this.activeAdapter): void {
    loadTensorsInto(this.adapterStateDict(name), weightsPath, 'adapter');
  }
}
