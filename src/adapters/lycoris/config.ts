// What LoHaConfig and LoKrConfig share (PEFT's LycorisConfig and the fields both dataclasses
// declare), with PEFT's defaults, and the adapter_config.json fields both write.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';

export interface LycorisConfig extends AdapterConfig {
  r: number;
  alpha: number;
  rankDropout: number;
  moduleDropout: number;
  useEffectiveConv2d: boolean;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
}

export const LYCORIS_DEFAULTS = { r: 8, alpha: 8, rankDropout: 0, moduleDropout: 0, useEffectiveConv2d: false };

/** The run-configuration fields of both methods' sections (camelCase of PEFT's names). */
export const lycorisOptionFields = {
  rankDropout: z.number().min(0).max(0.99).default(0),
  moduleDropout: z.number().min(0).max(0.99).default(0),
  useEffectiveConv2d: z.boolean().default(false),
};

/**
 * The shared adapter options as a LyCORIS configuration. PEFT's LyCORIS configs have no input
 * dropout, so a nonzero shared `dropout` is refused rather than silently ignored.
 */
export function lycorisFieldsFromRun(shared: SharedAdapterOptions, section: string): Omit<LycorisConfig, 'rankDropout' | 'moduleDropout' | 'useEffectiveConv2d'> {
  if (shared.dropout > 0) {
    throw new Error(`adapter.dropout: ${section} has no input dropout (PEFT's config has none); set ${section}.rankDropout or ${section}.moduleDropout instead`);
  }
  return {
    r: shared.r, alpha: shared.alpha, targetModules: shared.targets, excludeModules: shared.exclude, modulesToSave: shared.modulesToSave,
    rankPattern: shared.rankPattern, alphaPattern: shared.alphaPattern, layersToTransform: shared.layersToTransform,
  };
}

/** Checks the shared fields of a configuration built in code; `what` names the config class. */
export function checkLycorisConfig<C extends LycorisConfig>(c: C, what: string): C {
  if (!Number.isInteger(c.r) || c.r <= 0) throw new Error(`${what}.r must be a positive integer; got ${c.r}`);
  if (!(c.alpha > 0)) throw new Error(`${what}.alpha must be positive; got ${c.alpha}`);
  if (!(c.rankDropout >= 0 && c.rankDropout < 1)) throw new Error(`${what}.rankDropout must be in [0, 1); got ${c.rankDropout}`);
  if (!(c.moduleDropout >= 0 && c.moduleDropout < 1)) throw new Error(`${what}.moduleDropout must be in [0, 1); got ${c.moduleDropout}`);
  for (const [field, pattern] of [['rankPattern', c.rankPattern], ['alphaPattern', c.alphaPattern]] as const) {
    for (const [k, v] of Object.entries(pattern ?? {})) {
      if (!(v > 0) || (field === 'rankPattern' && !Number.isInteger(v))) throw new Error(`${what}.${field}['${k}'] must be a positive ${field === 'rankPattern' ? 'integer' : 'number'}; got ${v}`);
    }
  }
  return c;
}

/** The adapter_config.json fields LoHaConfig and LoKrConfig both write, by PEFT's names. */
export function lycorisPeftJson(c: LycorisConfig, peftType: string, baseModelClass: string): Record<string, unknown> {
  return {
    alpha: c.alpha,
    alpha_pattern: c.alphaPattern ?? {},
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    exclude_modules: c.excludeModules ?? null,
    inference_mode: true,
    layers_pattern: null,
    layers_to_transform: c.layersToTransform ?? null,
    module_dropout: c.moduleDropout,
    modules_to_save: c.modulesToSave ?? null,
    peft_type: peftType,
    r: c.r,
    rank_dropout: c.rankDropout,
    rank_pattern: c.rankPattern ?? {},
    revision: null,
    target_modules: c.targetModules,
    task_type: null,
    use_effective_conv2d: c.useEffectiveConv2d,
  };
}

export function sortedKeys(json: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The shared fields of a PEFT LoHa/LoKr adapter_config.json object (unknown keys tolerated). */
export function readLycorisPeftJson(json: Record<string, unknown>, peftType: string, source: string): LycorisConfig {
  if (json['peft_type'] !== peftType) throw new Error(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads ${peftType}`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new Error(`${source}: target_modules is missing`);
  const layers = json['layers_to_transform'];
  return {
    r: Number(json['r'] ?? LYCORIS_DEFAULTS.r),
    alpha: Number(json['alpha'] ?? LYCORIS_DEFAULTS.alpha),
    rankDropout: Number(json['rank_dropout'] ?? 0),
    moduleDropout: Number(json['module_dropout'] ?? 0),
    useEffectiveConv2d: Boolean(json['use_effective_conv2d']),
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    // PEFT also accepts a single layer index.
    layersToTransform: typeof layers === 'number' ? [layers] : (layers as number[] | null) ?? undefined,
    rankPattern: nonEmpty(json['rank_pattern'] as Record<string, number> | null),
    alphaPattern: nonEmpty(json['alpha_pattern'] as Record<string, number> | null),
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  };
}

/** PEFT writes an empty pattern as {}; graft keeps "no pattern" as undefined. */
function nonEmpty<T>(pattern: Record<string, T> | null | undefined): Record<string, T> | undefined {
  return pattern && Object.keys(pattern).length > 0 ? pattern : undefined;
}
