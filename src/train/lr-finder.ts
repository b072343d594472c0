// The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
// 2017), as fastai's lr_find and PyTorch Lightning's Tuner.lr_find run it: ~100 optimizer steps
// on the training split with the learning rate growing exponentially from 1e-7 to 1, the loss
// smoothed by an exponential moving average with bias correction (β = 0.98, fastai), stopping
// once the smoothed loss exceeds 4× its minimum (Lightning's early_stop_threshold). The model's
// trained tensors are restored afterwards and the test's optimizer is discarded, so training
// starts from the same weights and a fresh optimizer state.
//
// The suggestion is Lightning's (lr_finder.suggestion): the learning rate where the smoothed
// loss falls fastest (the most negative gradient along the log-spaced steps), skipping the first
// 10 points and the last one. Where the curve never falls, fastai's older rule stands in: a
// tenth of the learning rate at the minimum loss.
import type { Module } from '../nn/module.js';
import type { BatchSource } from '../data/batch.js';
import { tidy } from '../tensor/memory.js';
import { crossEntropy } from '../ops/nn.js';
import { AdamW, SGD, type Optimizer } from './optim.js';
import { clipGradNorm, decayGroups } from './trainer.js';
import { ModelSnapshot } from './snapshot.js';

export interface LrFinderOptions {
  startLr?: number;
  endLr?: number;
  steps?: number;
  optimizer?: 'adamw' | 'sgd';
  weightDecay?: number;
  maxGradNorm?: number;
  labelSmoothing?: number;
  /** Labels left out of the loss (segmentation masks: 255). */
  ignoreIndex?: number;
}

export interface LrFinderPoint {
  step: number;
  lr: number;
  loss: number;
  smoothed: number;
}

export interface LrFinderResult {
  /** The suggested learning rate. */
  lr: number;
  rule: 'steepest-descent' | 'min-loss/10';
  steepestLr: number | null;
  minLossLr: number;
  curve: LrFinderPoint[];
}

const BETA = 0.98;
const DIVERGE_FACTOR = 4;
const SKIP_BEGIN = 10;
const SKIP_END = 1;

export async function findLearningRate(model: Module, data: BatchSource, o: LrFinderOptions = {}): Promise<LrFinderResult> {
  const startLr = o.startLr ?? 1e-7;
  const endLr = o.endLr ?? 1;
  const steps = o.steps ?? 100;
  const groups = decayGroups(model, o.weightDecay ?? 0.01);
  const params = groups.flatMap((g) => g.params);
  const optimizer: Optimizer = o.optimizer === 'sgd' ? new SGD(groups, { lr: startLr, momentum: 0.9 }) : new AdamW(groups, { lr: startLr });
  const snapshot = new ModelSnapshot(model);
  const curve: LrFinderPoint[] = [];
  let avg = 0;
  let best = Infinity;
  try {
    model.train();
    // Epoch numbers far from training's, so the shuffles differ from the run's own first epochs.
    for (let epoch = 1_000_000; curve.length < steps; epoch++) {
      let diverged = false;
      for await (const batch of data.epoch(epoch, 0)) {
        const i = curve.length;
        const lr = startLr * (endLr / startLr) ** (i / Math.max(1, steps - 1));
        const loss = tidy(() => {
          optimizer.zeroGrad();
          const l = crossEntropy(model.forward(batch.x), batch.y, { labelSmoothing: o.labelSmoothing ?? 0, ignoreIndex: o.ignoreIndex });
          l.backward();
          return l.item();
        });
        batch.x.dispose();
        batch.y.dispose();
        clipGradNorm(params, o.maxGradNorm ?? 0);
        optimizer.lr = lr;
        optimizer.step();
        avg = BETA * avg + (1 - BETA) * loss;
        const smoothed = avg / (1 - BETA ** (i + 1));
        curve.push({ step: i, lr, loss, smoothed });
        best = Math.min(best, smoothed);
        if (!Number.isFinite(smoothed) || smoothed > DIVERGE_FACTOR * best || curve.length >= steps) {
          diverged = !Number.isFinite(smoothed) || smoothed > DIVERGE_FACTOR * best;
          break;
        }
      }
      if (diverged) break;
    }
  } finally {
    optimizer.zeroGrad();
    for (const t of Object.values(optimizer.stateDict())) t.dispose();
    snapshot.restore();
    snapshot.dispose();
  }
  return suggest(curve);
}

/** Lightning's steepest-descent suggestion on the smoothed curve; fastai's min-loss/10 where there is no descent. */
export function suggest(curve: readonly LrFinderPoint[]): LrFinderResult {
  if (curve.length === 0) throw new Error('lr finder: no step ran (the training split is empty)');
  const finite = curve.filter((p) => Number.isFinite(p.smoothed));
  const min = finite.reduce((a, p) => (p.smoothed < a.smoothed ? p : a), finite[0] ?? curve[0]!);
  const minLossLr = min.lr / 10;
  const window = finite.slice(SKIP_BEGIN, finite.length - SKIP_END);
  let steepest: LrFinderPoint | null = null;
  let steepestGrad = 0;
  for (let i = 0; i < window.length; i++) {
    // numpy.gradient: central differences inside, one-sided at the ends.
    const lo = window[Math.max(0, i - 1)]!;
    const hi = window[Math.min(window.length - 1, i + 1)]!;
    const span = Math.min(window.length - 1, i + 1) - Math.max(0, i - 1);
    if (span === 0) continue;
    const grad = (hi.smoothed - lo.smoothed) / span;
    if (grad < steepestGrad) {
      steepestGrad = grad;
      steepest = window[i]!;
    }
  }
  return steepest
    ? { lr: steepest.lr, rule: 'steepest-descent', steepestLr: steepest.lr, minLossLr, curve: [...curve] }
    : { lr: minLossLr, rule: 'min-loss/10', steepestLr: null, minLossLr, curve: [...curve] };
}
