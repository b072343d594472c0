// The run configuration: everything a training run is made of, validated field by field. The
// `adapter` section holds the options every adapter method shares (rank, alpha, targets, …); each
// registered method adds its own section (LoRA/DoRA: `lora`), so a new method needs no edit here.
import { z } from 'zod';
import { isMethodName, methodNames } from '../adapters/apply.js';
import { SharedAdapterOptionsSchema } from '../adapters/method.js';
import { adapterMethods } from '../adapters/registry.js';
import { ConfigError } from '../errors.js';

const positiveInt = z.number().int().positive();

const BaseRunConfigSchema = z.object({
  /** Left out: classification. 'segmentation': a decode head over the backbone's feature maps, trained per pixel (docs/segmentation.md). */
  task: z.enum(['classification', 'segmentation']).optional(),
  /** The segmentation head (task 'segmentation'): 'uper' (light UPerNet over four levels) or 'linear' (DINOv2's BN + 1×1 head on the last map). */
  segmentation: z.object({
    head: z.enum(['linear', 'uper']).default('uper'),
    /** Width of the uper head's convolutions. */
    channels: positiveInt.default(64),
  }).strict().optional(),
  model: z.string().min(1),
  /** Overrides of the named model configuration's fields (configs are data), e.g. { depth: 6 }. */
  modelOverrides: z.record(z.string(), z.unknown()).optional(),
  /** A checkpoint: .safetensors file, a folder holding model.safetensors, or hf:ORG/NAME. */
  weights: z.string().optional(),
  data: z.object({
    /** An image folder, a CSV/JSONL manifest, or 'fashion-mnist'; for segmentation a folder of images and masks (graft, VOC or ADE20K layout). */
    source: z.string().min(1),
    /** A separate test source; otherwise the test split comes from `source`. */
    test: z.string().optional(),
    perClass: positiveInt.optional(),
    ratio: z.tuple([z.number().positive(), z.number().positive()]).optional(),
    /** Left out: 0.2 when every class has 5 training images, else none (train/defaults.ts). */
    valFraction: z.number().min(0).max(0.9).optional(),
    testPerClass: positiveInt.optional(),
    imageSize: positiveInt.optional(),
    onBadImage: z.enum(['skip', 'fatal']).default('skip'),
  }).strict(),
  method: z.string().refine(isMethodName, { error: () => `Invalid option: expected one of ${methodNames().join(', ')}` }).default('lora'),
  /** Left out, `targets` follow the model (train/defaults.ts: every dense conv of a CNN, every Linear of a ViT). */
  adapter: SharedAdapterOptionsSchema.extend({ targets: z.union([z.array(z.string()), z.string()]).optional() }).prefault({}),
  /** A 4-bit base (QLoRA): every Linear and groups = 1 Conv2d but the classifier quantised, bitsandbytes' NF4/FP4 (docs/quantization.md). */
  quantize: z.object({
    type: z.enum(['nf4', 'fp4']),
    doubleQuant: z.boolean().default(false),
    blocksize: z.number().int().refine((b) => b >= 32 && b <= 4096 && (b & (b - 1)) === 0, { error: () => 'must be a power of two from 32 to 4096' }).default(64),
  }).strict().optional(),
  head: z.enum(['linear', 'mlp']).default('linear'),
  /** 'features': the new head replaces everything after the pooled features; 'classifier': only the last Linear. */
  /** Left out: 'features' for imported Keras models (their head is a task MLP), else 'classifier'. */
  headFrom: z.enum(['classifier', 'features']).optional(),
  train: z.object({
    /** Epochs, or optimizer steps (rounded up to whole epochs); neither: 10 epochs, at least 150 steps (train/defaults.ts). */
    epochs: positiveInt.optional(),
    steps: positiveInt.optional(),
    batchSize: positiveInt.default(16),
    gradAccumulation: positiveInt.default(1),
    /** A number, 'auto' (a learning-rate range test, train/lr-finder.ts), or left out: the method's default. */
    lr: z.union([z.number().positive(), z.literal('auto')]).optional(),
    optimizer: z.enum(['adamw', 'sgd']).default('adamw'),
    weightDecay: z.number().min(0).default(0.01),
    schedule: z.enum(['cosine', 'constant', 'linear']).default('cosine'),
    warmupRatio: z.number().min(0).max(1).default(0.1),
    maxGradNorm: z.number().min(0).default(1),
    labelSmoothing: z.number().min(0).max(1).default(0),
    earlyStopping: positiveInt.optional(),
    seed: z.number().int().default(0),
    augment: z.boolean().default(true),
    /** After training, replace BatchNorm running statistics by their average over the training images (precise BN). */
    recalibrateBatchNorm: z.boolean().default(true),
    /** Recompute each transformer block's activations in the backward pass instead of keeping them (ViT families). */
    gradientCheckpointing: z.boolean().default(false),
    /**
     * Products with frozen weights in training steps: 'bf16' runs frozen Linear layers (and 4-bit
     * ones) on bf16 operands with float32 accumulation (src/ops/precision.ts); trainable
     * parameters, gradients and optimizer state stay fp32. Evaluation and the saved model are fp32.
     */
    precision: z.enum(['fp32', 'bf16']).default('fp32'),
    /** The same metrics on every supported x86-64 CPU: AVX2 kernels in graft and oneDNN (docs/reproducibility.md). */
    deterministic: z.boolean().default(false),
  }).strict().prefault({}),
  output: z.string().optional(),
  /** Where training logs go besides metrics.jsonl, as the Trainer's report_to: 'tensorboard' writes event files under tensorboard/. */
  reportTo: z.array(z.enum(['tensorboard'])).default([]),
});

/** The sections of the registered adapter methods, each with its defaults. */
function methodSections(): Record<string, z.ZodType> {
  const sections: Record<string, z.ZodType> = {};
  for (const m of adapterMethods()) sections[m.optionsKey] ??= m.optionsSchema.prefault({});
  return sections;
}

export type RunConfig = z.infer<typeof BaseRunConfigSchema>;

/**
 * The whole schema: the base fields and the section of every method registered now; unknown
 * fields are errors.
 */
export function runConfigSchema(): z.ZodType<RunConfig, unknown> {
  return BaseRunConfigSchema.extend(methodSections()).strict() as unknown as z.ZodType<RunConfig, unknown>;
}

/** A method's own section of a run configuration (validated with its defaults). */
export function methodSection(c: RunConfig, optionsKey: string): Record<string, unknown> {
  return ((c as Record<string, unknown>)[optionsKey] as Record<string, unknown> | undefined) ?? {};
}

/** One line per problem, each naming the field: "train.lr: expected number, received string". */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(config)'}: ${i.message}`).join('\n');
}

/** Checks across fields that the schema cannot express, each naming the field and what to do. */
export function checkRunConfig(c: RunConfig): void {
  const bad = (field: string, why: string) => {
    throw new ConfigError(`invalid configuration:\n  ${field}: ${why}`);
  };
  if (c.data.perClass !== undefined && c.data.ratio !== undefined) bad('data', 'data.perClass (--per-class) and data.ratio (--ratio) both split the data; give one of them');
  if (c.task === 'segmentation') {
    if (c.data.perClass !== undefined || c.data.ratio !== undefined || c.data.testPerClass !== undefined) bad('data', 'data.perClass, data.ratio and data.testPerClass split classification data; a segmentation set is split by its own layout (VOC, ADE20K), data.test, or 20% of its pairs for testing');
  } else if (c.segmentation !== undefined) bad('segmentation', "sets the segmentation head, but the task is classification; add --task segmentation (task: 'segmentation') or drop it");
  else if (c.data.perClass === undefined && c.data.ratio === undefined && !c.data.test) bad('data', 'give data.perClass (images per class) or data.ratio (test:train, e.g. [98, 1]), or a separate data.test');
  if (c.output !== undefined && c.output.trim() === '') bad('output', 'is empty; give a folder for the run (--output runs/my-run)');
  if (c.method === 'scratch' && c.weights !== undefined) bad('weights', "method 'scratch' trains from a random initialisation and would ignore the weights; drop --weights or choose another method");
  if (c.data.imageSize !== undefined && c.data.imageSize > 2048) bad('data.imageSize', `${c.data.imageSize} is far beyond what the models are trained at (up to 518); give at most 2048`);
  if (c.data.imageSize !== undefined && c.data.imageSize < 8) bad('data.imageSize', `${c.data.imageSize} is too small for any backbone; give at least 8 (32 for the CNNs)`);
  if (c.method === 'dra') {
    const d = methodSection(c, 'dra') as { rMin?: number; rMax?: number };
    if (d.rMin !== undefined && d.rMax !== undefined && d.rMin > d.rMax) bad('dra.rMin', `${d.rMin} (--rank-min) is above dra.rMax ${d.rMax} (--rank-max); give rMin ≤ rMax`);
  }
  const scaling = c.adapter.alpha / c.adapter.r;
  if (!Number.isFinite(scaling) || scaling > 1e4) bad('adapter.alpha', `${c.adapter.alpha} with rank ${c.adapter.r} scales the adapter by ${scaling.toPrecision(3)}, which overflows training; the usual alpha is 1–4 × the rank (--alpha 16 with --rank 8)`);
  const patterns: [string, string][] = [];
  if (typeof c.adapter.targets === 'string' && c.adapter.targets !== 'all-linear') patterns.push(['adapter.targets', c.adapter.targets]);
  if (typeof c.adapter.exclude === 'string') patterns.push(['adapter.exclude', c.adapter.exclude]);
  for (const [field, pattern] of patterns) {
    try {
      new RegExp(pattern);
    } catch (e) {
      bad(field, `'${pattern}' is not a valid regular expression (${(e as Error).message.replace(/^Invalid regular expression: /, '')}); give a regex over module paths, comma-separated names, or 'all-linear'`);
    }
  }
}
