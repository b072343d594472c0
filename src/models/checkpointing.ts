// Gradient checkpointing for every family that has it (`--gradient-checkpointing`): a model
// marks itself with `gradientCheckpointing` and runs its blocks (ViTs, Swin) or stages (CNNs)
// through runBlock / runStages, which, while gradients are recorded, keep only each block's
// input and recompute the rest in the backward pass (ops/nn.ts checkpoint).
import { isGradEnabled, stageScope } from '../tensor/autograd.js';
import { checkpoint } from '../ops/nn.js';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

/** A model whose blocks or stages can run under gradient checkpointing. */
export interface CheckpointsBlocks {
  gradientCheckpointing: boolean;
}

/**
 * block.forward through `f`, under gradient checkpointing when `owner` asks for it and gradients
 * are being recorded: the block's activations are recomputed in the backward pass instead of kept.
 * Without a graph the block runs in its own memory scope (stageScope), its intermediates freed on return.
 */
export function runBlock<M extends Module>(owner: CheckpointsBlocks, block: M, h: Tensor, f: (x: Tensor) => Tensor): Tensor {
  if (!isGradEnabled()) return stageScope(() => f(h));
  if (!owner.gradientCheckpointing) return f(h);
  return checkpoint(f, h, block.trainableParameters());
}

/**
 * Runs `stages` in order (each a list of modules applied one after another) with one checkpoint
 * per stage, where `owner` asks for it and gradients are recorded. Returns null otherwise: the
 * caller then runs its usual forward (which may fold and free more under noGrad).
 */
export function runStagesCheckpointed(owner: CheckpointsBlocks, stages: readonly (readonly Module[])[], x: Tensor): Tensor | null {
  if (!owner.gradientCheckpointing || !isGradEnabled()) return null;
  let h = x;
  for (const stage of stages) {
    const f = (t: Tensor) => stage.reduce((acc, m) => m.forward(acc), t);
    h = checkpoint(f, h, stage.flatMap((m) => m.trainableParameters()));
  }
  return h;
}

/** Turns gradient checkpointing on (or off) in every module of `model` that has it; returns how many. */
export function setGradientCheckpointing(model: Module, on: boolean): number {
  let n = 0;
  for (const [, m] of model.namedModules()) {
    const c = m as Partial<CheckpointsBlocks>;
    if (typeof c.gradientCheckpointing === 'boolean') {
      c.gradientCheckpointing = on;
      n++;
    }
  }
  return n;
}
