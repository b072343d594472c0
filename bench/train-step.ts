// The training step the method benchmarks time, as the trainer runs it: the method's hooks,
// forward, cross-entropy (+ the method's extra loss), backward, AdamW.
import { performance } from 'node:perf_hooks';
import { AdamW, crossEntropy, noGrad, tidy, add, type Tensor } from '../src/index.js';
import type { CrossEntropyOptions } from '../src/ops/nn.js';
import type { Module } from '../src/nn/module.js';
import type { TrainingHooks } from '../src/adapters/method.js';
import { decayGroups } from '../src/train/trainer.js';
import { measure, type Sample, type TimingPolicy } from './timing.js';

/** Times training steps of `model` on one batch; returns the median step and the first loss. */
export async function timeTrainingSteps(model: Module, hooks: TrainingHooks, x: Tensor, y: Tensor, policy: TimingPolicy, loss: CrossEntropyOptions = {}): Promise<Sample & { loss0?: number }> {
  const totalSteps = policy.warmup + policy.maxRuns;
  let step = 0;
  // DRA calibrates on the step's batch and then replaces its factors: the optimizer is built after.
  const ctx = () => ({ step, totalSteps, epoch: 0, totalEpochs: 1, calibrationImages: async function* () { yield x; } });
  await hooks.beforeTraining?.(ctx());
  const optimizer = new AdamW(decayGroups(model, 0.01), { lr: 1e-4 });
  const losses: number[] = [];
  const sample = await measure(() => {
    const t0 = performance.now();
    hooks.beforeStep?.(ctx());
    const l0 = tidy(() => {
      const l = crossEntropy(model.forward(x), y, loss);
      const extra = hooks.extraLoss?.(ctx()) ?? null;
      const total = extra ? add(l, extra) : l;
      total.backward();
      return total.item();
    });
    optimizer.step();
    step++;
    noGrad(() => hooks.afterStep?.(ctx()));
    optimizer.zeroGrad();
    losses.push(l0);
    return performance.now() - t0;
  }, policy);
  return { ...sample, loss0: losses[0] };
}
