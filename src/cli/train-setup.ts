// Everything `graft train` settles before its first step: the data splits, the model, the
// defaults left to graft (train/defaults.ts) and, with --lr auto, the range test. The result is
// the resolved configuration that run.json holds and the one-line summary printed.
import { bf16Unavailable, withComputePrecision } from '../ops/precision.js';
import { setGradientCheckpointing } from '../models/checkpointing.js';
import { join } from 'node:path';
import { ImageBatchSource } from '../data/loader.js';
import { DEFAULT_AUGMENT } from '../data/transforms.js';
import type { Sample, LabeledDataset } from '../data/dataset.js';
import type { PreprocessConfig } from '../data/preprocess.js';
import type { RgbImage } from '../data/image.js';
import { writeFileAtomic } from '../io/atomic.js';
import type { Module } from '../nn/module.js';
import { manualSeed } from '../tensor/random.js';
import { defaultLr, planSteps, settingsLine, type StepPlan } from '../train/defaults.js';
import { useDeterministicKernels } from '../train/deterministic.js';
import { findLearningRate, type LrFinderResult } from '../train/lr-finder.js';
import { buildRunModel } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';
import { prepareData, type PreparedData } from './datasets.js';
import { downloadProgressPrinter } from './download-progress.js';
import { lrCurveSvg } from '../report/lr-curve.js';

/** Images read to decide the input size; sizes within one dataset rarely vary much. */
const SIZE_PROBE = 8;

export interface PreparedRun {
  /** Every default filled in: what run.json holds. */
  config: RunConfig & { train: { lr: number; epochs: number; steps: number } };
  data: PreparedData;
  model: Module;
  preprocess: PreprocessConfig;
  plan: StepPlan;
  trainSource: ImageBatchSource;
  valSource: ImageBatchSource | null;
  loaderOpts: { preprocess: PreprocessConfig; onBadImage: 'skip' | 'fatal'; report: (file: string, reason: string) => void };
  lrFind: LrFinderResult | null;
}

/** Whether every pixel of `img` has the same colour. */
function singleColour(img: RgbImage): boolean {
  const d = img.data;
  for (let i = 3; i < d.length; i += 3) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return false;
  return true;
}

/** The longer side of the first SIZE_PROBE training images, and how many of them are a single colour. */
async function probeImages(dataset: LabeledDataset, samples: readonly Sample[]): Promise<{ sides: number[]; uniform: number }> {
  const sides: number[] = [];
  let uniform = 0;
  for (const s of samples.slice(0, SIZE_PROBE)) {
    try {
      const img = await dataset.load(s);
      sides.push(Math.max(img.width, img.height));
      if (singleColour(img)) uniform++;
    } catch {
      // An unreadable image is reported by the loader; it says nothing about the others' size.
    }
  }
  return { sides, uniform };
}

export async function prepareRun(c: RunConfig, outputDir: string, log: (line: string) => void): Promise<PreparedRun> {
  if (c.train.deterministic) useDeterministicKernels();
  manualSeed(c.train.seed);
  const report = (file: string, reason: string) => log(`warning: skipped ${file}: ${reason}`);
  const unreadable = (file: string, reason: string) => report(file, `unreadable image (${reason})`);
  // The file checks say 'not an image…' or 'a symbolic link…'; a decoder's reason is unreadability.
  const data = await prepareData(c, (file, reason) => (reason.startsWith('not ') || reason.startsWith('a symbolic') ? report(file, reason) : unreadable(file, reason)));
  if (data.valNote) log(data.valNote);
  const probe = await probeImages(data.train.dataset, data.train.samples);
  if (probe.uniform > 0 && probe.uniform * 2 >= probe.sides.length) {
    // Dark artwork on a transparent background (icons, logos) composites to a black image, as
    // PIL's convert('RGB') leaves it: nothing is left to learn from.
    log(`warning: ${probe.uniform} of the first ${probe.sides.length} training images are a single colour once decoded (transparent pixels are laid on black, as PIL's convert('RGB') does); dark shapes on a transparent background come out all black: lay the images on a light background first`);
  }
  const sides = c.data.imageSize === undefined ? probe.sides : undefined;
  const built = await buildRunModel({ ...c, data: { ...c.data, valFraction: data.valFraction } }, data.classes, { onProgress: downloadProgressPrinter(), imageSides: sides });
  const { model, preprocess } = built;
  if (built.config.train.gradientCheckpointing) {
    const n = setGradientCheckpointing(model, true);
    log(n ? 'gradient checkpointing: each transformer block (ViT, Swin) or stage (CNN) is recomputed in the backward pass' : `gradient checkpointing: ${c.model} has no blocks or stages graft checkpoints (ViT, Swin, ResNet, MobileNetV2, ConvNeXt, RegNet have); training keeps every activation`);
  }
  if (built.config.train.precision === 'bf16') {
    const why = bf16Unavailable();
    log(why ? `precision bf16: ${why}` : 'precision bf16: frozen Linear and 4-bit layers compute on bf16 operands (fp32 accumulation) in training steps; convolutions, attention, trainable parameters and optimizer state stay fp32, and so does evaluation');
  }
  const plan = planSteps(built.config.train, data.train.samples.length);
  const t = built.config.train;
  const loaderOpts = { preprocess, onBadImage: c.data.onBadImage, report };
  const trainSource = new ImageBatchSource(data.train.dataset, data.train.samples, { ...loaderOpts, batchSize: t.batchSize, shuffle: true, seed: t.seed, augment: t.augment ? DEFAULT_AUGMENT : null });
  const valSource = data.val.samples.length ? new ImageBatchSource(data.val.dataset, data.val.samples, { ...loaderOpts, batchSize: 16 }) : null;
  let lr: number;
  let lrFind: LrFinderResult | null = null;
  if (t.lr === 'auto') {
    log('lr auto: a learning-rate range test on the training split (100 steps, 1e-7 → 1)…');
    lrFind = await withComputePrecision(t.precision, () => findLearningRate(model, trainSource, { optimizer: t.optimizer, weightDecay: t.weightDecay, maxGradNorm: t.maxGradNorm, labelSmoothing: t.labelSmoothing }));
    lr = Number(lrFind.lr.toPrecision(2));
    writeFileAtomic(join(outputDir, 'lr_find.json'), JSON.stringify({ suggestion: lr, rule: lrFind.rule, steepestLr: lrFind.steepestLr, minLossOver10: lrFind.minLossLr, curve: lrFind.curve }, null, 2));
    writeFileAtomic(join(outputDir, 'lr_find.svg'), lrCurveSvg(lrFind.curve, lr));
    log(`lr auto: ${lr} (${lrFind.rule}; curve in ${join(outputDir, 'lr_find.json')} and lr_find.svg)`);
  } else {
    lr = t.lr ?? defaultLr(c.method);
  }
  const config = { ...built.config, train: { ...t, lr, epochs: plan.epochs, steps: plan.steps } };
  log(settingsLine(config, plan, data.train.samples.length));
  return { config, data, model, preprocess, plan, trainSource, valSource, loaderOpts, lrFind };
}
