// The training loop: gradient accumulation, clipping, warmup + schedule, early stopping,
// metrics.jsonl with the Hugging Face Trainer's key names, atomic checkpoints every epoch,
// --resume, Ctrl-C that saves before exiting, and a stop on a NaN/Inf loss or gradient norm that
// keeps the last good checkpoint. metrics.jsonl always holds the checkpoint's log history and the
// steps after it: a resumed run rewrites it to the checkpoint's, so each step appears once.
import { appendFileSync, mkdirSync } from 'node:fs';
import { RunFolderError, writeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import type { BatchSource } from '../data/batch.js';
export type { Batch, BatchSource } from '../data/batch.js';
import { tidy } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { crossEntropy } from '../ops/nn.js';
import { affine, square } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { AdamW, SGD, assign, type Optimizer, type ParamGroup } from './optim.js';
import { lrMultiplier, type ScheduleKind } from './schedule.js';
import { listCheckpoints, loadCheckpoint, readTrainerState, saveCheckpoint, type TrainerState } from './checkpoint.js';
import type { TrainingContext, TrainingHooks } from '../adapters/method.js';
import { add } from '../ops/elementwise.js';


export type EvalMetrics = Record<string, number>;

export interface TrainOptions {
  epochs: number;
  lr: number;
  optimizer?: 'adamw' | 'sgd';
  weightDecay?: number;
  momentum?: number;
  schedule?: ScheduleKind;
  warmupRatio?: number;
  gradAccumulation?: number;
  /** Clip the global gradient norm to this value; 0 disables. */
  maxGradNorm?: number;
  labelSmoothing?: number;
  /** Labels left out of the loss (segmentation: 255, the masks' ignored pixels). */
  ignoreIndex?: number;
  /** Stop after this many evaluations without improvement of `metricForBest`. */
  earlyStoppingPatience?: number;
  metricForBest?: string;
  outputDir?: string;
  /** true: the newest checkpoint in outputDir; a string: that checkpoint folder. */
  resume?: boolean | string;
  keepCheckpoints?: number;
  log?: (line: string) => void;
  /** Called with a one-line status after every optimizer step (a progress bar). */
  onProgress?: (status: string) => void;
  /** An adapter method's hooks (PeftModel.trainingHooks()): schedule-driven updates and extra loss terms. */
  hooks?: TrainingHooks;
  /** Called with every entry written to metrics.jsonl (a step's loss, an epoch's eval_ metrics). */
  onLog?: (entry: Record<string, number>) => void;
  /**
   * Called once when training has ended (completed or stopped early), before the method's
   * afterTraining hook: where the caller puts back a chosen checkpoint, so that the method's last
   * step (AdaLoRA cutting its tensors to the kept ranks) works on the state that is kept.
   */
  onTrainingEnd?: () => void;
  /** Training images without augmentation in a fixed order, for hooks that calibrate on them (DRA). */
  calibration?: BatchSource;
}

export interface TrainResult {
  state: TrainerState;
  stoppedBy: 'completed' | 'early-stopping' | 'interrupted' | 'diverged';
  lastCheckpoint: string | null;
  message?: string;
}

/** Parameters with rank ≥ 2 get weight decay; biases and norm scales (rank ≤ 1) do not. */
export function decayGroups(model: Module, weightDecay: number): ParamGroup[] {
  const params = model.trainableParameters();
  return [
    { params: params.filter((p) => p.rank >= 2), weightDecay },
    { params: params.filter((p) => p.rank < 2), weightDecay: 0 },
  ];
}

/** Scales gradients so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  return noGrad(() => tidy(() => {
    let total = 0;
    for (const p of params) if (p.grad) total += sum(square(p.grad)).item();
    const norm = Math.sqrt(total);
    if (maxNorm > 0 && norm > maxNorm) {
      const scale = maxNorm / (norm + 1e-6);
      for (const p of params) if (p.grad) assign(p.grad, affine(p.grad, scale));
    }
    return norm;
  }));
}

export async function train(model: Module, data: BatchSource, evaluate: (() => EvalMetrics | Promise<EvalMetrics>) | null, opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const accum = opts.gradAccumulation ?? 1;
  const wd = opts.weightDecay ?? (opts.optimizer === 'sgd' ? 0 : 0.01);
  const hooks = opts.hooks ?? {};
  let params: Tensor[] = [];
  let optimizer!: Optimizer;
  // A fresh optimizer over the trainable tensors now: at the start, and whenever a hook replaced them (its state starts at zero).
  const buildOptimizer = () => {
    const groups = decayGroups(model, wd);
    params = groups.flatMap((g) => g.params);
    if (params.length === 0) throw new Error('train: the model has no trainable parameters; choose a method or unfreeze something');
    optimizer = opts.optimizer === 'sgd' ? new SGD(groups, { lr: opts.lr, momentum: opts.momentum ?? 0.9 }) : new AdamW(groups, { lr: opts.lr });
  };
  const stepsPerEpoch = Math.ceil(data.batchesPerEpoch() / accum);
  const totalSteps = stepsPerEpoch * opts.epochs;
  const warmup = Math.round((opts.warmupRatio ?? 0) * totalSteps);
  const metricsPath = opts.outputDir ? join(opts.outputDir, 'metrics.jsonl') : null;
  if (opts.outputDir) mkdirSync(opts.outputDir, { recursive: true });
  const record = (entry: Record<string, number>) => {
    state.logHistory.push(entry);
    opts.onLog?.(entry);
    if (!metricsPath) return;
    try {
      appendFileSync(metricsPath, JSON.stringify(entry) + '\n');
    } catch (e) {
      throw writeError(e, metricsPath);
    }
  };
  const rewriteMetrics = () => {
    if (metricsPath) writeFileAtomic(metricsPath, state.logHistory.map((e) => JSON.stringify(e) + '\n').join(''));
  };

  let state: TrainerState = {
    globalStep: 0, epoch: 0, batchInEpoch: 0, bestMetric: null, bestStep: null,
    epochsWithoutImprovement: 0, trainSeconds: 0, optimizerSteps: 0, logHistory: [],
  };
  let lastCheckpoint: string | null = null;
  if (opts.resume) {
    if (!opts.outputDir && opts.resume === true) throw new RunFolderError('train: resume needs an output directory with checkpoints');
    const dir = typeof opts.resume === 'string' ? opts.resume : (() => {
      const all = listCheckpoints(opts.outputDir!);
      if (!all.length) throw new RunFolderError(`--resume found no checkpoint in ${opts.outputDir} (the run was stopped before its first one); start it again with --overwrite`);
      return join(opts.outputDir!, all[all.length - 1]!);
    })();
    // A method whose structure training changed rebuilds it before the tensors load.
    if (hooks.restoreState) hooks.restoreState(readTrainerState(dir).hookState);
    buildOptimizer();
    state = loadCheckpoint(dir, model, optimizer);
    lastCheckpoint = dir;
    log(`resumed from ${dir} (epoch ${state.epoch + 1}, step ${state.globalStep})`);
  }
  else buildOptimizer();
  rewriteMetrics();
  const save = () => {
    if (!opts.outputDir) return;
    if (hooks.saveState) state.hookState = hooks.saveState();
    lastCheckpoint = saveCheckpoint(opts.outputDir, model, optimizer, state, opts.keepCheckpoints ?? 2);
  };

  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('\ninterrupted: saving a checkpoint before exiting (press Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  const diverged = (what: string, t0: number): TrainResult => {
    state.trainSeconds += (performance.now() - t0) / 1000;
    // The step being computed is the one after the last completed (globalStep counts completed steps).
    const clipping = (opts.maxGradNorm ?? 0) > 0 ? `gradient clipping is on (train.maxGradNorm ${opts.maxGradNorm})` : 'gradient clipping is off (set train.maxGradNorm, e.g. 1)';
    const message = `training stopped: ${what} at epoch ${state.epoch + 1}, step ${state.globalStep + 1}. ` +
      `Lower the learning rate (now ${opts.lr}); ${clipping}.` + (lastCheckpoint ? ` The last good checkpoint is ${lastCheckpoint}.` : '');
    log(message);
    return { state, stoppedBy: 'diverged', lastCheckpoint, message };
  };
  const metric = opts.metricForBest ?? 'accuracy';
  let changed = false;
  const calibration = opts.calibration;
  const calibrationImages = calibration ? async function* () {
    for await (const b of calibration.epoch(0, 0)) {
      b.y.dispose();
      try {
        yield b.x;
      } finally {
        b.x.dispose();
      }
    }
  } : undefined;
  const ctx = (): TrainingContext => ({
    step: state.globalStep, totalSteps, epoch: state.epoch, totalEpochs: opts.epochs, calibrationImages, log, parametersChanged: () => { changed = true; },
  });
  const afterHook = () => {
    if (!changed) return;
    changed = false;
    buildOptimizer();
  };
  const trainableCount = () => model.trainableParameters().reduce((a, t) => a + t.size, 0);
  const trainableHistory = () => state.logHistory.filter((e) => e['trainable_params'] !== undefined && e['loss'] === undefined).map((e) => e['trainable_params']!);
  await hooks.beforeTraining?.(ctx());
  afterHook();
  try {
    while (state.epoch < opts.epochs) {
      model.train();
      const t0 = performance.now();
      let lossSum = 0;
      let lossCount = 0;
      let micro = 0;
      for await (const batch of data.epoch(state.epoch, state.batchInEpoch)) {
        if (micro % accum === 0) hooks.beforeStep?.(ctx());
        const loss = tidy(() => {
          const l = crossEntropy(model.forward(batch.x), batch.y, { labelSmoothing: opts.labelSmoothing ?? 0, ignoreIndex: opts.ignoreIndex });
          const extra = hooks.extraLoss?.(ctx()) ?? null;
          const total = extra ? add(l, extra) : l;
          (accum > 1 ? affine(total, 1 / accum) : total).backward();
          return total.item();
        });
        batch.x.dispose();
        batch.y.dispose();
        if (!Number.isFinite(loss)) return diverged(`the loss became ${loss}`, t0);
        lossSum += loss;
        lossCount++;
        micro++;
        state.batchInEpoch++;
        const lastOfEpoch = state.batchInEpoch === data.batchesPerEpoch();
        if (micro % accum === 0 || lastOfEpoch) {
          const gradNorm = clipGradNorm(params, opts.maxGradNorm ?? 0);
          // A non-finite norm would turn every parameter into NaN at this step.
          if (!Number.isFinite(gradNorm)) return diverged(`the gradient norm became ${gradNorm}`, t0);
          optimizer.lr = opts.lr * lrMultiplier(opts.schedule ?? 'cosine', state.globalStep, totalSteps, warmup);
          optimizer.step();
          state.globalStep++;
          hooks.afterStep?.(ctx());
          optimizer.zeroGrad();
          const entry = { loss: lossSum / lossCount, grad_norm: gradNorm, learning_rate: optimizer.lr, epoch: state.epoch + state.batchInEpoch / data.batchesPerEpoch(), step: state.globalStep };
          record(entry);
          const elapsed = (performance.now() - t0) / 1000;
          const done = state.batchInEpoch / data.batchesPerEpoch();
          opts.onProgress?.(`epoch ${state.epoch + 1}/${opts.epochs} ${(100 * done).toFixed(0)}% loss ${entry.loss.toFixed(4)} lr ${optimizer.lr.toExponential(2)} ${((state.batchInEpoch * data.size) / data.batchesPerEpoch() / Math.max(elapsed, 1e-9)).toFixed(1)} img/s ETA ${(elapsed / done - elapsed).toFixed(0)}s`);
          lossSum = 0;
          lossCount = 0;
        }
        // Only at an optimizer step: a checkpoint holds no half-accumulated gradient.
        if (interrupted && (micro % accum === 0 || lastOfEpoch)) {
          state.trainSeconds += (performance.now() - t0) / 1000;
          save();
          return { state, stoppedBy: 'interrupted', lastCheckpoint };
        }
      }
      state.trainSeconds += (performance.now() - t0) / 1000;
      if (evaluate) {
        const t1 = performance.now();
        model.eval();
        const metrics = await evaluate();
        const runtime = (performance.now() - t1) / 1000;
        record({ ...Object.fromEntries(Object.entries(metrics).map(([k, v]) => [`eval_${k}`, v])), eval_runtime: runtime, epoch: state.epoch + 1, step: state.globalStep });
        const value = metrics[metric];
        if (value !== undefined && (state.bestMetric === null || value > state.bestMetric)) {
          state.bestMetric = value;
          state.bestStep = state.globalStep;
          state.epochsWithoutImprovement = 0;
        } else state.epochsWithoutImprovement++;
      }
      // The saved state points at the start of the next epoch.
      state.epoch++;
      state.batchInEpoch = 0;
      // Trainable parameters during this epoch (before a hook may change them for the next).
      const trainable = trainableCount();
      await hooks.afterEpoch?.(ctx());
      afterHook();
      record({ trainable_params: trainable, ...(hooks.epochMetrics?.(ctx()) ?? {}), epoch: state.epoch, step: state.globalStep });
      save();
      if (opts.earlyStoppingPatience !== undefined && state.epochsWithoutImprovement >= opts.earlyStoppingPatience && state.epoch < opts.epochs) {
        log(`early stopping: no improvement of ${metric} for ${state.epochsWithoutImprovement} evaluations`);
        opts.onTrainingEnd?.();
        hooks.afterTraining?.(ctx());
        return { state, stoppedBy: 'early-stopping', lastCheckpoint };
      }
    }
    opts.onTrainingEnd?.();
    hooks.afterTraining?.(ctx());
    const perEpoch = trainableHistory();
    const avg = perEpoch.length ? perEpoch.reduce((a, b) => a + b, 0) / perEpoch.length : trainableCount();
    record({ train_runtime: state.trainSeconds, train_samples_per_second: (data.size * opts.epochs) / Math.max(state.trainSeconds, 1e-9), avg_trainable_params: avg, step: state.globalStep });
    return { state, stoppedBy: 'completed', lastCheckpoint };
  } finally {
    process.off('SIGINT', onSigint);
  }
}
