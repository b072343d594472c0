// Turning a model name and an optional checkpoint into a backbone with its preprocessing.
// Checkpoints: a .safetensors file, a folder holding model.safetensors, or `hf:ORG/NAME` from
// the Hugging Face Hub cache (~/.cache/huggingface/hub or $HF_HUB_CACHE), downloaded into it
// when missing and the Hub is reachable. A folder or Hub snapshot holding preprocessor_config.json
// beside model.safetensors gives the model's preprocessing.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createModel, listModels } from '../models/registry.js';
import type { VisionModel } from '../models/model.js';
import { loadSafetensors } from '../io/safetensors.js';
import { cachedSnapshot, checkRepoId, downloadHubFiles, hubOffline, hubRepoDir, HubUnreachableError, type DownloadProgress } from '../io/hub.js';
import { readPreprocessorConfig, type PreprocessConfig } from '../data/preprocess.js';
import { CheckpointFormatError, loadVitCheckpoint, resolveCheckpointNames, type LoadsCheckpoints } from '../models/vit/index.js';
import { classifierPath, cnnCheckpointClasses, loadCnnCheckpoint } from '../models/cnn/checkpoint.js';
import type { Tensor } from '../tensor/tensor.js';
import { downloadProgressPrinter } from './download-progress.js';

export { hubCacheDir } from '../io/hub.js';

export interface ModelRequest {
  name: string;
  weights?: string;
  imageSize?: number;
  /** Classes of the head; default: the checkpoint head's when weights are given (1000 when it has none), else 1000. */
  numClasses?: number;
  /** When numClasses differs from the checkpoint's head: drop that head and keep a freshly initialised one (otherwise an error). */
  reinitHead?: boolean;
  /** Overrides of the named configuration's fields (createModel's). */
  overrides?: Record<string, unknown>;
  /** Download progress of hf:ORG/NAME checkpoints (default: a bar or plain lines on stderr). */
  onProgress?: (p: DownloadProgress) => void;
}

/** The files fetched for hf:ORG/NAME: the weights, and the two configs where the repository has them. */
export const HUB_FILES = [{ name: 'model.safetensors' }, { name: 'config.json', optional: true }, { name: 'preprocessor_config.json', optional: true }] as const;

function notCachedMessage(repo: string, why: string): string {
  const dir = join(hubRepoDir(repo), 'snapshots');
  return `${repo} is not in the Hugging Face cache: expected ${join(dir, '<revision>', 'model.safetensors')}${why}. ` +
    `Download it where the Hub is reachable (huggingface-cli download ${repo} model.safetensors config.json preprocessor_config.json) and copy the cache folder here, or pass --weights <file.safetensors>.`;
}

/** model.safetensors of `ORG/NAME` in the Hub cache layout models--ORG--NAME/snapshots/<rev>/ (no download). */
export function hubCheckpoint(repo: string): string {
  const snapshot = cachedSnapshot(repo);
  if (!snapshot) throw new Error(notCachedMessage(repo, ''));
  return join(snapshot, 'model.safetensors');
}

/**
 * The snapshot folder of `ORG/NAME`: the cached one (no request is made), else downloaded from
 * $HF_ENDPOINT (default https://huggingface.co) with $HF_TOKEN. Offline (HF_HUB_OFFLINE, or no
 * response from the Hub) the error says where to put the files.
 */
export async function hubSnapshot(repo: string, opts: { onProgress?: (p: DownloadProgress) => void } = {}): Promise<string> {
  checkRepoId(repo);
  const cached = cachedSnapshot(repo);
  if (cached) return cached;
  if (hubOffline()) throw new Error(notCachedMessage(repo, ' (HF_HUB_OFFLINE is set, so graft did not try to download it)'));
  try {
    return await downloadHubFiles(repo, HUB_FILES, { onProgress: opts.onProgress ?? downloadProgressPrinter() });
  } catch (e) {
    if (e instanceof HubUnreachableError) throw new Error(notCachedMessage(repo, `, and downloading it failed: ${e.message}`));
    throw e;
  }
}

/** Finds the safetensors file of a checkpoint path (a file, a folder holding model.safetensors, or hf:ORG/NAME in the cache). */
export function checkpointFile(path: string): string {
  if (path.startsWith('hf:')) return hubCheckpoint(path.slice(3));
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  if (statSync(path).isDirectory()) {
    const f = join(path, 'model.safetensors');
    if (!existsSync(f)) throw new Error(`${path} holds no model.safetensors`);
    return f;
  }
  return path;
}

export interface ResolvedCheckpoint {
  /** The safetensors file. */
  file: string;
  /** preprocessor_config.json beside it, for a folder or Hub snapshot that has one. */
  preprocessorConfig: string | null;
}

/** checkpointFile, downloading hf:ORG/NAME when it is not cached, and the preprocessor_config.json of a folder or snapshot. */
export async function resolveCheckpoint(path: string, opts: { onProgress?: (p: DownloadProgress) => void } = {}): Promise<ResolvedCheckpoint> {
  let dir: string | null = null;
  let file: string;
  if (path.startsWith('hf:')) {
    dir = await hubSnapshot(path.slice(3), opts);
    file = join(dir, 'model.safetensors');
  } else {
    file = checkpointFile(path);
    if (statSync(path).isDirectory()) dir = path;
  }
  const pre = dir && join(dir, 'preprocessor_config.json');
  return { file, preprocessorConfig: pre && existsSync(pre) ? pre : null };
}

function loadsCheckpoints(m: VisionModel): m is VisionModel & LoadsCheckpoints {
  return typeof (m as Partial<LoadsCheckpoints>).checkpointLayout === 'function';
}

/** The model's head weight key, or null when it has none. */
function headWeightKey(model: VisionModel): string | null {
  const key = loadsCheckpoints(model) ? `${model.checkpointLayout().headPrefix}weight` : `${classifierPath(model) ?? ''}.weight`;
  return model.stateDict().has(key) ? key : null;
}

/** Classes of the checkpoint's head as this model reads the checkpoint, null when it has none. */
function checkpointClasses(model: VisionModel, tensors: Map<string, Tensor>): number | null {
  if (!loadsCheckpoints(model)) return cnnCheckpointClasses(model, tensors);
  const layout = model.checkpointLayout();
  const { names } = resolveCheckpointNames(layout, [...tensors.keys()]);
  for (const [k, n] of names) {
    if (n !== `${layout.headPrefix}weight`) continue;
    const t = tensors.get(k)!;
    return t.rank === 2 ? t.shape[0]! : null;
  }
  return null;
}

/**
 * Builds the named backbone; loads `weights` when given (the ViT family's naming schemes; for the
 * other families their own names, after stripping a `module.`/`model.`/`backbone.` prefix). The
 * preprocessing is the checkpoint's preprocessor_config.json where its folder or Hub snapshot has
 * one, else the family's default. Without numClasses the head takes the checkpoint's class count.
 */
export async function buildModel(req: ModelRequest): Promise<VisionModel> {
  if (!listModels().includes(req.name)) throw new Error(`unknown model '${req.name}'. Models: ${listModels().join(', ')}`);
  if (!req.weights) return createModel(req.name, { imageSize: req.imageSize, numClasses: req.numClasses, overrides: req.overrides });
  const ckpt = await resolveCheckpoint(req.weights, { onProgress: req.onProgress });
  const preprocess: PreprocessConfig | undefined = ckpt.preprocessorConfig ? readPreprocessorConfig(ckpt.preprocessorConfig) : undefined;
  const tensors = loadSafetensors(ckpt.file);
  const create = (numClasses: number | undefined) => createModel(req.name, { imageSize: req.imageSize, numClasses, overrides: req.overrides, preprocess });
  let model = create(req.numClasses);
  try {
    const theirs = checkpointClasses(model, tensors);
    const key = headWeightKey(model);
    const ours = key ? model.stateDict().get(key)!.shape[0]! : null;
    if (theirs !== null && ours !== null && theirs !== ours) {
      if (req.numClasses === undefined) {
        model.dispose();
        model = create(theirs);
      } else if (!req.reinitHead) {
        throw new CheckpointFormatError(
          `${ckpt.file}: the head has ${theirs} classes in the checkpoint and ${ours} in the model ${req.name}. Leave numClasses out (or set it to ${theirs}) ` +
          `to keep the checkpoint's head, or pass reinitHead: true to let graft re-initialise the head for ${ours} classes.`,
        );
      }
    }
    if (loadsCheckpoints(model)) loadVitCheckpoint(model, tensors);
    else loadCnnCheckpoint(model, tensors, { name: req.name, what: ckpt.file, reinitHead: req.reinitHead });
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
