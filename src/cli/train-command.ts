// `graft train`: data → backbone → method → training → test report and a small adapter file.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PeftModel } from '../adapters/peft-model.js';
import { getAdapterMethod, isAdapterMethod } from '../adapters/registry.js';
import { ImageBatchSource } from '../data/loader.js';
import { DEFAULT_AUGMENT } from '../data/transforms.js';
import { evaluate, measureSpeed } from '../eval/evaluate.js';
import { writeFileAtomic } from '../io/atomic.js';
import { describeTrainable } from '../nn/module.js';
import { reportMarkdown } from '../report/tables.js';
import { memory } from '../tensor/memory.js';
import { manualSeed } from '../tensor/random.js';
import { train } from '../train/trainer.js';
import { recalibrateBatchNorm, trainableStatsBatchNorms } from '../train/batchnorm.js';
import { buildRunModel, runAdapterConfig, saveTrainedModel, writeRunManifest } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';
import { prepareData } from './datasets.js';
import { checkResumedClasses, exitOnInterrupt, openRunFolder, resumeHint, trainingInterrupted, type RunFolder } from './run-guard.js';
import { downloadProgressPrinter } from './download-progress.js';
import { progressPrinter } from './progress.js';

export interface RunSummary {
  model: string;
  method: string;
  target: string;
  rank: number | null;
  trainableParams: number;
  totalParams: number;
  trainablePercent: number;
  trainSeconds: number;
  accuracy: number;
  weightedF1: number;
  macroF1: number;
  mAP: number;
  latencyMs: number;
  throughput: number;
  peakMemoryMB: number;
  outputDir: string;
}

export async function runTraining(c: RunConfig, log: (line: string) => void = console.log, opts: { resume?: boolean; overwrite?: boolean } = {}): Promise<RunSummary> {
  const folder = openRunFolder(c.output ?? join('runs', `${c.model}-${c.method}`), c, opts);
  try {
    return await trainInFolder(c, folder, log, opts);
  } finally {
    folder.release();
  }
}

async function trainInFolder(c: RunConfig, folder: RunFolder, log: (line: string) => void, opts: { resume?: boolean }): Promise<RunSummary> {
  const outputDir = folder.dir;
  let allowInterrupt = exitOnInterrupt(folder, () => `interrupted before training began; nothing was written${opts.resume ? ` (the run can still be resumed: ${resumeHint(outputDir)})` : ''}`);
  const bar = progressPrinter();
  manualSeed(c.train.seed);
  const report = (file: string, reason: string) => log(`warning: skipped ${file}: ${reason}`);
  const unreadable = (file: string, reason: string) => report(file, `unreadable image (${reason})`);
  const data = await prepareData(c, (file, reason) => (reason.startsWith('not ') || reason.startsWith('a symbolic') ? report(file, reason) : unreadable(file, reason)));
  checkResumedClasses(folder, data.classes);
  const numClasses = data.classes.length;
  const { model, preprocess: pre } = await buildRunModel(c, data.classes, { onProgress: downloadProgressPrinter() });
  // What `graft eval`, `predict` and `merge` need to rebuild this run's model, written once the
  // configuration, the data and the model are known to be good (a resumed run keeps its own).
  if (!folder.previous) writeRunManifest(outputDir, { config: c, classes: data.classes });
  const trainable = describeTrainable(model);
  log(`${c.model} · ${c.method} · ${data.train.samples.length} training / ${data.val.samples.length} validation / ${data.test.samples.length} test images, ${numClasses} classes`);
  log(trainable.line);
  const loaderOpts = { preprocess: pre, onBadImage: c.data.onBadImage, report };
  const trainSource = new ImageBatchSource(data.train.dataset, data.train.samples, { ...loaderOpts, batchSize: c.train.batchSize, shuffle: true, seed: c.train.seed, augment: c.train.augment ? DEFAULT_AUGMENT : null });
  const valSource = data.val.samples.length ? new ImageBatchSource(data.val.dataset, data.val.samples, { ...loaderOpts, batchSize: 16 }) : null;
  const validate = valSource ? async () => {
    const r = await evaluate(model, valSource, numClasses);
    return { accuracy: r.report.accuracy, f1: r.report.weightedF1 };
  } : null;
  allowInterrupt();
  const result = await train(model, trainSource, validate, {
    epochs: c.train.epochs, lr: c.train.lr, optimizer: c.train.optimizer, weightDecay: c.train.weightDecay, schedule: c.train.schedule,
    warmupRatio: c.train.warmupRatio, gradAccumulation: c.train.gradAccumulation, maxGradNorm: c.train.maxGradNorm,
    labelSmoothing: c.train.labelSmoothing, earlyStoppingPatience: c.train.earlyStopping, outputDir, log, resume: opts.resume, onProgress: (s) => bar.update(s),
    hooks: model instanceof PeftModel ? model.trainingHooks() : undefined,
  });
  bar.done();
  if (result.stoppedBy === 'interrupted') throw trainingInterrupted(folder, result.lastCheckpoint);
  if (result.stoppedBy === 'diverged') throw new Error(result.message ?? 'training diverged');
  // Training is over and checkpointed: a Ctrl-C from here on keeps that checkpoint to resume from.
  allowInterrupt = exitOnInterrupt(folder, () => `interrupted after training, before the results were written; the trained state is in ${result.lastCheckpoint}: ${resumeHint(outputDir)} to evaluate it`);
  if (c.train.recalibrateBatchNorm && trainableStatsBatchNorms(model).length > 0) {
    const calib = new ImageBatchSource(data.train.dataset, data.train.samples, { ...loaderOpts, batchSize: c.train.batchSize });
    const n = await recalibrateBatchNorm(model, calib);
    log(`BatchNorm statistics recalibrated on the training images (${n} batches)`);
  }
  const testSource = new ImageBatchSource(data.test.dataset, data.test.samples, { ...loaderOpts, batchSize: 16 });
  log(`evaluating on ${data.test.samples.length} test images…`);
  const t0 = performance.now();
  const { report: r } = await evaluate(model, testSource, numClasses);
  const evalSeconds = (performance.now() - t0) / 1000;
  const timeIt = async () => measureSpeed(model, pre.inputSize, { batches: [8, 16], repeats: 3 });
  const speed = model instanceof PeftModel ? await model.withMerged(timeIt) : await timeIt();
  saveTrainedModel(outputDir, model);
  const adapterConfig = runAdapterConfig(c);
  const targets = adapterConfig?.targetModules;
  const summary: RunSummary = {
    model: c.model, method: c.method, target: targets !== undefined ? (Array.isArray(targets) ? targets.join(',') : targets) : c.method === 'linear-probe' ? 'head' : 'all',
    rank: adapterConfig && isAdapterMethod(c.method) ? getAdapterMethod(c.method).rank(adapterConfig) : null, trainableParams: trainable.trainable, totalParams: trainable.total, trainablePercent: trainable.percent,
    trainSeconds: result.state.trainSeconds, accuracy: r.accuracy, weightedF1: r.weightedF1, macroF1: r.macroF1, mAP: r.mAP,
    latencyMs: speed.latencyMs, throughput: speed.throughput, peakMemoryMB: memory().peakBytes / 2 ** 20, outputDir,
  };
  writeFileAtomic(join(outputDir, 'report.json'), JSON.stringify({ summary, classes: data.classes, metrics: r, evalSeconds }, null, 2));
  writeFileAtomic(join(outputDir, 'report.md'), reportMarkdown(`${c.model} · ${c.method}`, data.classes, r, {
    'trainable params': `${trainable.trainable.toLocaleString('en-US')} (${trainable.percent.toFixed(4)}%)`,
    'training time (s)': summary.trainSeconds.toFixed(1), 'latency, batch 1 (ms)': speed.latencyMs.toFixed(1), [`throughput, batch ${speed.bestBatch} (img/s)`]: speed.throughput.toFixed(1),
  }));
  allowInterrupt();
  return summary;
}
