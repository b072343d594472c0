// DRA's configuration (dynamic rank allocation from layer similarity; graft's definition in
// docs/dra.md). PEFT has no DRA, so its adapter_config.json is graft's own: peft_type "DRA",
// LoRA's common fields (r, lora_alpha, lora_dropout, target_modules, rank_pattern) and
//   "graft_dra": { r_min, r_max, w_imp, w_bias, calibration_images, calibration_epochs,
//                  max_reallocations, estimator, history_pattern }
// rank_pattern holds each layer's current rank and history_pattern the ranks of its frozen
// history segments (oldest first): what training decided, from which the layers are rebuilt.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';

export type DraEstimator = 'auto' | 'biased' | 'debiased';

export interface DraConfig extends AdapterConfig {
  /** The rank of every layer before calibration allocates them (clipped to rMin…rMax). */
  r: number;
  loraAlpha: number;
  loraDropout: number;
  rMin: number;
  rMax: number;
  /** Weight of the dissimilarity score norm(1 − c_l). */
  wImp: number;
  /** Weight of the parameter-share score norm(p_l). */
  wBias: number;
  /** Training images the frozen model runs on to measure layer similarity. */
  calibrationImages: number;
  /** Epochs before a re-allocation may happen (the first one sets the threshold). */
  calibrationEpochs: number;
  maxReallocations: number;
  estimator: DraEstimator;
  /** Each layer's current rank (module path → rank), set by calibration and re-allocation. */
  rankPattern?: Record<string, number>;
  /** Each layer's frozen history segments' ranks, oldest first. */
  historyPattern?: Record<string, number[]>;
}

export const DRA_DEFAULTS = {
  r: 8, loraAlpha: 16, loraDropout: 0, rMin: 2, rMax: 16, wImp: 0.15, wBias: 0.85, calibrationImages: 256, calibrationEpochs: 1, maxReallocations: 4, estimator: 'auto' as DraEstimator,
};

/** The run configuration's `dra` section (the CLI's --rank-min, --rank-max, --dra-weights set its fields). */
export const DraOptionsSchema = z.object({
  rMin: z.number().int().positive().default(DRA_DEFAULTS.rMin),
  rMax: z.number().int().positive().default(DRA_DEFAULTS.rMax),
  wImp: z.number().min(0).default(DRA_DEFAULTS.wImp),
  wBias: z.number().min(0).default(DRA_DEFAULTS.wBias),
  calibrationImages: z.number().int().min(4).default(DRA_DEFAULTS.calibrationImages),
  calibrationEpochs: z.number().int().positive().default(DRA_DEFAULTS.calibrationEpochs),
  maxReallocations: z.number().int().min(0).max(16).default(DRA_DEFAULTS.maxReallocations),
  estimator: z.enum(['auto', 'biased', 'debiased']).default('auto'),
}).strict();

export function draConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): DraConfig {
  const o = DraOptionsSchema.parse(own);
  if (shared.rankPattern || shared.alphaPattern) throw new Error('adapter.rankPattern / alphaPattern: DRA allocates every layer\'s rank itself (between dra.rMin and dra.rMax); remove the pattern');
  return draConfig({
    r: Math.min(Math.max(shared.r, o.rMin), o.rMax), loraAlpha: shared.alpha, loraDropout: shared.dropout, targetModules: shared.targets, excludeModules: shared.exclude,
    modulesToSave: shared.modulesToSave, layersToTransform: shared.layersToTransform, ...o,
  });
}

export function draConfig(partial: Partial<DraConfig> & { targetModules: TargetSpec }): DraConfig {
  const c: DraConfig = { ...DRA_DEFAULTS, ...partial };
  const int = (k: 'r' | 'rMin' | 'rMax' | 'calibrationImages' | 'calibrationEpochs' | 'maxReallocations', min: number) => {
    if (!Number.isInteger(c[k]) || c[k] < min) throw new Error(`DraConfig.${k} must be an integer ≥ ${min}; got ${c[k]}`);
  };
  int('r', 1);
  int('rMin', 1);
  int('rMax', 1);
  int('calibrationImages', 4);
  int('calibrationEpochs', 1);
  int('maxReallocations', 0);
  if (c.rMin > c.rMax) throw new Error(`DRA: dra.rMin (--rank-min ${c.rMin}) must not exceed dra.rMax (--rank-max ${c.rMax})`);
  if (c.maxReallocations > 16) throw new Error(`DraConfig.maxReallocations must be at most 16; got ${c.maxReallocations}`);
  for (const k of ['wImp', 'wBias'] as const) if (!(c[k] >= 0) || !Number.isFinite(c[k])) throw new Error(`DRA: dra.${k} (--dra-weights) must be a number ≥ 0; got ${c[k]}`);
  if (c.wImp + c.wBias <= 0) throw new Error('DRA: dra.wImp and dra.wBias (--dra-weights w_imp,w_bias) are both 0; give at least one positive weight (default 0.15,0.85)');
  if (!(c.loraDropout >= 0 && c.loraDropout < 1)) throw new Error(`DraConfig.loraDropout must be in [0, 1); got ${c.loraDropout}`);
  if (!['auto', 'biased', 'debiased'].includes(c.estimator)) throw new Error(`DraConfig.estimator must be 'auto', 'biased' or 'debiased'; got ${JSON.stringify(c.estimator)}`);
  for (const [k, v] of Object.entries(c.rankPattern ?? {})) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`DraConfig.rankPattern['${k}'] must be a positive integer; got ${JSON.stringify(v)}`);
  }
  for (const [k, v] of Object.entries(c.historyPattern ?? {})) {
    if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`DraConfig.historyPattern['${k}'] must list positive ranks; got ${JSON.stringify(v)}`);
  }
  return c;
}

/** The adapter_config.json object for a DraConfig (sorted keys). */
export function toPeftJson(c: DraConfig, baseModelClass: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    bias: 'none',
    exclude_modules: c.excludeModules ?? null,
    graft_dra: {
      calibration_epochs: c.calibrationEpochs, calibration_images: c.calibrationImages, estimator: c.estimator, history_pattern: c.historyPattern ?? {},
      max_reallocations: c.maxReallocations, r_max: c.rMax, r_min: c.rMin, w_bias: c.wBias, w_imp: c.wImp,
    },
    inference_mode: true,
    layers_to_transform: c.layersToTransform ?? null,
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout,
    modules_to_save: c.modulesToSave ?? null,
    peft_type: 'DRA',
    r: c.r,
    rank_pattern: c.rankPattern ?? {},
    target_modules: c.targetModules,
    task_type: null,
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

export function fromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): DraConfig {
  if (json['peft_type'] !== 'DRA') throw new Error(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads DRA`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new Error(`${source}: target_modules is missing`);
  const d = json['graft_dra'];
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw new Error(`${source}: graft_dra is missing or not an object; the adapter file is damaged`);
  const g = d as Record<string, unknown>;
  const num = (o: Record<string, unknown>, k: string, fallback: number) => (o[k] === undefined || o[k] === null ? fallback : Number(o[k]));
  const nonEmpty = <T>(p: unknown): Record<string, T> | undefined => (p && typeof p === 'object' && Object.keys(p).length > 0 ? (p as Record<string, T>) : undefined);
  return draConfig({
    r: num(json, 'r', DRA_DEFAULTS.r),
    loraAlpha: num(json, 'lora_alpha', DRA_DEFAULTS.loraAlpha),
    loraDropout: num(json, 'lora_dropout', 0),
    rMin: num(g, 'r_min', DRA_DEFAULTS.rMin),
    rMax: num(g, 'r_max', DRA_DEFAULTS.rMax),
    wImp: num(g, 'w_imp', DRA_DEFAULTS.wImp),
    wBias: num(g, 'w_bias', DRA_DEFAULTS.wBias),
    calibrationImages: num(g, 'calibration_images', DRA_DEFAULTS.calibrationImages),
    calibrationEpochs: num(g, 'calibration_epochs', DRA_DEFAULTS.calibrationEpochs),
    maxReallocations: num(g, 'max_reallocations', DRA_DEFAULTS.maxReallocations),
    estimator: (g['estimator'] ?? 'auto') as DraEstimator,
    rankPattern: nonEmpty<number>(json['rank_pattern']),
    historyPattern: nonEmpty<number[]>(g['history_pattern']),
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    layersToTransform: (json['layers_to_transform'] as number[] | null) ?? undefined,
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  });
}
