// Training checkpoints: a folder `checkpoint-<step>` holding the trainable parameters and buffers
// (model.safetensors), the optimizer state (optimizer.safetensors) and trainer_state.json, which
// also holds every random state training draws from (the default generator: dropout, DropPath),
// so a resumed run continues the very stream an uninterrupted one draws. The loader's shuffling
// and augmentation are seeded by (seed, epoch, position) and need no state.
// Written into a temporary folder and renamed into place, so a crash never leaves a partial one.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { loadSafetensors, loadTensorsInto, saveSafetensors } from '../io/safetensors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { defaultGenerator } from '../tensor/random.js';
import { RunFolderError, writeError } from '../errors.js';
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
  /** Random states at the checkpoint (Generator.getState()). */
  rng?: { default: number[] };
  /** An adapter method's own training state (TrainingHooks.saveState: DRA's ranks and history). */
  hookState?: unknown;
}

/** The tensors a checkpoint saves: trainable parameters plus every buffer (BatchNorm statistics). */
export function checkpointTensors(model: Module): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of model.namedParameters()) if (t.requiresGrad) out.set(k, t);
  for (const [k, t] of model.namedBuffers()) out.set(k, t);
  return out;
}

export function saveCheckpoint(outputDir: string, model: Module, optimizer: Optimizer, state: TrainerState, keep = 2): string {
  const name = `checkpoint-${state.globalStep}`;
  const tmp = join(outputDir, `.${name}.tmp`);
  const final = join(outputDir, name);
  try {
    mkdirSync(outputDir, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    saveSafetensors(join(tmp, 'model.safetensors'), checkpointTensors(model), { format: 'pt' });
    saveSafetensors(join(tmp, 'optimizer.safetensors'), optimizer.stateDict());
    writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify({ ...state, optimizerSteps: optimizer.stepCount(), rng: { default: defaultGenerator.getState() } }, null, 2));
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
  } catch (e) {
    // A failed save (a full disk) leaves the previous checkpoints and no partial folder.
    rmSync(tmp, { recursive: true, force: true });
    throw writeError(e, final);
  }
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

export function readTrainerState(dir: string): TrainerState {
  const file = join(dir, 'trainer_state.json');
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(file, 'utf8')) as TrainerState;
  } catch (e) {
    throw new RunFolderError(`checkpoint ${dir} is damaged: ${file} cannot be read (${(e as Error).message}); delete the folder to resume from the one before, or start again with --overwrite`);
  }
  const counts = ['globalStep', 'epoch', 'batchInEpoch', 'optimizerSteps'] as const;
  const bad = counts.filter((k) => !Number.isInteger(state?.[k]) || state[k] < 0);
  if (bad.length || !Array.isArray(state.logHistory)) throw new RunFolderError(`checkpoint ${dir} is damaged: ${file} lacks ${bad.length ? bad.join(', ') : 'logHistory'}; delete the folder to resume from the one before, or start again with --overwrite`);
  return state;
}

/**
 * Restores model tensors (strictly: every key, shape and dtype kind), the optimizer state and the
 * random states from a checkpoint folder; returns its trainer state.
 */
export function loadCheckpoint(dir: string, model: Module, optimizer: Optimizer): TrainerState {
  const state = readTrainerState(dir);
  loadTensorsInto(checkpointTensors(model), join(dir, 'model.safetensors'), 'checkpoint');
  const opt = loadSafetensors(join(dir, 'optimizer.safetensors'));
  try {
    optimizer.loadStateDict(opt, state.optimizerSteps);
  } finally {
    for (const t of opt.values()) t.dispose();
  }
  if (state.rng) defaultGenerator.setState(state.rng.default);
  return state;
}
