// Training checkpoints: a folder `checkpoint-<step>` holding the trainable parameters and buffers
// (model.safetensors), the optimizer state (optimizer.safetensors) and trainer_state.json.
// Written into a temporary folder and renamed into place, so a crash never leaves a partial one.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import type { Optimizer } from './optim.js';

export interface TrainerState {
  globalStep: number;
  epoch: number;
  /** Batches of the current epoch already consumed (0 at an epoch boundary). */
  batchInEpoch: number;
  bestMetric: number | null;
  bestStep: number | null;
  epochsWithoutImprovement: number;
  trainSeconds: number;
  optimizerSteps: number;
  logHistory: Record<string, number>[];
}

/** The tensors a checkpoint saves: trainable parameters plus every buffer (BatchNorm statistics). */
export function checkpointTensors(model: Module): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of model.namedParameters()) if (t.requiresGrad) out.set(k, t);
  for (const [k, t] of model.namedBuffers()) out.set(k, t);
  return out;
}

export function saveCheckpoint(outputDir: string, model: Module, optimizer: Optimizer, state: TrainerState, keep = 2): string {
  mkdirSync(outputDir, { recursive: true });
  const name = `checkpoint-${state.globalStep}`;
  const tmp = join(outputDir, `.${name}.tmp`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  saveSafetensors(join(tmp, 'model.safetensors'), checkpointTensors(model), { format: 'pt' });
  saveSafetensors(join(tmp, 'optimizer.safetensors'), optimizer.stateDict());
  writeFileSync(join(tmp, 'trainer_state.json'), JSON.stringify({ ...state, optimizerSteps: optimizer.stepCount() }, null, 2));
  const final = join(outputDir, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  for (const old of listCheckpoints(outputDir).slice(0, -keep)) rmSync(join(outputDir, old), { recursive: true, force: true });
  return final;
}

/** Checkpoint folder names, oldest first. */
export function listCheckpoints(outputDir: string): string[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .filter((n) => /^checkpoint-\d+$/.test(n) && existsSync(join(outputDir, n, 'trainer_state.json')))
    .sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1]));
}

/** Restores model tensors and optimizer state from a checkpoint folder; returns its trainer state. */
export function loadCheckpoint(dir: string, model: Module, optimizer: Optimizer): TrainerState {
  const state = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  const tensors = loadSafetensors(join(dir, 'model.safetensors'));
  const own = checkpointTensors(model);
  const missing = [...own.keys()].filter((k) => !tensors.has(k));
  if (missing.length) throw new Error(`checkpoint ${dir} does not match this model/method: missing ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
  for (const [k, t] of own) {
    const src = tensors.get(k)!;
    if (src.size !== t.size) throw new Error(`checkpoint ${dir}: ${k} has ${src.size} values, the model ${t.size}`);
    t.backend.copy({ ...src.view(), shape: t.shape, strides: t.strides }, t.view());
  }
  for (const t of tensors.values()) t.dispose();
  const opt = loadSafetensors(join(dir, 'optimizer.safetensors'));
  optimizer.loadStateDict(opt, state.optimizerSteps);
  for (const t of opt.values()) t.dispose();
  return state;
}
