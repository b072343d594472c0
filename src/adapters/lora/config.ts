// LoraConfig with huggingface/peft's defaults, its adapter_config.json form (snake_case keys as
// PEFT writes them; unknown keys are tolerated on read), and the `lora` section of a run
// configuration.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';

export type LoraInit = boolean | 'gaussian' | 'pissa';

export interface LoraConfig extends AdapterConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
  useRslora: boolean;
  useDora: boolean;
  initLoraWeights: LoraInit;
}

/** The run configuration's `lora` section (LoRA and DoRA): what LoRA has beyond the shared adapter options. */
export const LoraOptionsSchema = z.object({
  rslora: z.boolean().default(false),
  init: z.union([z.boolean(), z.enum(['gaussian', 'pissa'])]).default(true),
}).strict();

/** LoraConfig from a run's shared adapter options and its `lora` section. */
export function loraConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>, useDora: boolean): LoraConfig {
  const o = LoraOptionsSchema.parse(own);
  return loraConfig({
    r: shared.r, loraAlpha: shared.alpha, loraDropout: shared.dropout, targetModules: shared.targets, excludeModules: shared.exclude,
    modulesToSave: shared.modulesToSave, rankPattern: shared.rankPattern, alphaPattern: shared.alphaPattern, layersToTransform: shared.layersToTransform,
    useRslora: o.rslora, initLoraWeights: o.init, useDora,
  });
}

export const LORA_DEFAULTS = { r: 8, loraAlpha: 8, loraDropout: 0, useRslora: false, useDora: false, initLoraWeights: true as LoraInit };

export function loraConfig(partial: Partial<LoraConfig> & { targetModules: TargetSpec }): LoraConfig {
  const c = { ...LORA_DEFAULTS, ...partial };
  if (!Number.isInteger(c.r) || c.r <= 0) throw new Error(`LoraConfig.r must be a positive integer; got ${c.r}`);
  if (!(c.loraDropout >= 0 && c.loraDropout < 1)) throw new Error(`LoraConfig.loraDropout must be in [0, 1); got ${c.loraDropout}`);
  if (![true, false, 'gaussian', 'pissa'].includes(c.initLoraWeights)) {
    throw new Error(`LoraConfig.initLoraWeights must be true, false, 'gaussian' or 'pissa'; got ${JSON.stringify(c.initLoraWeights)}`);
  }
  return c;
}

/** The adapter_config.json object PEFT writes for this configuration. */
export function toPeftJson(c: LoraConfig, baseModelClass: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    alpha_pattern: c.alphaPattern ?? {},
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    bias: 'none',
    exclude_modules: c.excludeModules ?? null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: c.initLoraWeights,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: c.layersToTransform ?? null,
    lora_alpha: c.loraAlpha,
    lora_bias: false,
    lora_dropout: c.loraDropout,
    modules_to_save: c.modulesToSave ?? null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: c.rankPattern ?? {},
    revision: null,
    target_modules: c.targetModules,
    task_type: null,
    use_dora: c.useDora,
    use_rslora: c.useRslora,
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Reads a PEFT adapter_config.json object (LoRA/DoRA). */
export function fromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): LoraConfig {
  if (json['peft_type'] !== 'LORA') throw new Error(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads LORA (DoRA is LORA with use_dora)`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new Error(`${source}: target_modules is missing`);
  if (json['bias'] !== undefined && json['bias'] !== 'none') throw new Error(`${source}: bias '${String(json['bias'])}' is not supported; graft reads adapters with bias "none"`);
  const init = json['init_lora_weights'];
  return loraConfig({
    r: Number(json['r'] ?? LORA_DEFAULTS.r),
    loraAlpha: Number(json['lora_alpha'] ?? LORA_DEFAULTS.loraAlpha),
    loraDropout: Number(json['lora_dropout'] ?? 0),
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    rankPattern: nonEmpty(json['rank_pattern'] as Record<string, number> | null),
    alphaPattern: nonEmpty(json['alpha_pattern'] as Record<string, number> | null),
    layersToTransform: (json['layers_to_transform'] as number[] | null) ?? undefined,
    useRslora: Boolean(json['use_rslora']),
    useDora: Boolean(json['use_dora']),
    // PiSSA moved the top singular triplets out of the base weight; loading an adapter made that
    // way recomputes the same residual base (the SVD is deterministic) before the factors load.
    initLoraWeights: init === 'gaussian' || init === 'pissa' || init === false ? (init as LoraInit) : true,
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  });
}

/** PEFT writes an empty pattern as {}; graft keeps "no pattern" as undefined. */
function nonEmpty<T>(pattern: Record<string, T> | null | undefined): Record<string, T> | undefined {
  return pattern && Object.keys(pattern).length > 0 ? pattern : undefined;
}
