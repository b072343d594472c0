// One frozen base model with any number of adapter runs grafted onto it, for `graft serve`.
//
// The first run is rebuilt with loadRun (base, its adapter, its head). Every later run of the same
// base adds its adapter to that same PeftModel under its own internal name (addAdapter: new
// adapter tensors in each adapter layer, its own copy of the head and any other modulesToSave in
// the ModulesToSaveWrapper), then loads its saved tensors strictly. The base weights are held
// once; a batch runs with its adapter made active (setAdapter), which switches every adapter
// layer and head wrapper to that adapter's tensors. For the adapters used most recently (up to
// `mergedCacheSize`) the host keeps the adapted layers' weights with the adapter merged in
// (PeftModel.mergedCopies), so a batch costs what the merged model costs; the others run their
// adapter path unmerged. One FoldCache holds the folded conv + BatchNorm pairs and the (in, out)
// Linear weights of every weight used, base and merged copies alike, each made once.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, RunFolderError } from '../errors.js';
import { PeftModel, ModulesToSaveWrapper, type MergedCopies } from '../adapters/peft-model.js';
import { getAdapterMethod, isAdapterMethod } from '../adapters/registry.js';
import type { AdapterConfig } from '../adapters/method.js';
import type { PreprocessConfig } from '../data/preprocess.js';
import { BatchNorm2d, FoldCache, Linear, withFoldedWeights } from '../nn/layers.js';
import { softmax } from '../ops/norm.js';
import { tensor } from '../ops/creation.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { ADAPTER_DIR, loadRun, readRunManifest, savedAdapterConfig, type RunManifest } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';

export interface ServedAdapter {
  name: string;
  runDir: string;
  method: string;
  classes: string[];
}

/** What must be equal between two runs for them to share one base: the rebuilt frozen weights. */
export function baseKey(c: RunConfig): Record<string, unknown> {
  return {
    model: c.model,
    weights: c.weights ?? null,
    modelOverrides: c.modelOverrides ?? null,
    imageSize: c.data.imageSize ?? null,
    headFrom: c.headFrom ?? 'classifier',
    // Without a checkpoint the frozen backbone is drawn from the run's seed.
    seed: c.weights === undefined ? c.train.seed : null,
  };
}

function describeBase(k: Record<string, unknown>): string {
  return Object.entries(k).filter(([, v]) => v !== null).map(([f, v]) => `${f} ${JSON.stringify(v)}`).join(', ');
}

function checkServable(runDir: string, m: RunManifest, adapterConfig: AdapterConfig | null): void {
  if (m.config.task === 'segmentation') throw new ConfigError(`run ${runDir} is a segmentation run; graft serve serves classification runs. Use graft predict for its masks (docs/segmentation.md)`);
  if (!isAdapterMethod(m.config.method)) {
    throw new ConfigError(`run ${runDir} used method '${m.config.method}', which trains no adapter over a frozen base; graft serve holds one base with adapters over it. Serve adapter runs (lora, dora, ...), or use graft predict / graft export for this run`);
  }
  const init = (adapterConfig as { initLoraWeights?: unknown } | null)?.initLoraWeights;
  if (init === 'pissa') throw new ConfigError(`run ${runDir} was initialised with PiSSA, which changes the base weights under its adapter; it cannot share a base with other adapters. Merge it (graft merge / graft export) and serve it on its own`);
}

export class AdapterHost {
  private readonly served = new Map<string, ServedAdapter & { id: string }>();
  private nextId = 0;
  /** Merged copies per adapter id, least recently used first. */
  private readonly inference = new Map<string, MergedCopies>();
  /** What inference passes reuse, for every weight they read (FoldCache). */
  private readonly fold = new FoldCache();
  /** How many adapters keep merged, folded weights (each a copy of its adapted layers' weights); 0: none. */
  mergedCacheSize = 4;

  private constructor(readonly model: PeftModel, readonly preprocess: PreprocessConfig, private readonly key: Record<string, unknown>, private readonly firstDir: string, private readonly firstClasses: number) {}

  /** Rebuilds the first run's model (base + its adapter) and serves that adapter as `name`. */
  static async open(name: string, runDir: string): Promise<AdapterHost> {
    checkName(name);
    const manifest = readRunManifest(runDir);
    checkServable(runDir, manifest, savedAdapterConfig(runDir, manifest.config));
    const run = await loadRun(runDir);
    if (!(run.model instanceof PeftModel)) {
      run.model.dispose();
      throw new ConfigError(`run ${runDir}: its model has no adapter to serve`);
    }
    const host = new AdapterHost(run.model, run.preprocess, baseKey(run.config), runDir, run.classes.length);
    host.served.set(name, { name, runDir, method: run.config.method, classes: run.classes, id: run.model.activeAdapter });
    return host;
  }

  list(): ServedAdapter[] {
    return [...this.served.values()].map(({ id: _id, ...a }) => a);
  }

  has(name: string): boolean {
    return this.served.has(name);
  }

  get(name: string): ServedAdapter | undefined {
    return this.served.get(name);
  }

  /** Adds the adapter of run `runDir` (same base) as `name`. */
  add(name: string, runDir: string): ServedAdapter {
    checkName(name);
    if (this.served.has(name)) throw new ConfigError(`an adapter named '${name}' is already served (run ${this.served.get(name)!.runDir}); unload it first or choose another name`);
    const manifest = readRunManifest(runDir);
    const adapterConfig = savedAdapterConfig(runDir, manifest.config);
    checkServable(runDir, manifest, adapterConfig);
    const key = baseKey(manifest.config);
    if (JSON.stringify(key) !== JSON.stringify(this.key)) {
      throw new ConfigError(`run ${runDir} is on another base (${describeBase(key)}) than the served runs (${describeBase(this.key)}, from ${this.firstDir}); one graft serve holds one base model: start another server for it`);
    }
    if (!adapterConfig) throw new RunFolderError(`${runDir} has no ${join(ADAPTER_DIR, 'adapter_config.json')}; the run has not finished: finish it with graft train --resume --output ${runDir}`);
    const weights = join(runDir, ADAPTER_DIR, 'adapter_model.safetensors');
    if (!existsSync(weights)) throw new RunFolderError(`${runDir} has no trained weights (${weights}); the run has not finished: finish it with graft train --resume --output ${runDir}`);
    const id = `served${this.nextId++}`;
    const method = getAdapterMethod(manifest.config.method);
    try {
      this.model.addAdapter(id, method, adapterConfig);
    } catch (e) {
      throw new ConfigError(`cannot add the ${manifest.config.method} adapter of ${runDir} to the served base: ${(e as Error).message}`);
    }
    try {
      this.fitHeads(id, manifest.classes.length);
      for (const [path, m] of this.model.model.namedModules()) if (m instanceof BatchNorm2d && path.includes('.modules_to_save.')) m.frozen = false;
      this.model.loadAdapterWeights(weights, id);
    } catch (e) {
      this.model.deleteAdapter(id);
      throw e;
    }
    this.model.eval();
    const entry = { name, runDir, method: manifest.config.method, classes: manifest.classes, id };
    this.served.set(name, entry);
    const { id: _id, ...out } = entry;
    return out;
  }

  /**
   * A run's head has as many outputs as its classes: the copy addAdapter made of the first run's
   * head (a Linear with that run's class count) is replaced by a Linear of this run's count, which
   * the strict load then fills.
   */
  private fitHeads(id: string, numClasses: number): void {
    const firstClasses = this.served.size ? [...this.served.values()][0]!.classes.length : this.firstClasses;
    for (const [, w] of this.model.model.namedModules()) {
      if (!(w instanceof ModulesToSaveWrapper) || !w.modules_to_save.has(id)) continue;
      const copy = w.modules_to_save.get(id)!;
      if (!(copy instanceof Linear) || copy.outFeatures === numClasses || copy.outFeatures !== firstClasses) continue;
      const head = new Linear(copy.inFeatures, numClasses, { bias: copy.namedParameters().some(([k]) => k === 'bias') });
      copy.dispose();
      w.modules_to_save.set(id, head);
    }
  }

  /** Unloads adapter `name`: its tensors are freed; the base stays. */
  remove(name: string): void {
    const e = this.served.get(name);
    if (!e) throw new ConfigError(`no adapter '${name}' is served`);
    this.served.delete(name);
    this.dropInference(e.id);
    const before = this.model.parameters();
    this.model.deleteAdapter(e.id);
    const kept = new Set(this.model.parameters());
    for (const t of before) if (!kept.has(t)) this.fold.forget(t);
  }

  /** Class probabilities of `n` prepared images (n × C × H × W floats) under adapter `name`. */
  predict(name: string, data: Float32Array, n: number): Float32Array[] {
    const e = this.served.get(name);
    if (!e) throw new ConfigError(`no adapter '${name}' is served`);
    const [c, h, w] = this.preprocess.inputSize;
    if (this.model.activeAdapter !== e.id) this.model.setAdapter(e.id);
    const run = () => noGrad(() => tidy(() => softmax(this.model.forward(tensor(data, [n, c, h, w])), -1).toArray())) as Float32Array;
    const copies = this.mergedCopiesOf(e.id);
    const probs = withFoldedWeights(() => (copies ? this.model.withMergedCopies(copies, run) : run()), this.fold);
    const k = e.classes.length;
    const out: Float32Array[] = [];
    for (let i = 0; i < n; i++) out.push(probs.slice(i * k, (i + 1) * k));
    return out;
  }

  /** The merged copies of the active adapter `id`, made on first use; null when the cache is off. */
  private mergedCopiesOf(id: string): MergedCopies | null {
    if (this.mergedCacheSize <= 0) return null;
    let copies = this.inference.get(id);
    if (copies) this.inference.delete(id);
    else copies = this.model.mergedCopies();
    this.inference.set(id, copies);
    while (this.inference.size > this.mergedCacheSize) this.dropInference(this.inference.keys().next().value!);
    return copies;
  }

  private dropInference(id: string): void {
    const copies = this.inference.get(id);
    if (!copies) return;
    for (const c of copies.layers.values()) this.fold.forget(c.weight);
    copies.dispose();
    this.inference.delete(id);
  }

  dispose(): void {
    for (const id of [...this.inference.keys()]) this.dropInference(id);
    this.fold.dispose();
    this.model.dispose();
  }
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new ConfigError(`adapter name '${name}' must be 1 to 64 letters, digits, '_' or '-'`);
}
