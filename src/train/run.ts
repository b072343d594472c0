// The run folder: what it holds, how it is written and how its model is rebuilt. Training and
// every command that reads a run (eval, predict, merge) build the model with the same function
// from the same run.json, then load the trained tensors strictly, so the rebuilt model computes
// what the trained one computed at the end of training, for every method, initialisation (PiSSA
// recomputes the same residual base), head kind and BatchNorm state.
//
//   run.json             { config, classes }: the validated configuration and the class names
//   adapter/             adapter_config.json + adapter_model.safetensors (adapter methods, PEFT layout)
//   model.safetensors    trained parameters and every buffer (scratch, linear-probe, full)
//   checkpoint-<step>/   training checkpoints (train/checkpoint.ts)
//   metrics.jsonl, report.json, report.md, eval.md, eval.json
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyMethod } from '../adapters/apply.js';
import { PeftModel } from '../adapters/peft-model.js';
import { getAdapterMethod, isAdapterMethod } from '../adapters/registry.js';
import type { AdapterConfig } from '../adapters/method.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { Module } from '../nn/module.js';
import { StateDictError } from '../nn/module.js';
import type { PreprocessConfig } from '../data/preprocess.js';
import { Generator, manualSeed } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeEq } from '../tensor/shape.js';
import { buildModel } from '../models/build-model.js';
import type { DownloadProgress } from '../io/hub.js';
import { checkpointTensors } from './checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { methodSection, runConfigSchema, type RunConfig } from './run-config.js';
import { defaultImageSize, resolveModelDefaults } from './defaults.js';

export const RUN_FILE = 'run.json';
export const ADAPTER_DIR = 'adapter';
export const MODEL_FILE = 'model.safetensors';

export interface RunManifest {
  config: RunConfig;
  classes: string[];
}

export interface RunModelOptions {
  /** Download progress when the run's weights are hf:ORG/NAME and not cached yet (default: silent). */
  onProgress?: (p: DownloadProgress) => void;
  /** The adapter configuration to build instead of the one run.json gives (a finished run's saved one). */
  adapterConfig?: AdapterConfig;
  /** Sides of a few training images: with no data.imageSize set, much smaller images pick a smaller input (train/defaults.ts). */
  imageSides?: readonly number[];
}

export interface RunModel {
  model: Module;
  preprocess: PreprocessConfig;
  /** The configuration with every model-dependent default filled in (what run.json holds). */
  config: RunConfig;
}

/** The adapter configuration a run's method uses, from its shared and own sections (null for the baselines). */
export function runAdapterConfig(c: RunConfig) {
  if (!isAdapterMethod(c.method)) return null;
  const method = getAdapterMethod(c.method);
  const targets = c.adapter.targets;
  if (targets === undefined) throw new Error('runAdapterConfig: the configuration has no adapter targets; build the model with buildRunModel, which fills them in');
  return method.configFromRun({ ...c.adapter, targets }, methodSection(c, method.optionsKey));
}

/**
 * The model a run trains: the backbone (pretrained unless `scratch`), its new head for the run's
 * classes, and the method applied. The one constructor of a run's model, for training and
 * reloading. Every random initialisation is drawn from the run's seed, so a backbone without a
 * checkpoint (whose frozen weights are not saved) is rebuilt bit for bit too.
 */
export async function buildRunModel(config: RunConfig, classes: string[], opts: RunModelOptions = {}): Promise<RunModel> {
  const build = (imageSize: number | undefined) => {
    manualSeed(config.train.seed);
    return buildModel({
      name: config.model, weights: config.method === 'scratch' ? undefined : config.weights, imageSize, overrides: config.modelOverrides, onProgress: opts.onProgress,
    });
  };
  let backbone = await build(config.data.imageSize);
  let c = config;
  if (config.data.imageSize === undefined && opts.imageSides) {
    const [, h, w] = backbone.preprocess.inputSize;
    const size = defaultImageSize(Math.min(h, w), opts.imageSides);
    if (size !== undefined) {
      backbone.dispose();
      backbone = await build(size);
    }
    c = { ...c, data: { ...c.data, imageSize: size ?? Math.min(h, w) } };
  }
  c = resolveModelDefaults(c, backbone, isAdapterMethod(c.method));
  const adapterConfig = opts.adapterConfig ?? runAdapterConfig(c) ?? undefined;
  const generator = new Generator(c.train.seed);
  const model = applyMethod(backbone, c.method, { numClasses: classes.length, head: c.head, headFrom: c.headFrom, generator, adapterConfig });
  return { model, preprocess: backbone.preprocess, config: c };
}

export function writeRunManifest(dir: string, manifest: RunManifest): void {
  writeFileAtomic(join(dir, RUN_FILE), JSON.stringify(manifest, null, 2));
}

export function readRunManifest(dir: string): RunManifest {
  const file = join(dir, RUN_FILE);
  if (!existsSync(file)) throw new Error(`${dir} is not a graft run folder (no ${RUN_FILE}); pass the --output folder of 'graft train'`);
  let saved: { config?: unknown; classes?: unknown };
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as typeof saved;
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); the run folder is damaged`);
  }
  const parsed = runConfigSchema().safeParse(saved.config);
  if (!parsed.success) throw new Error(`${file}: the configuration does not validate: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  if (!Array.isArray(saved.classes) || saved.classes.some((x) => typeof x !== 'string')) throw new Error(`${file}: 'classes' must be a list of class names`);
  return { config: parsed.data, classes: saved.classes as string[] };
}

/** Writes the trained tensors: the adapter folder for an adapter method, model.safetensors otherwise. */
export function saveTrainedModel(dir: string, model: Module): void {
  if (model instanceof PeftModel) model.saveAdapter(join(dir, ADAPTER_DIR));
  else saveSafetensors(join(dir, MODEL_FILE), checkpointTensors(model), { format: 'pt' });
}

/** The file holding a run's trained tensors. */
export function trainedWeightsFile(dir: string, model: Module): string {
  return model instanceof PeftModel ? join(dir, ADAPTER_DIR, 'adapter_model.safetensors') : join(dir, MODEL_FILE);
}

/** Copies every trained tensor of a baseline run from `file`: each must be present with its shape. */
function loadTrainedTensors(model: Module, file: string): void {
  const want = checkpointTensors(model);
  const tensors = loadSafetensors(file);
  try {
    const result = { missingKeys: [] as string[], unexpectedKeys: [] as string[], mismatched: [] as { key: string; expected: readonly number[]; got: readonly number[] }[] };
    for (const [k, t] of want) {
      const src = tensors.get(k);
      if (!src) result.missingKeys.push(k);
      else if (!shapeEq(src.shape, t.shape)) result.mismatched.push({ key: k, expected: t.shape, got: src.shape });
    }
    for (const k of tensors.keys()) if (!want.has(k)) result.unexpectedKeys.push(k);
    if (result.missingKeys.length || result.unexpectedKeys.length || result.mismatched.length) throw new StateDictError(result, file);
    for (const [k, t] of want) t.backend.copy((tensors.get(k) as Tensor).view(), t.view());
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

export interface LoadedRun extends RunModel, RunManifest {}

/**
 * The configuration saved beside a run's adapter tensors (adapter/adapter_config.json), or null
 * for a baseline or a run without one. It, not run.json, describes the trained adapter: training
 * may decide its structure (AdaLoRA's kept ranks, DyLoRA's chosen rank), and the method rebuilds
 * that structure from it, as PEFT's from_pretrained does.
 */
export function savedAdapterConfig(dir: string, c: RunConfig): AdapterConfig | null {
  if (!isAdapterMethod(c.method)) return null;
  const file = join(dir, ADAPTER_DIR, 'adapter_config.json');
  if (!existsSync(file)) return null;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); the run folder is damaged`);
  }
  const method = getAdapterMethod(c.method);
  if (!method.readsPeftJson(json)) throw new Error(`${file} holds a peft_type ${JSON.stringify(json['peft_type'])} adapter, not the run's method ${c.method}; the run folder is damaged`);
  return method.fromPeftJson(json, file);
}

/** Rebuilds a finished run's model (in eval mode) from its folder. */
export async function loadRun(dir: string, opts: RunModelOptions = {}): Promise<LoadedRun> {
  const manifest = readRunManifest(dir);
  const adapterConfig = savedAdapterConfig(dir, manifest.config) ?? undefined;
  const { model, preprocess } = await buildRunModel(manifest.config, manifest.classes, { ...opts, adapterConfig });
  try {
    const file = trainedWeightsFile(dir, model);
    if (!existsSync(file)) throw new Error(`${dir} has no trained weights (${file}); the run may not have finished — resume it with graft train --resume`);
    if (model instanceof PeftModel) model.loadAdapterWeights(file);
    else loadTrainedTensors(model, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  return { ...manifest, model, preprocess };
}
