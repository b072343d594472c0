// Recalibrating BatchNorm statistics after training ("precise BN"): the running statistics a
// BatchNorm keeps are an exponential average that, over a short run with a small momentum (Keras
// checkpoints use 0.01), stays close to the pretraining data's statistics while training
// normalised with the new data's batch statistics, so eval would see other activations than
// training did. One pass over the training data in train mode with momentum 1/i for batch i
// replaces them by the average batch statistics of the trained network.
import { BatchNorm2d } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { BatchSource } from '../data/batch.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';

/** BatchNorm layers that normalise with batch statistics in train mode (not frozen). */
export function trainableStatsBatchNorms(model: Module): BatchNorm2d[] {
  return model.namedModules().map(([, m]) => m).filter((m): m is BatchNorm2d => m instanceof BatchNorm2d && !m.frozen);
}

/**
 * Replaces the running statistics of every non-frozen BatchNorm by their average over up to
 * `maxBatches` batches of `data` (epoch 0's order). Returns the number of batches used; the
 * model's train/eval mode and the layers' momenta are restored.
 */
export async function recalibrateBatchNorm(model: Module, data: BatchSource, maxBatches = 200): Promise<number> {
  const bns = trainableStatsBatchNorms(model);
  if (bns.length === 0) return 0;
  const momenta = bns.map((b) => b.momentum);
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  model.train(true);
  let used = 0;
  try {
    for await (const batch of data.epoch(0, 0)) {
      used++;
      for (const b of bns) b.momentum = 1 / used;
      noGrad(() => tidy(() => { model.forward(batch.x); }));
      batch.x.dispose();
      batch.y.dispose();
      if (used >= maxBatches) break;
    }
  } finally {
    bns.forEach((b, i) => (b.momentum = momenta[i]!));
    for (const [m, mode] of modes) m.training = mode;
  }
  return used;
}
