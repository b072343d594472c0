// The defaults a run takes when the user leaves a setting out, chosen so that a first run on a
// new small dataset learns. Each value comes from the few-shot runs measured in docs/defaults.md;
// the resolved values are printed in one line and saved in run.json, so a run folder says what
// ran whatever was left to these rules.
import type { Module } from '../nn/module.js';
import { Conv2d, Linear } from '../nn/layers.js';
import { classifierPath } from '../models/head.js';
import { getAdapterMethod } from '../adapters/registry.js';
import { methodSection, type RunConfig } from './run-config.js';

/** Peak learning rates (AdamW, warmup + cosine) per method; adapter methods without an entry take ADAPTER_LR. */
export const METHOD_LR: Readonly<Record<string, number>> = {
  'linear-probe': 1e-2,
  lora: 3e-3,
  dora: 3e-3,
  full: 1e-3,
  scratch: 3e-3,
  // OFT's Cayley–Neumann series (5 terms, PEFT's default) holds only while the skew blocks stay
  // small: at 3e-3 they grow past it within 20 steps and the features collapse to chance.
  oft: 3e-4,
  // Each step trains the prefix of a random rank b at scale alpha / b, up to r times LoRA's.
  dylora: 1e-3,
  // Mona on a randomly initialised ViT, three seeds (docs/defaults.md): 3e-3 and 1e-2 reach the
  // same mean test accuracy, 1e-2 unsteadily (at chance for 20 steps in one seed, 32.6% in
  // another); Mona's modules change the stream from the first step (project2 is not zero).
  mona: 3e-3,
};
export const ADAPTER_LR = 3e-3;

/** A floor on optimizer steps: 100 images at batch 16 are 7 steps an epoch, far too few to learn from. */
export const MIN_STEPS = 150;
/** Without a floor in force, steps are this many epochs' worth. */
export const DEFAULT_EPOCHS = 10;

/** Validation share of the training side, used when every class keeps at least MIN_PER_CLASS_FOR_VAL images there. */
export const DEFAULT_VAL_FRACTION = 0.2;
export const MIN_PER_CLASS_FOR_VAL = 5;

/** Images this much smaller than the model's input are run at a reduced input size (see defaultImageSize). */
const SMALLEST_INPUT = 64;
const SIZE_STEP = 32;

export function defaultLr(method: string): number {
  return METHOD_LR[method] ?? ADAPTER_LR;
}

/**
 * The validation split when none is given: DEFAULT_VAL_FRACTION of every class (at least one
 * image each) when the smallest class has MIN_PER_CLASS_FOR_VAL training images, else none,
 * with the reason.
 */
export function defaultValFraction(perClassCounts: readonly number[]): { valFraction: number; note: string | null } {
  const smallest = Math.min(...perClassCounts);
  if (smallest >= MIN_PER_CLASS_FOR_VAL) return { valFraction: DEFAULT_VAL_FRACTION, note: null };
  return { valFraction: 0, note: `no validation split: the smallest class has ${smallest} training images (a split needs ${MIN_PER_CLASS_FOR_VAL}); the last epoch's model is kept` };
}

export interface StepPlan {
  steps: number;
  epochs: number;
  stepsPerEpoch: number;
}

/**
 * Optimizer steps and the whole epochs that hold them. `epochs` given: that many epochs.
 * `steps` given: enough whole epochs to reach them (every epoch ends with a validation). Neither:
 * DEFAULT_EPOCHS epochs, but at least MIN_STEPS steps however small the data.
 */
export function planSteps(train: { steps?: number; epochs?: number; batchSize: number; gradAccumulation: number }, trainImages: number): StepPlan {
  const stepsPerEpoch = Math.max(1, Math.ceil(Math.ceil(trainImages / train.batchSize) / train.gradAccumulation));
  const wanted = train.epochs !== undefined ? train.epochs * stepsPerEpoch : train.steps ?? Math.max(MIN_STEPS, DEFAULT_EPOCHS * stepsPerEpoch);
  const epochs = Math.max(1, Math.ceil(wanted / stepsPerEpoch));
  return { steps: epochs * stepsPerEpoch, epochs, stepsPerEpoch };
}

/**
 * The input size when none is given: the model's own, unless the images are much smaller. An
 * image of side s carries no detail above s pixels, so upsampling 28² Fashion-MNIST to 224²
 * costs 64× the compute of 28² for nothing the pretrained filters can use beyond the first few
 * doublings: the input is then the smallest multiple of 32 holding 2·s (at least 64), below the
 * model's size, and at least the smallest input the model accepts (`minSize`: InceptionV3's 75
 * gives 96). docs/defaults.md has the accuracy at 96² against 224².
 */
export function defaultImageSize(modelSize: number, imageSides: readonly number[], minSize = 0): number | undefined {
  if (imageSides.length === 0) return undefined;
  const side = Math.max(...imageSides);
  const size = Math.max(SMALLEST_INPUT, Math.ceil(Math.max(2 * side, minSize) / SIZE_STEP) * SIZE_STEP);
  return size < modelSize ? size : undefined;
}

interface HeadReplaceable {
  replaceHeadWithLinear(numClasses: number): string;
}

/**
 * 'features' for imported Keras/TF.js models, whose pretrained head is a task MLP on the pooled
 * features (nsfwjs: Dense 256 → Dropout → Dense 5) that a new task should not inherit;
 * 'classifier' for the others, whose last Linear is the whole head.
 */
export function defaultHeadFrom(backbone: Module): 'features' | 'classifier' {
  return typeof (backbone as Partial<HeadReplaceable>).replaceHeadWithLinear === 'function' ? 'features' : 'classifier';
}

/**
 * Targets that exist in the model: 'all-linear' where Linear layers outside the head outnumber
 * the dense convolutions (ViTs, Swin, ConvNeXt's pointwise MLPs), else every convolution with
 * groups 1 (a CNN: its only Linear layers are its head). Depthwise and grouped convolutions are
 * left out: LoRA on them needs a rank divisible by the group count (hundreds in MobileNetV2).
 */
export function defaultTargets(backbone: Module, headFrom: 'features' | 'classifier'): string[] | 'all-linear' {
  const head = classifierPath(backbone);
  const modules = backbone.namedModules().filter(([p]) => p !== '');
  const denseConvs = modules.filter(([, m]) => m instanceof Conv2d && m.groups === 1).map(([p]) => p);
  // With headFrom 'features' an imported head is rebuilt, so none of its Linear layers stays.
  const linears = headFrom === 'features' && defaultHeadFrom(backbone) === 'features'
    ? []
    : modules.filter(([p, m]) => m instanceof Linear && p !== head).map(([p]) => p);
  if (linears.length > denseConvs.length) return 'all-linear';
  if (denseConvs.length === 0) throw new Error(`${backbone.constructor.name} has no Linear layer outside its head and no dense convolution; name targets with --targets (see graft inspect)`);
  return denseConvs;
}

/** The resolved settings in one line, as printed at the start of training. */
export function settingsLine(c: RunConfig, plan: StepPlan, trainImages: number): string {
  const t = c.train;
  const targets = c.adapter.targets;
  const shownTargets = Array.isArray(targets) ? (targets.length > 4 ? `${targets.length} layers (${targets.slice(0, 2).join(', ')}, …)` : targets.join(',')) : targets;
  const parts = [
    `method ${c.method}`, `lr ${t.lr}`, `${plan.steps} steps (${plan.epochs} epochs × ${plan.stepsPerEpoch}, batch ${t.batchSize}, ${trainImages} images)`,
    `val ${c.data.valFraction ?? 0}`, `head-from ${c.headFrom}`, `input ${c.data.imageSize ?? 'model'}`,
  ];
  if (c.method !== 'linear-probe' && c.method !== 'full' && c.method !== 'scratch') {
    const method = getAdapterMethod(c.method);
    parts.push(`targets ${shownTargets}`, method.sizeLine?.(methodSection(c, method.optionsKey)) ?? `r ${c.adapter.r}`);
  }
  if (t.deterministic) parts.push('deterministic');
  return `settings: ${parts.join(' · ')}`;
}

/**
 * Fills the settings that depend on the backbone (headFrom; an adapter method's targets). A
 * configuration read back from run.json has them already, so reloading changes nothing.
 */
export function resolveModelDefaults(c: RunConfig, backbone: Module, isAdapter: boolean): RunConfig {
  const headFrom = c.headFrom ?? defaultHeadFrom(backbone);
  const targets = c.adapter.targets ?? (isAdapter ? getAdapterMethod(c.method).defaultTargets ?? defaultTargets(backbone, headFrom) : undefined);
  return { ...c, headFrom, adapter: { ...c.adapter, ...(targets !== undefined ? { targets } : {}) } };
}
