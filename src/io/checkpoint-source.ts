// Where a checkpoint's weights are: a .safetensors file, a folder holding model.safetensors, or
// `hf:ORG/NAME` from the Hugging Face Hub cache (~/.cache/huggingface/hub or $HF_HUB_CACHE),
// downloaded into it when missing and the Hub is reachable. A folder or Hub snapshot holding
// preprocessor_config.json beside model.safetensors gives the model's preprocessing.
import { WeightsError } from '../errors.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cachedSnapshot, checkRepoId, downloadHubFiles, hubOffline, hubRepoDir, HubUnreachableError, type DownloadProgress } from './hub.js';

export interface CheckpointSourceOptions {
  /** Download progress of hf:ORG/NAME checkpoints; none by default (the graft CLI passes a bar or lines on stderr). */
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
  if (!snapshot) throw new WeightsError(notCachedMessage(repo, ''));
  return join(snapshot, 'model.safetensors');
}

/**
 * The snapshot folder of `ORG/NAME`: the cached one (no request is made), else downloaded from
 * $HF_ENDPOINT (default https://huggingface.co) with $HF_TOKEN. Offline (HF_HUB_OFFLINE, or no
 * response from the Hub) the error says where to put the files.
 */
export async function hubSnapshot(repo: string, opts: CheckpointSourceOptions = {}): Promise<string> {
  checkRepoId(repo);
  const cached = cachedSnapshot(repo);
  if (cached) return cached;
  if (hubOffline()) throw new WeightsError(notCachedMessage(repo, ' (HF_HUB_OFFLINE is set, so graft did not try to download it)'));
  try {
    return await downloadHubFiles(repo, HUB_FILES, { onProgress: opts.onProgress });
  } catch (e) {
    if (e instanceof HubUnreachableError) throw new WeightsError(notCachedMessage(repo, `, and downloading it failed: ${e.message}`));
    throw e;
  }
}

/** Finds the safetensors file of a checkpoint path (a file, a folder holding model.safetensors, or hf:ORG/NAME in the cache). */
export function checkpointFile(path: string): string {
  if (path.startsWith('hf:')) return hubCheckpoint(path.slice(3));
  if (!existsSync(path)) throw new WeightsError(`checkpoint ${path} does not exist; give a .safetensors file, a folder holding model.safetensors, or hf:ORG/NAME`);
  if (statSync(path).isDirectory()) {
    const f = join(path, 'model.safetensors');
    if (!existsSync(f)) throw new WeightsError(`${path} holds no model.safetensors; give the .safetensors file itself or the folder holding model.safetensors`);
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
export async function resolveCheckpoint(path: string, opts: CheckpointSourceOptions = {}): Promise<ResolvedCheckpoint> {
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
