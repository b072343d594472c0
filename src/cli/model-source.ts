// Turning a model name and an optional checkpoint into a backbone with its preprocessing.
// Checkpoints: a .safetensors file, a folder holding model.safetensors, or `hf:ORG/NAME` looked
// up in the Hugging Face Hub cache (~/.cache/huggingface/hub or $HF_HUB_CACHE).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createModel, listModels } from '../models/registry.js';
import type { VisionModel } from '../models/model.js';
import { loadSafetensors } from '../io/safetensors.js';
import { loadVitCheckpoint, type LoadsCheckpoints } from '../models/vit/index.js';

export interface ModelRequest {
  name: string;
  weights?: string;
  imageSize?: number;
}

/** The Hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(): string {
  return process.env['HF_HUB_CACHE'] ?? join(process.env['HF_HOME'] ?? join(homedir(), '.cache', 'huggingface'), 'hub');
}

/** model.safetensors of `ORG/NAME` in the Hub cache layout models--ORG--NAME/snapshots/<rev>/. */
export function hubCheckpoint(repo: string): string {
  const dir = join(hubCacheDir(), `models--${repo.replace('/', '--')}`, 'snapshots');
  const snapshots = existsSync(dir) ? readdirSync(dir).filter((s) => existsSync(join(dir, s, 'model.safetensors'))) : [];
  if (snapshots.length === 0) {
    throw new Error(`${repo} is not in the Hugging Face cache: expected ${join(dir, '<revision>', 'model.safetensors')}. ` +
      `Download it where the Hub is reachable (huggingface-cli download ${repo} model.safetensors config.json) and copy the cache folder here, or pass --weights <file.safetensors>.`);
  }
  // The newest snapshot by modification time.
  snapshots.sort((a, b) => statSync(join(dir, b)).mtimeMs - statSync(join(dir, a)).mtimeMs);
  return join(dir, snapshots[0]!, 'model.safetensors');
}

/** Finds the safetensors file of a checkpoint path (a file, a folder holding model.safetensors, or hf:ORG/NAME). */
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

function loadsCheckpoints(m: VisionModel): m is VisionModel & LoadsCheckpoints {
  return typeof (m as Partial<LoadsCheckpoints>).checkpointLayout === 'function';
}

/** Builds the named backbone; loads `weights` when given (the family's naming schemes, else strict names). */
export async function buildModel(req: ModelRequest): Promise<VisionModel> {
  if (!listModels().includes(req.name)) throw new Error(`unknown model '${req.name}'. Models: ${listModels().join(', ')}`);
  const model = createModel(req.name, { imageSize: req.imageSize });
  if (req.weights) {
    const file = checkpointFile(req.weights);
    const tensors = loadSafetensors(file);
    try {
      if (loadsCheckpoints(model)) loadVitCheckpoint(model, tensors);
      else model.loadStateDict(tensors, { what: `${file} into ${req.name}` });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }
  return model;
}
