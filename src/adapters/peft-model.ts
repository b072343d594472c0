// A base model with named LoRA/DoRA adapters grafted on, one active; saving and loading in the
// Hugging Face PEFT layout (adapter_config.json + adapter_model.safetensors with keys
// `base_model.model.<module path>.lora_A.weight`).
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Module, describeTrainable } from '../nn/module.js';
import { ModuleDict } from '../nn/layers.js';
import type { Tensor } from '../tensor/tensor.js';
import { keep } from '../tensor/memory.js';
import { assign } from '../ops/layout.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import { findTargets, patternValue } from './targets.js';
import { LoraLayer } from './lora/layer.js';
import { dora } from './lora/dora.js';
import { fromPeftJson, toPeftJson, type LoraConfig } from './lora/config.js';
import type { Generator } from '../tensor/random.js';

const PEFT_PREFIX = 'base_model.model.';

/** A module trained in full for each adapter (a head, a BatchNorm), PEFT's ModulesToSaveWrapper. */
export class ModulesToSaveWrapper extends Module {
  readonly original_module: Module;
  readonly modules_to_save = new ModuleDict();
  active: string | null = null;
  constructor(original: Module) {
    super();
    this.original_module = this.module('original_module', original);
    this.module('modules_to_save', this.modules_to_save);
  }
  addAdapter(name: string): void {
    const copy = this.original_module.clone();
    copy.requiresGrad_(true);
    this.modules_to_save.set(name, copy);
    this.active ??= name;
  }
  forward(x: Tensor): Tensor {
    return (this.active ? this.modules_to_save.get(this.active)! : this.original_module).forward(x);
  }
}

export class PeftModel<M extends Module = Module> extends Module {
  readonly configs = new Map<string, LoraConfig>();
  activeAdapter: string;

  constructor(readonly model: M, config: LoraConfig, adapterName = 'default', opts: { generator?: Generator } = {}) {
    super();
    this.module('model', model);
    model.requiresGrad_(false);
    this.activeAdapter = adapterName;
    this.addAdapter(adapterName, config, opts);
  }

  loraLayers(): [string, LoraLayer][] {
    return this.model.namedModules().filter((e): e is [string, LoraLayer] => e[1] instanceof LoraLayer);
  }

  private wrappers(): [string, ModulesToSaveWrapper][] {
    return this.model.namedModules().filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper);
  }

  /** Grafts adapter `name` onto the modules its config targets. */
  addAdapter(name: string, config: LoraConfig, opts: { generator?: Generator } = {}): void {
    if (this.configs.has(name)) throw new Error(`adapter '${name}' already exists; delete it first or choose another name`);
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`adapter name '${name}' must use letters, digits, '_' or '-'`);
    const targets = findTargets(this.model, config);
    for (const path of targets) {
      let layer = this.model.getModule(path);
      if (!(layer instanceof LoraLayer)) {
        const wrapped = new LoraLayer(layer as never);
        this.model.setModule(path, wrapped);
        layer = wrapped;
      }
      (layer as LoraLayer).addAdapter(name, {
        r: patternValue(path, config.rankPattern, config.r),
        alpha: patternValue(path, config.alphaPattern, config.loraAlpha),
        dropout: config.loraDropout,
        useRslora: config.useRslora,
        init: config.initLoraWeights,
        variant: config.useDora ? dora : null,
        generator: opts.generator,
      });
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
    this.configs.set(name, config);
    this.setAdapter(this.configs.has(this.activeAdapter) ? this.activeAdapter : name);
  }

  /** Makes `name` the active adapter; only its parameters are trainable. */
  setAdapter(name: string): void {
    if (!this.configs.has(name)) throw new Error(`no adapter '${name}'; adapters: ${[...this.configs.keys()].join(', ')}`);
    if (this.loraLayers().some(([, l]) => l.mergedAdapters.length)) throw new Error('unmerge adapters before switching the active one');
    this.activeAdapter = name;
    for (const [, l] of this.loraLayers()) l.activeAdapter = l.adapterNames().includes(name) ? name : null;
    for (const [, w] of this.wrappers()) w.active = w.modules_to_save.has(name) ? name : null;
    for (const [key, t] of this.model.namedParameters()) t.requiresGrad = isAdapterKey(key, name);
  }

  deleteAdapter(name: string): void {
    if (!this.configs.has(name)) throw new Error(`no adapter '${name}'`);
    for (const [, l] of this.loraLayers()) if (l.adapterNames().includes(name)) l.deleteAdapter(name);
    for (const [, w] of this.wrappers()) if (w.modules_to_save.has(name)) {
      w.modules_to_save.get(name)!.dispose();
      w.modules_to_save.delete(name);
      if (w.active === name) w.active = null;
    }
    this.configs.delete(name);
    const next = [...this.configs.keys()][0];
    if (next) this.setAdapter(next);
  }

  forward(x: Tensor): Tensor {
    return this.model.forward(x);
  }

  merge(): void {
    for (const [, l] of this.loraLayers()) l.merge(this.activeAdapter);
  }

  /**
   * Runs `fn` with the active adapter merged into every layer that allows it (inference then
   * costs what the base model costs), then restores the exact base weights. Layers that cannot
   * merge (LoRA on grouped convolutions) keep their separate path.
   */
  async withMerged<T>(fn: () => Promise<T>): Promise<T> {
    const layers = this.loraLayers().map(([, l]) => l).filter((l) => l.canMerge() && l.activeAdapter !== null && l.mergedAdapters.length === 0);
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

  unmerge(): void {
    for (const [, l] of this.loraLayers()) l.unmerge();
  }

  /** Merges the active adapter and returns the plain model (LoRA layers replaced by their merged base layers). */
  mergeAndUnload(): M {
    this.merge();
    for (const [path, l] of this.loraLayers()) this.model.setModule(path, l.base_layer);
    for (const [path, w] of this.wrappers()) {
      this.model.setModule(path, w.active ? w.modules_to_save.get(w.active)! : w.original_module);
    }
    this.model.requiresGrad_(true);
    return this.model;
  }

  trainableSummary() {
    return describeTrainable(this.model);
  }

  /** Adapter `name`'s tensors under PEFT's on-disk keys. */
  adapterStateDict(name = this.activeAdapter): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const state = [...this.model.namedParameters(), ...this.model.namedBuffers()];
    for (const [key, t] of state) {
      const peftKey = toPeftKey(key, name);
      if (peftKey) out.set(PEFT_PREFIX + peftKey, t);
    }
    return out;
  }

  /** Writes adapter_config.json and adapter_model.safetensors into `dir` (each atomically). */
  saveAdapter(dir: string, name = this.activeAdapter): void {
    const config = this.configs.get(name);
    if (!config) throw new Error(`no adapter '${name}'`);
    mkdirSync(dir, { recursive: true });
    saveSafetensors(join(dir, 'adapter_model.safetensors'), this.adapterStateDict(name), { format: 'pt' });
    const json = JSON.stringify(toPeftJson(config, this.model.constructor.name), null, 2);
    const tmp = join(dir, `.adapter_config.json.${process.pid}.tmp`);
    writeFileSync(tmp, json + '\n');
    renameSync(tmp, join(dir, 'adapter_config.json'));
  }

  /** Loads a PEFT-layout adapter folder as adapter `name` (strict: every key must match). */
  loadAdapter(dir: string, name = 'default'): void {
    const configPath = join(dir, 'adapter_config.json');
    const weightsPath = join(dir, 'adapter_model.safetensors');
    for (const p of [configPath, weightsPath]) if (!existsSync(p)) throw new Error(`${dir} is not an adapter folder: ${p} is missing`);
    const config = fromPeftJson(JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>, configPath);
    this.addAdapter(name, config);
    const want = this.adapterStateDict(name);
    const file = loadSafetensors(weightsPath);
    const missing = [...want.keys()].filter((k) => !file.has(k));
    const unexpected = [...file.keys()].filter((k) => !want.has(k));
    const mismatched = [...want].filter(([k, t]) => file.has(k) && file.get(k)!.shape.join() !== t.shape.join()).map(([k, t]) => `${k}: model ${JSON.stringify(t.shape)}, file ${JSON.stringify(file.get(k)!.shape)}`);
    if (missing.length || unexpected.length || mismatched.length) {
      this.deleteAdapter(name);
      for (const t of file.values()) t.dispose();
      throw new Error(`adapter ${weightsPath} does not fit this model:\n${[...mismatched.map((m) => `  shape mismatch ${m}`), ...missing.map((k) => `  missing: ${k}`), ...unexpected.map((k) => `  unexpected: ${k}`)].join('\n')}`);
    }
    for (const [k, t] of want) t.backend.copy(file.get(k)!.view(), t.view());
    for (const t of file.values()) t.dispose();
  }
}

/** Whether a parameter path belongs to adapter `name` (LoRA factors, DoRA magnitude, a saved module copy). */
function isAdapterKey(key: string, name: string): boolean {
  return toPeftKey(key, name) !== null;
}

/** In-memory key → PEFT on-disk key (adapter name removed), or null when the key is not adapter `name`'s. */
function toPeftKey(key: string, name: string): string | null {
  const lora = new RegExp(`^(.*)\\.(lora_A|lora_B)\\.${name}\\.(weight|bias)$`).exec(key);
  if (lora) return `${lora[1]}.${lora[2]}.${lora[3]}`;
  const mag = new RegExp(`^(.*)\\.lora_magnitude_vector\\.${name}\\.weight$`).exec(key);
  if (mag) return `${mag[1]}.lora_magnitude_vector`;
  const saved = new RegExp(`^(.*)\\.modules_to_save\\.${name}\\.(.*)$`).exec(key);
  if (saved) return `${saved[1]}.${saved[2]}`;
  return null;
}
