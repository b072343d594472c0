// The run configuration: a JSON file validated field by field, which command-line flags override.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { METHODS } from '../adapters/methods.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const positiveInt = z.number().int().positive();

export const RunConfigSchema = z.object({
  model: z.string().min(1),
  /** A checkpoint: .safetensors file, a Hugging Face model folder, or a TF.js model.json. */
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
  method: z.enum(METHODS).default('lora'),
  lora: z.object({
    r: positiveInt.default(8),
    alpha: z.number().positive().default(16),
    dropout: z.number().min(0).max(0.99).default(0),
    targets: z.union([z.array(z.string()), z.string()]).default('all-linear'),
    exclude: z.union([z.array(z.string()), z.string()]).optional(),
    modulesToSave: z.array(z.string()).optional(),
    rankPattern: z.record(z.string(), positiveInt).optional(),
    alphaPattern: z.record(z.string(), z.number().positive()).optional(),
    rslora: z.boolean().default(false),
    init: z.union([z.boolean(), z.enum(['gaussian', 'pissa'])]).default(true),
  }).strict().prefault({}),
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
}).strict();

export type RunConfig = z.infer<typeof RunConfigSchema>;

/** One line per problem, each naming the field: "train.lr: expected number, received string". */
function describe(error: z.ZodError): string {
  return error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(config)'}: ${i.message}`).join('\n');
}

/** Sets a dotted path in a plain object ("train.lr" = 0.01). */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

/** Reads the config file (if any), applies flag overrides (dotted paths), and validates. */
export function loadRunConfig(file: string | undefined, overrides: Record<string, unknown>): RunConfig {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`);
    }
  }
  for (const [path, value] of Object.entries(overrides)) if (value !== undefined) setPath(raw, path, value);
  const parsed = RunConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration${file ? ` (${file} and flags)` : ''}:\n${describe(parsed.error)}`);
  const c = parsed.data;
  if ((c.data.perClass === undefined) === (c.data.ratio === undefined) && !c.data.test) {
    throw new ConfigError('invalid configuration:\n  data: give data.perClass (images per class) or data.ratio (test:train, e.g. [98, 1]), or a separate data.test');
  }
  return c;
}
