// What an adapter method is to the rest of graft: its names, its configuration (validated, with
// PEFT's field names on disk), the base layers it wraps, how it grafts a layer, and optional
// training hooks. PeftModel, target matching, the run configuration, run loading and evaluation
// use only this interface; a method is one folder under src/adapters plus one line in registry.ts.
import { z } from 'zod';
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import type { SimilarityMatrix } from '../nn/similarity.js';
import type { Generator } from '../tensor/random.js';
import type { AdapterLayer } from './layer.js';
import type { TargetSpec } from './targets.js';

/** The fields every method's configuration has (PEFT's PeftConfig/target fields). */
export interface AdapterConfig {
  targetModules: TargetSpec;
  excludeModules?: string[] | string;
  modulesToSave?: string[];
  layersToTransform?: number[];
  baseModelName?: string;
}

/**
 * The options shared by every method in a run configuration (`adapter` section; the CLI's
 * --rank, --alpha, --targets). A method reads those that mean something to it.
 */
export const SharedAdapterOptionsSchema = z.object({
  r: z.number().int().positive().default(8),
  alpha: z.number().positive().default(16),
  dropout: z.number().min(0).max(0.99).default(0),
  targets: z.union([z.array(z.string()), z.string()]).default('all-linear'),
  exclude: z.union([z.array(z.string()), z.string()]).optional(),
  modulesToSave: z.array(z.string()).optional(),
  rankPattern: z.record(z.string(), z.number().int().positive()).optional(),
  alphaPattern: z.record(z.string(), z.number().positive()).optional(),
  layersToTransform: z.array(z.number().int().min(0)).optional(),
}).strict();
export type SharedAdapterOptions = z.infer<typeof SharedAdapterOptionsSchema>;

/** Where the trainer is, for hooks that follow the schedule (AdaLoRA's budget, DyLoRA's rank draw). */
export interface TrainingContext {
  /** Optimizer steps done so far (after a step: including it). */
  step: number;
  totalSteps: number;
  epoch: number;
  totalEpochs: number;
  /**
   * The training images without augmentation, in a fixed (seeded, shuffled) order, as batches;
   * absent when the trainer was given none (TrainOptions.calibration). DRA calibrates on them.
   */
  calibrationImages?: () => AsyncIterable<Tensor>;
  /**
   * Tells the trainer that the set of trainable tensors changed (a hook replaced some): it builds
   * a fresh optimizer over the new ones once the hook returns, so their optimizer state starts at zero.
   */
  parametersChanged?: () => void;
  /** The trainer's log. */
  log?: (line: string) => void;
}

/** Optional hooks a method gives the trainer. All run outside autograd except extraLoss. */
export interface TrainingHooks {
  /** Before the first step (also on resume, after the checkpoint is loaded), with the total step count; a returned promise is awaited. */
  beforeTraining?(ctx: TrainingContext): unknown;
  /** Before each forward pass of a training batch. */
  beforeStep?(ctx: TrainingContext): void;
  /** A term added to the loss of each batch (e.g. an orthogonality regulariser), or null. */
  extraLoss?(ctx: TrainingContext): Tensor | null;
  /** After each optimizer step; the gradients are still present. */
  afterStep?(ctx: TrainingContext): void;
  /** After each epoch's validation (ctx.epoch: epochs done); a returned promise is awaited. */
  afterEpoch?(ctx: TrainingContext): unknown;
  /** Numbers for metrics.jsonl's entry of the epoch just ended (after afterEpoch), e.g. DRA's parameter change. */
  epochMetrics?(ctx: TrainingContext): Record<string, number>;
  /**
   * What a checkpoint must hold beyond tensors for a method whose structure training changes
   * (JSON): saved in trainer_state.json; on resume restoreState rebuilds that structure before
   * the checkpoint's tensors and optimizer state are loaded.
   */
  saveState?(): unknown;
  restoreState?(state: unknown): void;
  /**
   * What the run report shows of the method's training (report.json), its Markdown section, and
   * a layer-similarity matrix to write beside the report (similarity.json / similarity.svg).
   */
  report?(): { json: Record<string, unknown>; markdown: string; similarity?: SimilarityMatrix };
  /**
   * Once training has ended (completed or stopped early), before the model is evaluated and
   * saved: a method whose structure training decides fixes it here (AdaLoRA truncates the
   * triplets it masked), so the saved adapter rebuilds exactly the model that is evaluated.
   */
  afterTraining?(ctx: TrainingContext): void;
}

/**
 * A trained adapter that computes at any of several ranks (DyLoRA): the ranks to compare after
 * training, how to switch, and the files of one rank alone. `graft train` compares the candidates
 * on the validation split and keeps the best; `graft eval --rank` sets one.
 */
export interface RankChoice {
  /** The ranks to compare on the validation split, ascending. */
  candidates: number[];
  /** The highest rank the adapter holds (kept when there is no validation split). */
  maxRank: number;
  /** The rank used outside training now. */
  current(): number;
  /** Computes at rank b from now on, and records b in the adapter's configuration (so it is saved). */
  set(b: number): void;
  /** The adapter_config.json and per-tensor cut (on-disk key → tensor) of a plain adapter holding rank b alone. */
  truncated(b: number, baseModelClass: string): { json: Record<string, unknown>; cut(key: string, t: Tensor): Tensor };
}

/** What `graft inspect` needs to read a method's adapter file by layer. */
export interface InspectInfo<C> {
  /** The names of a layer's saved tensors, relative to the layer (PEFT's keys: `lora_A.weight`, `lora_E`). */
  tensors: readonly string[];
  /** A layer's rank from its tensors' shapes by those names; absent for methods without a rank. */
  rank?(shapes: Record<string, readonly number[]>, config: C): number;
}

export interface GraftOptions {
  generator?: Generator;
}

export interface AdapterMethod<C extends AdapterConfig = AdapterConfig> {
  /** The name users give (`--method lora`), unique in the registry. */
  readonly name: string;
  /** PEFT's peft_type written to adapter_config.json. */
  readonly peftType: string;
  /** One line for help texts and the README. */
  readonly summary: string;
  /** Key of the run configuration's section holding this method's own options (methods may share one). */
  readonly optionsKey: string;
  /** Strict schema of that section, with defaults; errors name the field. */
  readonly optionsSchema: z.ZodObject;
  /** The configuration from the run's shared options and this method's section (already validated). */
  configFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): C;
  /** Checks a configuration built in code; throws naming the field. */
  validate(config: C): C;
  /** Whether `m` is a base layer this method can wrap. */
  canWrap(m: Module): boolean;
  /** What canWrap accepts, for errors (default: Linear and Conv2d layers). */
  readonly wraps?: string;
  /** The targets of a run that names none (default: graft's rule for the backbone, train/defaults.ts). */
  readonly defaultTargets?: TargetSpec;
  /** Whether `m` is this method's adapter layer (a target already grafted by it). */
  isLayer(m: Module): boolean;
  /** Adds adapter `name` to the module at a target: wraps a plain layer, or extends an existing wrapper of this method. */
  graft(target: Module, path: string, name: string, config: C, opts: GraftOptions): AdapterLayer;
  /** The adapter_config.json object PEFT writes for `config`. */
  toPeftJson(config: C, baseModelClass: string): Record<string, unknown>;
  /** Whether an adapter_config.json object is this method's (peft_type, and e.g. use_dora). */
  readsPeftJson(json: Record<string, unknown>): boolean;
  fromPeftJson(json: Record<string, unknown>, source: string): C;
  /** The size part of the settings line from the method's run-configuration section (default: `r <adapter.r>`). */
  sizeLine?(own: Record<string, unknown>): string;
  /** Rank for the comparison table (null when the method has none). */
  rank(config: C): number | null;
  /** Hooks for training adapter `name` of `model` (the PeftModel's inner model). */
  trainingHooks?(model: Module, name: string, config: C): TrainingHooks;
  /** For methods trained for several ranks at once: choosing one after training (see RankChoice). */
  rankChoice?(model: Module, name: string, config: C): RankChoice;
  /** How `graft inspect` groups the saved tensors by layer and reads each layer's rank (default: by module, no rank). */
  readonly inspect?: InspectInfo<C>;
}
