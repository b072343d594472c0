// `graft train`: data → backbone → method → training → test report and a small adapter file.
import { bf16Unavailable, withComputePrecision } from '../ops/precision.js';
import type { Module } from '../nn/module.js';
import { isQuantized, quantStateBytes } from '../nn/quant4.js';
import { bytesPerElement } from '../tensor/dtype.js';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PeftModel } from '../adapters/peft-model.js';
import { getAdapterMethod, isAdapterMethod } from '../adapters/registry.js';
import { ImageBatchSource } from '../data/loader.js';
import { evaluate, measureSpeed } from '../eval/evaluate.js';
import { writeFileAtomic } from '../io/atomic.js';
import { TensorBoardWriter } from '../io/tensorboard.js';
import { describeTrainable } from '../nn/module.js';
import { reportMarkdown } from '../report/tables.js';
import { writeSimilarity } from '../report/heatmap.js';
import { machineInfo } from '../report/html.js';
import { writeRunReport } from '../report/study-output.js';
import { memory } from '../tensor/memory.js';
import { train } from '../train/trainer.js';
import { recalibrateBatchNorm, trainableStatsBatchNorms } from '../train/batchnorm.js';
import { runAdapterConfig, saveTrainedModel, writeRunManifest } from '../train/run.js';
import { BestCheckpoint } from '../train/best-checkpoint.js';
import { LearningWatch } from '../train/learning-watch.js';
import type { RunConfig } from '../train/run-config.js';
import { prepareRun } from './train-setup.js';
import { checkResumedClasses, exitOnInterrupt, openRunFolder, resumeHint, trainingInterrupted, type RunFolder } from './run-guard.js';
import { progressPrinter } from './progress.js';
import { chooseRank, perRankLine } from './choose-rank.js';
import { trainSegmentationInFolder, type SegmentationSummary } from './train-segmentation.js';

export interface RunSummary {
  model: string;
  method: string;
  target: string;
  rank: number | null;
  trainableParams: number;
  /** Trainable parameters averaged over the epochs (Avg_Parm; equal to trainableParams unless a method changes them, DRA). */
  avgTrainableParams: number;
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

export async function runTraining(config: RunConfig & { task: 'segmentation' }, log?: (line: string) => void, opts?: { resume?: boolean; overwrite?: boolean }): Promise<SegmentationSummary>;
export async function runTraining(config: RunConfig, log?: (line: string) => void, opts?: { resume?: boolean; overwrite?: boolean }): Promise<RunSummary>;
export async function runTraining(config: RunConfig, log: (line: string) => void = console.log, opts: { resume?: boolean; overwrite?: boolean } = {}): Promise<RunSummary | SegmentationSummary> {
  const folder = openRunFolder(config.output ?? join('runs', `${config.model}-${config.method}`), config, opts);
  try {
    // A resumed run continues with its own resolved configuration (run.json): the settings left
    // to graft were decided when it started, and claiming the folder checked the given ones.
    const c = folder.previous ? { ...folder.previous.config, output: config.output, reportTo: config.reportTo } : config;
    if (c.task === 'segmentation') return await trainSegmentationInFolder(c, folder, log, opts);
    return await trainInFolder(c, folder, log, opts);
  } finally {
    folder.release();
  }
}

async function trainInFolder(config: RunConfig, folder: RunFolder, log: (line: string) => void, opts: { resume?: boolean }): Promise<RunSummary> {
  const outputDir = folder.dir;
  let allowInterrupt = exitOnInterrupt(folder, () => `interrupted before training began; nothing was written${opts.resume ? ` (the run can still be resumed: ${resumeHint(outputDir)})` : ''}`);
  const bar = progressPrinter();
  const run = await prepareRun(config, outputDir, log);
  const { data, model, preprocess: pre, loaderOpts, trainSource, valSource, plan } = run;
  checkResumedClasses(folder, data.classes);
  const c = run.config;
  const numClasses = data.classes.length;
  // What `graft eval`, `predict` and `merge` need to rebuild this run's model, written once the
  // configuration, the data and the model are known to be good (a resumed run keeps its own).
  if (!folder.previous) writeRunManifest(outputDir, { config: c, classes: data.classes });
  const trainable = describeTrainable(model);
  log(`${c.model} · ${c.method} · ${data.train.samples.length} training / ${data.val.samples.length} validation / ${data.test.samples.length} test images, ${numClasses} classes`);
  log(trainable.line);
  const best = new BestCheckpoint(model, outputDir);
  if (opts.resume) best.resume();
  let restored = false;
  const validate = valSource ? async () => {
    const r = await evaluate(model, valSource, numClasses);
    return { accuracy: r.report.accuracy, f1: r.report.weightedF1, loss: meanNll(r.predictions.labels, r.predictions.scores, numClasses) };
  } : null;
  const warmupSteps = Math.round(c.train.warmupRatio * plan.steps);
  const watch = new LearningWatch({ numClasses, totalSteps: plan.steps, warmupSteps, lr: c.train.lr, method: c.method, log: (l) => { bar.done(); log(l); } });
  const hooks = model instanceof PeftModel ? model.trainingHooks() : undefined;
  // Training images without augmentation, shuffled once by the run's seed: what DRA calibrates on.
  const calibration = new ImageBatchSource(data.train.dataset, data.train.samples, { ...loaderOpts, batchSize: c.train.batchSize, shuffle: true, seed: c.train.seed });
  // TensorBoard: the Trainer's scalars, appended as they are logged (a resumed run adds a file).
  const board = c.reportTo.includes('tensorboard') ? new TensorBoardWriter(join(outputDir, 'tensorboard')) : null;
  if (board) log(`TensorBoard event file: ${board.file} (tensorboard --logdir ${join(outputDir, 'tensorboard')})`);
  allowInterrupt();
  // Validation inside training runs under the same precision; the test evaluation below is fp32.
  const result = await withComputePrecision(c.train.precision, () => train(model, trainSource, validate, {
    epochs: c.train.epochs, lr: c.train.lr, optimizer: c.train.optimizer, weightDecay: c.train.weightDecay, schedule: c.train.schedule,
    warmupRatio: c.train.warmupRatio, gradAccumulation: c.train.gradAccumulation, maxGradNorm: c.train.maxGradNorm,
    labelSmoothing: c.train.labelSmoothing, earlyStoppingPatience: c.train.earlyStopping, outputDir, log, resume: opts.resume, onProgress: (s) => bar.update(s),
    hooks, calibration,
    onLog: (entry) => {
      // An epoch's eval_ entry is written right after validation, with the model as validated.
      const accuracy = entry['eval_accuracy'];
      if (accuracy !== undefined) {
        best.offer({ epoch: Math.round(entry['epoch'] ?? 0), step: entry['step'] ?? 0, accuracy, loss: entry['eval_loss'] ?? 0 });
      }
      watch.observe(entry);
      board?.log(entry);
    },
    onTrainingEnd: () => {
      restored = best.restore();
      best.dispose();
    },
  })).finally(() => board?.close());
  bar.done();
  if (result.stoppedBy === 'interrupted') {
    best.dispose();
    throw trainingInterrupted(folder, result.lastCheckpoint);
  }
  if (result.stoppedBy === 'diverged') {
    best.dispose();
    throw new Error(result.message ?? 'training diverged');
  }
  // Training is over and checkpointed: a Ctrl-C from here on keeps that checkpoint to resume from.
  allowInterrupt = exitOnInterrupt(folder, () => `interrupted after training, before the results were written; the trained state is in ${result.lastCheckpoint}: ${resumeHint(outputDir)} to evaluate it`);
  const chosen = best.best;
  if (restored && chosen) log(`kept the best validation checkpoint: epoch ${chosen.epoch} of ${plan.epochs} (step ${chosen.step}, validation accuracy ${(100 * chosen.accuracy).toFixed(1)}%)`);
  best.dispose();
  if (c.train.recalibrateBatchNorm && trainableStatsBatchNorms(model).length > 0) {
    const calib = new ImageBatchSource(data.train.dataset, data.train.samples, { ...loaderOpts, batchSize: c.train.batchSize });
    const n = await recalibrateBatchNorm(model, calib);
    log(`BatchNorm statistics recalibrated on the training images (${n} batches)`);
  }
  const choice = model instanceof PeftModel ? model.rankChoice() : null;
  if (choice) log(`${c.method}: comparing ranks ${choice.candidates.join(', ')} on the validation split`);
  const selection = choice ? await chooseRank(model, choice, valSource, numClasses, log) : null;
  const testSource = new ImageBatchSource(data.test.dataset, data.test.samples, { ...loaderOpts, batchSize: 16 });
  log(`evaluating on ${data.test.samples.length} test images…`);
  const t0 = performance.now();
  const { report: r } = await evaluate(model, testSource, numClasses);
  const evalSeconds = (performance.now() - t0) / 1000;
  const timeIt = async () => measureSpeed(model, pre.inputSize, { batches: [8, 16], repeats: 3 });
  const speed = model instanceof PeftModel ? await model.withMerged(timeIt) : await timeIt();
  saveTrainedModel(outputDir, model);
  if (selection && model instanceof PeftModel) {
    model.saveAdapterAtRank(join(outputDir, `adapter-r${selection.chosen}`), selection.chosen);
    log(`adapter at rank ${selection.chosen} alone (a plain LoRA adapter): ${join(outputDir, `adapter-r${selection.chosen}`)}`);
  }
  const adapterConfig = runAdapterConfig(c);
  const methodReport = hooks?.report?.() ?? null;
  const finalTrainable = describeTrainable(model);
  const avgEntry = [...result.state.logHistory].reverse().find((e) => e['avg_trainable_params'] !== undefined);
  const avgTrainable = avgEntry?.['avg_trainable_params'] ?? finalTrainable.trainable;
  const targets = adapterConfig?.targetModules;
  const summary: RunSummary = {
    model: c.model, method: c.method, target: targets !== undefined ? (Array.isArray(targets) ? (targets.length > 4 ? `${targets.length} layers` : targets.join(',')) : targets) : c.method === 'linear-probe' ? 'head' : 'all',
    // The trained adapter's own configuration: what training decided (a chosen rank) is there.
    rank: model instanceof PeftModel ? model.adapter().method.rank(model.adapter().config) : adapterConfig && isAdapterMethod(c.method) ? getAdapterMethod(c.method).rank(adapterConfig) : null, trainableParams: finalTrainable.trainable, avgTrainableParams: avgTrainable, totalParams: finalTrainable.total, trainablePercent: finalTrainable.percent,
    trainSeconds: result.state.trainSeconds, accuracy: r.accuracy, weightedF1: r.weightedF1, macroF1: r.macroF1, mAP: r.mAP,
    latencyMs: speed.latencyMs, throughput: speed.throughput, peakMemoryMB: memory().peakBytes / 2 ** 20, outputDir,
  };
  const training = { steps: plan.steps, epochs: plan.epochs, lr: c.train.lr, bestCheckpoint: chosen, warnings: watch.warnings };
  const mem = { ...memorySection(model, c.quantize ?? null), precision: c.train.precision };
  writeFileAtomic(join(outputDir, 'report.json'), JSON.stringify({ summary, classes: data.classes, metrics: r, evalSeconds, training, memory: mem, ...(selection ? { rankSelection: selection } : {}), ...(methodReport ? { [c.method]: methodReport.json } : {}), machine: machineInfo() }, null, 2));
  writeFileAtomic(join(outputDir, 'report.md'), reportMarkdown(`${c.model} · ${c.method}`, data.classes, r, {
    'trainable params': `${finalTrainable.trainable.toLocaleString('en-US')} (${finalTrainable.percent.toFixed(4)}%)`,
    ...(avgTrainable !== finalTrainable.trainable ? { 'Avg_Parm (trainable params averaged over epochs)': `${Math.round(avgTrainable).toLocaleString('en-US')} (${(avgTrainable / 1e6).toFixed(4)} M)` } : {}),
    ...(selection ? { 'rank (chosen)': selection.chosen, 'validation accuracy per rank': perRankLine(selection) } : {}),
    'quantisation': mem.quantization ? `${mem.quantization.type}${mem.quantization.doubleQuant ? ' + double quant' : ''}, block ${mem.quantization.blocksize}, ${mem.quantizedLayers} layers` : 'none (fp32 base)',
    'base-weight bytes (fp32 → stored)': `${mib(mem.baseWeightBytesFp32)} → ${mib(mem.baseWeightBytes)} MiB`,
    'bits per quantised parameter': mem.bitsPerQuantizedParam === null ? '–' : mem.bitsPerQuantizedParam.toFixed(3),
    'trainable bytes (MiB)': mib(mem.trainableBytes),
    'training precision': c.train.precision === 'bf16' ? `bf16 (frozen products${bf16Unavailable() ? `; ${bf16Unavailable()}` : ''})` : 'fp32',
    'peak resident memory (MiB)': mib(mem.peakRssBytes),
    'training time (s)': summary.trainSeconds.toFixed(1), 'latency, batch 1 (ms)': speed.latencyMs.toFixed(1), [`throughput, batch ${speed.bestBatch} (img/s)`]: speed.throughput.toFixed(1),
  }) + (methodReport ? `\n${methodReport.markdown}` : ''));
  if (methodReport?.similarity) writeSimilarity(outputDir, methodReport.similarity);
  best.removeSaved();
  await writeRunReport(outputDir);
  allowInterrupt();
  return summary;
}

/** Mean negative log-likelihood of the true labels under row-major (N, classes) probabilities. */
function meanNll(labels: readonly number[], scores: Float32Array, numClasses: number): number {
  let sum = 0;
  labels.forEach((y, i) => { sum -= Math.log(Math.max(scores[i * numClasses + y]!, 1e-12)); });
  return labels.length ? sum / labels.length : 0;
}

const mib = (b: number) => (b / 2 ** 20).toFixed(2);

/**
 * The memory section of report.json / report.md: the frozen base's weights in fp32 and as stored
 * (4-bit layers: codes, scales and maps), bits per quantised parameter, the trainable parameters'
 * bytes, and the process's peak resident memory.
 */
function memorySection(model: Module, quantization: RunConfig['quantize'] | null) {
  let fp32 = 0;
  let stored = 0;
  let quantizedParams = 0;
  let quantizedBytes = 0;
  let quantizedLayers = 0;
  let trainable = 0;
  for (const [, m] of model.namedModules()) {
    if (isQuantized(m)) {
      const n = m.quantized.state.shape.reduce((a, b) => a * b, 1);
      const b = quantStateBytes(m);
      quantizedParams += n;
      quantizedBytes += b;
      quantizedLayers++;
      fp32 += n * 4;
      stored += b;
    }
  }
  for (const [, p] of model.namedParameters()) {
    const bytes = p.size * bytesPerElement(p.dtype);
    if (p.requiresGrad) trainable += bytes;
    else {
      fp32 += bytes;
      stored += bytes;
    }
  }
  return {
    quantization, quantizedLayers, quantizedParams,
    baseWeightBytesFp32: fp32, baseWeightBytes: stored,
    bitsPerQuantizedParam: quantizedParams ? (8 * quantizedBytes) / quantizedParams : null,
    trainableBytes: trainable,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}
