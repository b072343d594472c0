// AdaLoraConfig with huggingface/peft's field names and defaults (adalora/config.py, a LoraConfig
// subclass), its adapter_config.json form both ways, and the `adalora` section of a run
// configuration.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';

export interface AdaLoraConfig extends AdapterConfig {
  /** LoRA's r: written to the file as PEFT does, never used (PEFT ignores it; init_r is the rank). */
  r: number;
  loraAlpha: number;
  loraDropout: number;
  initR: number;
  targetR: number;
  tinit: number;
  tfinal: number;
  deltaT: number;
  beta1: number;
  beta2: number;
  orthRegWeight: number;
  /** PEFT requires it; graft's trainer fills it from its step count when it is null. */
  totalStep: number | null;
  /** The kept triplets per matrix (`<module path>.lora_E` → one flag per initial rank), PEFT's saved rank pattern. */
  rankPattern?: Record<string, boolean[]>;
}

/** The run configuration's `adalora` section: PEFT's AdaLoraConfig fields beyond the shared adapter options. */
export const AdaLoraOptionsSchema = z.object({
  initR: z.number().int().positive().default(12),
  targetR: z.number().int().min(0).default(8),
  tinit: z.number().int().min(0).default(0),
  tfinal: z.number().int().min(0).default(0),
  deltaT: z.number().int().positive().default(1),
  beta1: z.number().gt(0).lt(1).default(0.85),
  beta2: z.number().gt(0).lt(1).default(0.85),
  orthRegWeight: z.number().min(0).default(0.5),
  totalStep: z.number().int().positive().nullable().default(null),
}).strict();

export const ADALORA_DEFAULTS = {
  r: 8, loraAlpha: 8, loraDropout: 0, initR: 12, targetR: 8, tinit: 0, tfinal: 0, deltaT: 1, beta1: 0.85, beta2: 0.85, orthRegWeight: 0.5, totalStep: null,
};

export function adaLoraConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): AdaLoraConfig {
  const o = AdaLoraOptionsSchema.parse(own);
  // PEFT's AdaLoRA builds every matrix at init_r and allocates the ranks itself; LoRA's patterns have no meaning there.
  if (shared.rankPattern) throw new Error('adapter.rankPattern: AdaLoRA allocates the ranks itself (from adalora.initR down to adalora.targetR); remove rankPattern');
  if (shared.alphaPattern) throw new Error('adapter.alphaPattern: AdaLoRA uses one alpha for every matrix (as PEFT); remove alphaPattern');
  return adaLoraConfig({
    r: shared.r, loraAlpha: shared.alpha, loraDropout: shared.dropout, targetModules: shared.targets, excludeModules: shared.exclude,
    modulesToSave: shared.modulesToSave, layersToTransform: shared.layersToTransform, ...o,
  });
}

export function adaLoraConfig(partial: Partial<AdaLoraConfig> & { targetModules: TargetSpec }): AdaLoraConfig {
  const c: AdaLoraConfig = { ...ADALORA_DEFAULTS, ...partial };
  const int = (k: 'initR' | 'targetR' | 'tinit' | 'tfinal' | 'deltaT', min: number) => {
    if (!Number.isInteger(c[k]) || c[k] < min) throw new Error(`AdaLoraConfig.${k} must be an integer ≥ ${min}; got ${c[k]}`);
  };
  int('initR', 1);
  int('targetR', 0);
  int('tinit', 0);
  int('tfinal', 0);
  int('deltaT', 1);
  for (const k of ['beta1', 'beta2'] as const) if (!(c[k] > 0 && c[k] < 1)) throw new Error(`AdaLoraConfig.${k} must be in (0, 1); got ${c[k]}`);
  if (!(c.orthRegWeight >= 0)) throw new Error(`AdaLoraConfig.orthRegWeight must be ≥ 0; got ${c.orthRegWeight}`);
  if (!(c.loraDropout >= 0 && c.loraDropout < 1)) throw new Error(`AdaLoraConfig.loraDropout must be in [0, 1); got ${c.loraDropout}`);
  if (c.totalStep !== null) checkSchedule(c, c.totalStep);
  for (const [k, v] of Object.entries(c.rankPattern ?? {})) {
    if (!Array.isArray(v) || v.length !== c.initR || v.some((b) => typeof b !== 'boolean')) {
      throw new Error(`AdaLoraConfig.rankPattern['${k}'] must list ${c.initR} booleans (one per initial rank, init_r); got ${JSON.stringify(v)}`);
    }
  }
  return c;
}

/** PEFT's rule: the budget must have a phase to shrink in, tinit < total_step − tfinal. */
export function checkSchedule(c: AdaLoraConfig, totalStep: number): void {
  if (!(c.tinit < totalStep - c.tfinal)) {
    throw new Error(`AdaLoRA's schedule has no budgeting phase: tinit (${c.tinit}) must be below total_step (${totalStep}) − tfinal (${c.tfinal}). ` +
      'Lower adalora.tinit / adalora.tfinal or train for more steps.');
  }
}

/** The adapter_config.json object PEFT writes for an AdaLoraConfig (sorted keys). */
export function toPeftJson(c: AdaLoraConfig, baseModelClass: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    alpha_pattern: {},
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    beta1: c.beta1,
    beta2: c.beta2,
    bias: 'none',
    deltaT: c.deltaT,
    exclude_modules: c.excludeModules ?? null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    init_r: c.initR,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: c.layersToTransform ?? null,
    lora_alpha: c.loraAlpha,
    lora_bias: false,
    lora_dropout: c.loraDropout,
    modules_to_save: c.modulesToSave ?? null,
    orth_reg_weight: c.orthRegWeight,
    peft_type: 'ADALORA',
    r: c.r,
    rank_pattern: c.rankPattern ?? null,
    revision: null,
    target_modules: c.targetModules,
    target_r: c.targetR,
    task_type: null,
    tfinal: c.tfinal,
    tinit: c.tinit,
    total_step: c.totalStep,
    use_dora: false,
    use_rslora: false,
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Reads a PEFT AdaLoRA adapter_config.json object. */
export function fromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): AdaLoraConfig {
  if (json['peft_type'] !== 'ADALORA') throw new Error(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads ADALORA`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new Error(`${source}: target_modules is missing`);
  if (json['bias'] !== undefined && json['bias'] !== 'none') throw new Error(`${source}: bias '${String(json['bias'])}' is not supported; graft reads adapters with bias "none"`);
  const num = (k: string, fallback: number) => (json[k] === undefined || json[k] === null ? fallback : Number(json[k]));
  const pattern = json['rank_pattern'] as Record<string, boolean[]> | null | undefined;
  return adaLoraConfig({
    r: num('r', ADALORA_DEFAULTS.r),
    loraAlpha: num('lora_alpha', ADALORA_DEFAULTS.loraAlpha),
    loraDropout: num('lora_dropout', 0),
    initR: num('init_r', ADALORA_DEFAULTS.initR),
    targetR: num('target_r', ADALORA_DEFAULTS.targetR),
    tinit: num('tinit', 0),
    tfinal: num('tfinal', 0),
    deltaT: num('deltaT', 1),
    beta1: num('beta1', ADALORA_DEFAULTS.beta1),
    beta2: num('beta2', ADALORA_DEFAULTS.beta2),
    orthRegWeight: num('orth_reg_weight', ADALORA_DEFAULTS.orthRegWeight),
    totalStep: json['total_step'] === undefined || json['total_step'] === null ? null : Number(json['total_step']),
    rankPattern: pattern && Object.keys(pattern).length > 0 ? pattern : undefined,
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    layersToTransform: (json['layers_to_transform'] as number[] | null) ?? undefined,
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  });
}
