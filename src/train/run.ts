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
//   similarity.json/.svg CKA between the target layers on the calibration images (DRA)
//   report.html, figures/  the run's page and its pictures (src/report)
//   tensorboard/         TensorBoard event files (--report-to tensorboard)
//   .graft.lock          { pid, host } of the process writing the folder, while it writes
//
// One folder holds one run: `train` takes the lock, then claims the folder (claimRunFolder): an
// empty folder, or the same run for --resume, or any graft run cleared by --overwrite.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, OutputPathError, RunFolderError } from '../errors.js';
import { applyMethod } from '../adapters/apply.js';
import { PeftModel } from '../adapters/peft-model.js';
import { getAdapterMethod, isAdapterMethod } from '../adapters/registry.js';
import type { AdapterConfig } from '../adapters/method.js';
import { loadTensorsInto, saveSafetensors } from '../io/safetensors.js';
import type { Module } from '../nn/module.js';
import type { PreprocessConfig } from '../data/preprocess.js';
import { Generator, manualSeed } from '../tensor/random.js';
import { buildModel } from '../models/build-model.js';
import { SegmentationModel } from '../models/segmentation.js';
import type { DownloadProgress } from '../io/hub.js';
import { checkpointTensors } from './checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { methodSection, runConfigSchema, type RunConfig } from './run-config.js';
import { defaultImageSize, resolveModelDefaults } from './defaults.js';

export const RUN_FILE = 'run.json';
export const ADAPTER_DIR = 'adapter';
export const MODEL_FILE = 'model.safetensors';
export const METRICS_FILE = 'metrics.jsonl';
export const LOCK_FILE = '.graft.lock';

/** Whether `name` is an entry graft writes in a run folder (what --overwrite clears). */
export function isRunEntry(name: string): boolean {
  return [RUN_FILE, ADAPTER_DIR, MODEL_FILE, METRICS_FILE, LOCK_FILE, 'report.json', 'report.md', 'eval.md', 'eval.json', 'lr_find.json', 'lr_find.svg', 'best.safetensors', 'similarity.json', 'similarity.svg', 'report.html', 'figures', 'tensorboard', 'predictions'].includes(name) || /^adapter-r\d+$/.test(name) ||
    /^checkpoint-\d+$/.test(name) || /^\.checkpoint-\d+\.tmp$/.test(name) || /^\..+\.\d+\.tmp$/.test(name);
}

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
  const segmentation = config.task === 'segmentation';
  if (config.quantize && !isAdapterMethod(config.method)) throw new ConfigError(`quantize: a 4-bit base is frozen, so it needs an adapter method; '${config.method}' trains the base weights (use --method lora, or leave quantize out)`);
  // A 4-bit base is quantised layer by layer as the checkpoint is read.
  const quantize = config.quantize ? { quantType: config.quantize.type, doubleQuant: config.quantize.doubleQuant, blocksize: config.quantize.blocksize } : undefined;
  const build = (imageSize: number | undefined) => {
    manualSeed(config.train.seed);
    return buildModel({
      name: config.model, weights: config.method === 'scratch' ? undefined : config.weights, imageSize, overrides: config.modelOverrides, onProgress: opts.onProgress, quantize,
      // A segmentation backbone has no classifier: its decode head reads the feature maps.
      ...(segmentation ? { numClasses: 0, reinitHead: true } : {}),
    });
  };
  let backbone = await build(config.data.imageSize);
  let c = config;
  if (config.data.imageSize === undefined && opts.imageSides) {
    const [, h, w] = backbone.preprocess.inputSize;
    const size = defaultImageSize(Math.min(h, w), opts.imageSides, backbone.preprocess.minSize);
    if (size !== undefined) {
      backbone.dispose();
      backbone = await build(size);
    }
    c = { ...c, data: { ...c.data, imageSize: size ?? Math.min(h, w) } };
  }
  c = resolveModelDefaults(c, backbone, isAdapterMethod(c.method));
  const adapterConfig = opts.adapterConfig ?? runAdapterConfig(c) ?? undefined;
  const generator = new Generator(c.train.seed);
  if (segmentation) {
    const seg = { head: c.segmentation?.head ?? 'uper', channels: c.segmentation?.channels ?? 64 };
    c = { ...c, segmentation: seg };
    const segModel = new SegmentationModel(backbone, { ...seg, numClasses: classes.length, generator });
    const model = applyMethod(segModel, c.method, { numClasses: classes.length, generator, adapterConfig, headPath: 'decode_head' });
    return { model, preprocess: backbone.preprocess, config: c };
  }
  const model = applyMethod(backbone, c.method, { numClasses: classes.length, head: c.head, headFrom: c.headFrom, generator, adapterConfig });
  return { model, preprocess: backbone.preprocess, config: c };
}

export function writeRunManifest(dir: string, manifest: RunManifest): void {
  writeFileAtomic(join(dir, RUN_FILE), JSON.stringify(manifest, null, 2));
}

export function readRunManifest(dir: string): RunManifest {
  const file = join(dir, RUN_FILE);
  if (!existsSync(file)) throw new RunFolderError(`${dir} is not a graft run folder (no ${RUN_FILE}); pass the --output folder of 'graft train'`);
  let saved: { config?: unknown; classes?: unknown };
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as typeof saved;
    if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) throw new Error('expected an object { config, classes }');
  } catch (e) {
    throw new RunFolderError(`${file} is not valid JSON (${(e as Error).message}); the run folder is damaged: train it again with --overwrite`);
  }
  const parsed = runConfigSchema().safeParse(saved.config);
  if (!parsed.success) throw new RunFolderError(`${file}: the configuration does not validate (the run folder is damaged or from another graft version): ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  if (!Array.isArray(saved.classes) || saved.classes.length < 2 || saved.classes.some((x) => typeof x !== 'string')) throw new RunFolderError(`${file}: 'classes' must be a list of at least two class names; the run folder is damaged`);
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
    throw new RunFolderError(`${file} is not valid JSON (${(e as Error).message}); the run folder is damaged`);
  }
  const method = getAdapterMethod(c.method);
  if (!method.readsPeftJson(json)) throw new RunFolderError(`${file} holds a peft_type ${JSON.stringify(json['peft_type'])} adapter, not the run's method ${c.method}; the run folder is damaged`);
  return method.fromPeftJson(json, file);
}

/** Rebuilds a finished run's model (in eval mode) from its folder. */
export async function loadRun(dir: string, opts: RunModelOptions = {}): Promise<LoadedRun> {
  const manifest = readRunManifest(dir);
  const adapterConfig = savedAdapterConfig(dir, manifest.config) ?? undefined;
  const { model, preprocess } = await buildRunModel(manifest.config, manifest.classes, { ...opts, adapterConfig });
  try {
    const file = trainedWeightsFile(dir, model);
    if (!existsSync(file)) throw new RunFolderError(`${dir} has no trained weights (${file}); the run has not finished: finish it with graft train --resume --output ${dir}`);
    if (model instanceof PeftModel) model.loadAdapterWeights(file);
    else loadTensorsInto(checkpointTensors(model), file, 'trained weights');
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  return { ...manifest, model, preprocess };
}

/** The configuration's fields that differ between two runs (dotted paths), `output` aside. */
export function configDifferences(a: RunConfig, b: RunConfig): string[] {
  const leftToRun = (y: unknown) => y === undefined || y === 'auto';
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, path: string) => {
    if (typeof x === 'object' && x !== null && typeof y === 'object' && y !== null && !Array.isArray(x) && !Array.isArray(y)) {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) walk((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
    } else if (leftToRun(y)) {
      // Left out now (or 'auto'): the run's own value, decided when it started, stands.
    } else if (JSON.stringify(x) !== JSON.stringify(y)) out.push(`${path} (${JSON.stringify(x) ?? 'unset'} in the run, ${JSON.stringify(y) ?? 'unset'} now)`);
  };
  // Where logs go is not part of what the run computes.
  walk({ ...a, output: undefined, reportTo: undefined }, { ...b, output: undefined, reportTo: undefined }, '');
  return out;
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns on some pseudo file systems
 * (it retries /proc/x forever), so a bad --output would hang instead of failing.
 */
function makeFolder(dir: string): void {
  const missing: string[] = [];
  let cur = resolve(dir);
  while (!existsSync(cur)) {
    missing.unshift(cur);
    const parent = resolve(cur, '..');
    if (parent === cur) break;
    cur = parent;
  }
  for (const d of missing) mkdirSync(d);
}

export interface RunLock {
  readonly file: string;
  release(): void;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Creates the run folder if needed and takes its lock: `.graft.lock` holding this process's pid,
 * created exclusively. A lock whose process is gone (killed) is stale and taken over; one held by a
 * live process refuses. Failing to create the folder or the lock file is a bad --output and says why.
 */
export function lockRunFolder(dir: string): RunLock {
  try {
    makeFolder(dir);
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
  } catch (e) {
    throw new OutputPathError(`cannot use ${dir} as the run folder: ${(e as NodeJS.ErrnoException).code === 'ENOTDIR' || (e as NodeJS.ErrnoException).code === 'EEXIST' ? 'a file is in the way' : (e as Error).message}; choose a writable --output folder`);
  }
  const file = join(dir, LOCK_FILE);
  const me = JSON.stringify({ pid: process.pid, host: hostname() });
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new OutputPathError(`cannot write in the run folder ${dir} (${code ?? (e as Error).message}); choose a writable --output folder`);
      let holder: { pid?: unknown; host?: unknown } = {};
      try {
        holder = JSON.parse(readFileSync(file, 'utf8')) as typeof holder;
      } catch {
        // a lock cut short by a kill between create and write: nobody holds it
      }
      const pid = typeof holder.pid === 'number' ? holder.pid : null;
      if (pid !== null && pid !== process.pid && (holder.host !== hostname() || alive(pid))) {
        throw new RunFolderError(`${dir} is in use by another graft process (pid ${pid}${holder.host !== hostname() ? ` on ${String(holder.host)}` : ''}); wait for it to finish or choose another --output. If that process is gone, delete ${file}`);
      }
      rmSync(file, { force: true });
      continue;
    }
    try {
      writeSync(fd, me);
    } finally {
      closeSync(fd);
    }
    const release = () => {
      try {
        if (readFileSync(file, 'utf8') === me) unlinkSync(file);
      } catch {
        // already gone (the folder was removed)
      }
    };
    process.once('exit', release);
    return { file, release: () => { process.off('exit', release); release(); } };
  }
  throw new RunFolderError(`${dir}: another process keeps taking the lock ${file}; choose another --output`);
}

export interface ClaimOptions {
  resume?: boolean;
  overwrite?: boolean;
}

/**
 * Makes `dir` (locked) this run's folder, before anything is written: an empty folder; with
 * --resume, the run of the same configuration; with --overwrite, any graft run, cleared. Refuses a
 * folder holding another run or files graft did not write, naming what to do.
 */
export function claimRunFolder(dir: string, config: RunConfig, opts: ClaimOptions): RunManifest | null {
  if (opts.resume && opts.overwrite) throw new RunFolderError('--resume continues the run in the folder and --overwrite replaces it; pass one of them');
  const entries = readdirSync(dir).filter((n) => n !== LOCK_FILE);
  const foreign = entries.filter((n) => !isRunEntry(n));
  const hasRun = entries.includes(RUN_FILE);
  if (opts.resume) {
    if (!hasRun) throw new RunFolderError(`${dir} holds no run to resume (no ${RUN_FILE}); start without --resume`);
    const manifest = readRunManifest(dir);
    const diff = configDifferences(manifest.config, config);
    if (diff.length) throw new RunFolderError(`--resume continues the run in ${dir} with its own configuration, but this one differs: ${diff.join('; ')}. Pass the run's configuration, or --overwrite to start a new run there`);
    // Temporary files of a killed writer (an atomic write or checkpoint cut short) are garbage.
    const isTemp = (n: string) => /^\..+\.tmp$/.test(n) && isRunEntry(n);
    for (const n of entries.filter(isTemp)) rmSync(join(dir, n), { recursive: true, force: true });
    for (const sub of [ADAPTER_DIR, 'figures']) {
      const d = join(dir, sub);
      if (existsSync(d)) for (const n of readdirSync(d).filter(isTemp)) rmSync(join(d, n), { force: true });
    }
    return manifest;
  }
  if (entries.length === 0) return null;
  if (foreign.length && !hasRun) throw new OutputPathError(`${dir} is not empty and not a graft run folder (it holds ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}); choose an empty or new --output folder`);
  if (!opts.overwrite) {
    let what = 'files of an unfinished run';
    if (hasRun) {
      try {
        const m = readRunManifest(dir);
        what = `a run of ${m.config.model} · ${m.config.method}`;
      } catch {
        what = 'a damaged run';
      }
    }
    throw new RunFolderError(`${dir} already holds ${what}; pass --resume to continue it with the same configuration, --overwrite to replace it, or choose another --output`);
  }
  for (const n of entries) if (isRunEntry(n)) rmSync(join(dir, n), { recursive: true, force: true });
  return null;
}

/** Whether `path` is or lies inside one of the run folder's own entries (what merge --output must not replace). */
export function isInsideRun(dir: string, path: string): boolean {
  const root = resolve(dir);
  const p = resolve(path);
  if (p === root) return true;
  if (!p.startsWith(root + '/')) return false;
  return isRunEntry(p.slice(root.length + 1).split('/')[0]!);
}
