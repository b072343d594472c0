// `graft train --task segmentation`: pairs → backbone + decode head → method → per-pixel
// training → test mIoU and a report. The same run folder as classification (run.json, adapter/
// or model.safetensors, checkpoints, metrics.jsonl, report.*), rebuilt by loadRun.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PeftModel } from '../adapters/peft-model.js';
import { checkedPairs, IGNORE_INDEX, segmentationFolder, splitSegmentation, type SegmentationDataset } from '../data/segmentation.js';
import { DEFAULT_SEGMENTATION_AUGMENT, SegmentationBatchSource } from '../data/segmentation-loader.js';
import { evaluateSegmentation, type SegmentationReport } from '../eval/segmentation.js';
import { writeFileAtomic } from '../io/atomic.js';
import { describeTrainable } from '../nn/module.js';
import { segmentationMarkdown } from '../report/segmentation.js';
import { setGradientCheckpointing } from '../models/checkpointing.js';
import { manualSeed } from '../tensor/random.js';
import { memory } from '../tensor/memory.js';
import { recalibrateBatchNorm, trainableStatsBatchNorms } from '../train/batchnorm.js';
import { defaultLr, planSteps, settingsLine } from '../train/defaults.js';
import { useDeterministicKernels } from '../train/deterministic.js';
import { findLearningRate } from '../train/lr-finder.js';
import { withComputePrecision } from '../ops/precision.js';
import { BestCheckpoint } from '../train/best-checkpoint.js';
import { buildRunModel, saveTrainedModel, writeRunManifest } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';
import { train } from '../train/trainer.js';
import { DataError } from '../errors.js';
import { downloadProgressPrinter } from './download-progress.js';
import { progressPrinter } from './progress.js';
import { checkResumedClasses, exitOnInterrupt, resumeHint, trainingInterrupted, type RunFolder } from './run-guard.js';

export interface SegmentationSummary {
  task: 'segmentation';
  model: string;
  method: string;
  head: string;
  trainableParams: number;
  totalParams: number;
  trainablePercent: number;
  trainSeconds: number;
  /** Training images per second over the whole run (forward, backward, step, data). */
  trainImagesPerSecond: number;
  mIoU: number;
  pixelAccuracy: number;
  meanAccuracy: number;
  peakMemoryMB: number;
  outputDir: string;
}

/** Opens a segmentation data source and keeps the usable pairs (bad ones reported, or fatal). */
export async function openSegmentationData(source: string, onBad: 'skip' | 'fatal', report: (file: string, reason: string) => void): Promise<{ dataset: SegmentationDataset; pairs: SegmentationDataset['samples'] }> {
  const dataset = segmentationFolder(source);
  for (const s of dataset.skipped) {
    if (onBad === 'fatal') throw new DataError(`${s.file}: ${s.reason}; add the file or set data.onBadImage to 'skip'`);
    report(s.file, s.reason);
  }
  const pairs = await checkedPairs(dataset, dataset.samples, onBad, report);
  if (pairs.length === 0) throw new DataError(`${source} has no usable image / mask pairs`);
  return { dataset, pairs };
}

export async function trainSegmentationInFolder(config: RunConfig, folder: RunFolder, log: (line: string) => void, opts: { resume?: boolean }): Promise<SegmentationSummary> {
  const outputDir = folder.dir;
  let allowInterrupt = exitOnInterrupt(folder, () => `interrupted before training began; nothing was written${opts.resume ? ` (the run can still be resumed: ${resumeHint(outputDir)})` : ''}`);
  if (config.train.deterministic) useDeterministicKernels();
  manualSeed(config.train.seed);
  const report = (file: string, reason: string) => log(`warning: skipped ${file}: ${reason}`);
  const onBad = config.data.onBadImage;
  const { dataset, pairs } = await openSegmentationData(config.data.source, onBad, report);
  const testData = config.data.test ? await openSegmentationData(config.data.test, onBad, report) : null;
  if (testData && testData.dataset.classes.join('\n') !== dataset.classes.join('\n')) {
    throw new DataError(`data.test ${config.data.test} names other classes (${testData.dataset.classes.join(', ')}) than ${config.data.source} (${dataset.classes.join(', ')}); the masks' indices would mean other things`);
  }
  // As for classification: a fifth of the training pairs validates each epoch and the best epoch
  // (validation mIoU) is kept, once there are enough pairs for that to mean something.
  const valFraction = config.data.valFraction ?? (pairs.length - (testData ? 0 : Math.round(0.2 * pairs.length)) >= 25 ? 0.2 : 0);
  const split = splitSegmentation(pairs, { seed: config.train.seed, valFraction, test: testData?.pairs, layoutSplit: dataset.splits });
  checkResumedClasses(folder, dataset.classes);
  const built = await buildRunModel({ ...config, data: { ...config.data, valFraction } }, dataset.classes, { onProgress: downloadProgressPrinter() });
  const { model, preprocess } = built;
  if (built.config.train.gradientCheckpointing) setGradientCheckpointing(model, true);
  const t = built.config.train;
  const plan = planSteps(t, split.train.length);
  const common = { preprocess, onBadImage: onBad, report };
  const trainSource = new SegmentationBatchSource(dataset, split.train, { ...common, batchSize: t.batchSize, shuffle: true, seed: t.seed, augment: t.augment ? DEFAULT_SEGMENTATION_AUGMENT : null });
  const valSource = split.val.length ? new SegmentationBatchSource(dataset, split.val, { ...common, batchSize: 8 }) : null;
  let lr: number;
  if (t.lr === 'auto') {
    log('lr auto: a learning-rate range test on the training split (100 steps, 1e-7 → 1)…');
    const found = await withComputePrecision(t.precision, () => findLearningRate(model, trainSource, { optimizer: t.optimizer, weightDecay: t.weightDecay, maxGradNorm: t.maxGradNorm, labelSmoothing: t.labelSmoothing, ignoreIndex: IGNORE_INDEX }));
    lr = Number(found.lr.toPrecision(2));
    log(`lr auto: ${lr} (${found.rule})`);
  } else lr = t.lr ?? defaultLr(built.config.method);
  const c = { ...built.config, train: { ...t, lr, epochs: plan.epochs, steps: plan.steps } };
  if (!folder.previous) writeRunManifest(outputDir, { config: c, classes: dataset.classes });
  const trainable = describeTrainable(model);
  log(`${c.model} · ${c.method} · segmentation (${c.segmentation?.head} head) · ${dataset.layout} layout · ${split.train.length} training / ${split.val.length} validation / ${split.test.length} test pairs (test: ${split.testFrom}), ${dataset.classes.length} classes`);
  log(trainable.line);
  log(settingsLine(c, plan, split.train.length));
  const bar = progressPrinter();
  const validate = valSource ? async () => {
    const r = await evaluateSegmentation(model, valSource, dataset.classes);
    return { mIoU: r.mIoU, pixel_accuracy: r.pixelAccuracy, mean_accuracy: r.meanAccuracy };
  } : null;
  const hooks = model instanceof PeftModel ? model.trainingHooks() : undefined;
  const best = new BestCheckpoint(model, outputDir);
  if (opts.resume) best.resume();
  let restored = false;
  allowInterrupt();
  const result = await withComputePrecision(c.train.precision, () => train(model, trainSource, validate, {
    epochs: c.train.epochs, lr: c.train.lr, optimizer: c.train.optimizer, weightDecay: c.train.weightDecay, schedule: c.train.schedule,
    warmupRatio: c.train.warmupRatio, gradAccumulation: c.train.gradAccumulation, maxGradNorm: c.train.maxGradNorm,
    labelSmoothing: c.train.labelSmoothing, ignoreIndex: IGNORE_INDEX, earlyStoppingPatience: c.train.earlyStopping, metricForBest: 'mIoU',
    outputDir, log, resume: opts.resume, onProgress: (s) => bar.update(s), hooks,
    calibration: new SegmentationBatchSource(dataset, split.train, { ...common, batchSize: t.batchSize, shuffle: true, seed: t.seed }),
    onLog: (entry) => {
      // The epoch's validation entry, written with the model as validated: mIoU chooses, pixel accuracy breaks ties.
      const mIoU = entry['eval_mIoU'];
      if (mIoU !== undefined) best.offer({ epoch: Math.round(entry['epoch'] ?? 0), step: entry['step'] ?? 0, accuracy: mIoU, loss: 1 - (entry['eval_pixel_accuracy'] ?? 0) });
    },
    onTrainingEnd: () => {
      restored = best.restore();
      best.dispose();
    },
  }));
  bar.done();
  if (result.stoppedBy !== 'completed' && result.stoppedBy !== 'early-stopping') best.dispose();
  if (result.stoppedBy === 'interrupted') throw trainingInterrupted(folder, result.lastCheckpoint);
  if (result.stoppedBy === 'diverged') throw new Error(result.message ?? 'training diverged');
  const chosen = best.best;
  if (restored && chosen) log(`kept the best validation checkpoint: epoch ${chosen.epoch} of ${c.train.epochs} (step ${chosen.step}, validation mIoU ${(100 * chosen.accuracy).toFixed(1)}%)`);
  best.dispose();
  allowInterrupt = exitOnInterrupt(folder, () => `interrupted after training, before the results were written; the trained state is in ${result.lastCheckpoint}: ${resumeHint(outputDir)} to evaluate it`);
  if (c.train.recalibrateBatchNorm && trainableStatsBatchNorms(model).length > 0) {
    const n = await recalibrateBatchNorm(model, new SegmentationBatchSource(dataset, split.train, { ...common, batchSize: t.batchSize, dropSingleLast: true }));
    log(`BatchNorm statistics recalibrated on the training images (${n} batches)`);
  }
  const testSource = new SegmentationBatchSource(testData?.dataset ?? dataset, split.test, { ...common, batchSize: 8 });
  log(`evaluating on ${split.test.length} test pairs…`);
  const t0 = performance.now();
  const r: SegmentationReport = await evaluateSegmentation(model, testSource, dataset.classes);
  const evalSeconds = (performance.now() - t0) / 1000;
  saveTrainedModel(outputDir, model);
  best.removeSaved();
  const final = describeTrainable(model);
  const summary: SegmentationSummary = {
    task: 'segmentation', model: c.model, method: c.method, head: c.segmentation?.head ?? 'uper',
    trainableParams: final.trainable, totalParams: final.total, trainablePercent: final.percent,
    trainSeconds: result.state.trainSeconds, trainImagesPerSecond: (split.train.length * c.train.epochs) / Math.max(result.state.trainSeconds, 1e-9),
    mIoU: r.mIoU, pixelAccuracy: r.pixelAccuracy, meanAccuracy: r.meanAccuracy, peakMemoryMB: memory().peakBytes / 2 ** 20, outputDir,
  };
  const training = { steps: plan.steps, epochs: plan.epochs, lr: c.train.lr, inputSize: preprocess.inputSize, testFrom: split.testFrom };
  writeFileAtomic(join(outputDir, 'report.json'), JSON.stringify({ summary, classes: dataset.classes, metrics: r, evalSeconds, training }, null, 2));
  writeFileAtomic(join(outputDir, 'report.md'), segmentationMarkdown(`${c.model} · ${c.method} · ${summary.head} head`, r, {
    'trainable params': `${final.trainable.toLocaleString('en-US')} (${final.percent.toFixed(4)}%)`,
    'training time (s)': summary.trainSeconds.toFixed(1),
    'training images/s': summary.trainImagesPerSecond.toFixed(2),
    'input size': `${preprocess.inputSize[1]}×${preprocess.inputSize[2]}`,
  }));
  allowInterrupt();
  return summary;
}
