// The run configuration: everything a training run is made of, validated field by field. The
// `adapter` section holds the options every adapter method shares (rank, alpha, targets, …); each
// registered method adds its own section (LoRA/DoRA: `lora`), so a new method needs no edit here.
import { z } from 'zod';
import { isMethodName, methodNames } from '../adapters/apply.js';
import { SharedAdapterOptionsSchema } from '../adapters/method.js';
import { adapterMethods } from '../adapters/registry.js';

const positiveInt = z.number().int().positive();

const BaseRunConfigSchema = z.object({
  model: z.string().min(1),
  /** Overrides of the named model configuration's fields (configs are data), e.g. { depth: 6 }. */
  modelOverrides: z.record(z.string(), z.unknown()).optional(),
  /** A checkpoint: .safetensors file, a folder holding model.safetensors, or hf:ORG/NAME. */
  weights: z.string().optional(),
  data: z.object({
    /** An image folder, a CSV/JSONL manifest, or 'fashion-mnist'. */
    source: z.string().min(1),
    /** A separate test source; otherwise the test split comes from `source`. */
    test: z.string().optional(),
    perClass: positiveInt.optional(),
    ratio: z.tuple([z.number().positive(), z.number().positive()]).optional(),
    valFraction: z.number().min(0).max(0.9).default(0),
    testPerClass: positiveInt.optional(),
    imageSize: positiveInt.optional(),
    onBadImage: z.enum(['skip', 'fatal']).default('skip'),
  }).strict(),
  method: z.string().refine(isMethodName, { error: () => `Invalid option: expected one of ${methodNames().join(', ')}` }).default('lora'),
  adapter: SharedAdapterOptionsSchema.prefault({}),
  head: z.enum(['linear', 'mlp']).default('linear'),
  /** 'features': the new head replaces everything after the pooled features; 'classifier': only the last Linear. */
  headFrom: z.enum(['classifier', 'features']).default('classifier'),
  train: z.object({
    epochs: positiveInt.default(10),
    batchSize: positiveInt.default(32),
    gradAccumulation: positiveInt.default(1),
    lr: z.number().positive().default(1e-3),
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
  }).strict().prefault({}),
  output: z.string().optional(),
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
