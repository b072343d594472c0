// Turning a model name and an optional checkpoint into a backbone with its preprocessing.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createModel, listModels } from '../models/registry.js';
import type { VisionModel } from '../models/model.js';
import { loadSafetensors } from '../io/safetensors.js';

export interface ModelRequest {
  name: string;
  weights?: string;
  imageSize?: number;
}

/** Finds the safetensors file of a checkpoint path (a file, or a folder holding model.safetensors). */
export function checkpointFile(path: string): string {
  if (!existsSync(path)) throw new Error(`checkpoint ${path} does not exist`);
  if (statSync(path).isDirectory()) {
    const f = join(path, 'model.safetensors');
    if (!existsSync(f)) throw new Error(`${path} holds no model.safetensors`);
    return f;
  }
  return path;
}

/** Builds the named backbone; loads `weights` (strict: every key must fit) when given. */
export async function buildModel(req: ModelRequest): Promise<VisionModel> {
  if (!listModels().includes(req.name)) throw new Error(`unknown model '${req.name}'. Models: ${listModels().join(', ')}`);
  const model = createModel(req.name, { imageSize: req.imageSize });
  if (req.weights) {
    const file = checkpointFile(req.weights);
    const tensors = loadSafetensors(file);
    try {
      model.loadStateDict(tensors, { what: `${file} into ${req.name}` });
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
  }
  return model;
}
