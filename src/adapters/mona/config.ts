// MonaConfig: graft's configuration of Mona (PEFT has no Mona tuner), its adapter_config.json
// form (PEFT's field names where they exist, peft_type "MONA") and the `mona` section of a run
// configuration. Targets are blocks with residual taps; 'all-blocks' (the default) takes every one.
import { z } from 'zod';
import { ALL_BLOCKS, type TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';
import { ConfigError } from '../../errors.js';

export interface MonaConfig extends AdapterConfig {
  /** Inner width of each module (the reference: 64). */
  dim: number;
  /** Dropout after the GELU (the reference: 0.1). */
  dropout: number;
  /** project2 starts at zero (the adapted model is the base at init); the reference starts it as a 0.02-std normal like project1. */
  zeroInitUp: boolean;
}

export const MONA_PEFT_TYPE = 'MONA';

/** The run configuration's `mona` section. */
export const MonaOptionsSchema = z.object({
  dim: z.number().int().positive().default(64),
  dropout: z.number().min(0).max(0.99).default(0.1),
  zeroInitUp: z.boolean().default(false),
}).strict();

/** MonaConfig from a run's shared adapter options and its `mona` section; the shared rank and alpha do not apply. */
export function monaConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): MonaConfig {
  const o = MonaOptionsSchema.parse(own);
  if (shared.dropout > 0) throw new ConfigError('adapter.dropout: Mona has its own dropout after the GELU; set mona.dropout (default 0.1) instead');
  if (shared.rankPattern || shared.alphaPattern) throw new ConfigError('adapter.rankPattern/alphaPattern: Mona has no rank or alpha; its width is mona.dim (--mona-dim)');
  return monaConfig({
    targetModules: shared.targets, excludeModules: shared.exclude, modulesToSave: shared.modulesToSave, layersToTransform: shared.layersToTransform,
    dim: o.dim, dropout: o.dropout, zeroInitUp: o.zeroInitUp,
  });
}

export function monaConfig(partial: Partial<MonaConfig>): MonaConfig {
  const c: MonaConfig = { targetModules: ALL_BLOCKS, dim: 64, dropout: 0.1, zeroInitUp: false, ...partial };
  if (!Number.isInteger(c.dim) || c.dim < 1) throw new ConfigError(`MonaConfig.dim must be a positive integer; got ${c.dim}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new ConfigError(`MonaConfig.dropout must be in [0, 1); got ${c.dropout}`);
  if (c.targetModules === 'all-linear') {
    throw new ConfigError(`MonaConfig.targetModules: Mona inserts modules into blocks, not Linear layers; leave the targets out (or give '${ALL_BLOCKS}') for every block, or name blocks such as 'features.1.0' or 'blocks.3'`);
  }
  return c;
}

/** The adapter_config.json object for this configuration (sorted keys). */
export function monaToPeftJson(c: MonaConfig, baseModelClass: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    exclude_modules: c.excludeModules ?? null,
    inference_mode: true,
    layers_to_transform: c.layersToTransform ?? null,
    modules_to_save: c.modulesToSave ?? null,
    mona_dim: c.dim,
    mona_dropout: c.dropout,
    mona_zero_init_up: c.zeroInitUp,
    peft_type: MONA_PEFT_TYPE,
    revision: null,
    target_modules: c.targetModules,
    task_type: null,
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Reads an adapter_config.json object of peft_type MONA. */
export function monaFromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): MonaConfig {
  if (json['peft_type'] !== MONA_PEFT_TYPE) throw new ConfigError(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads ${MONA_PEFT_TYPE}`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new ConfigError(`${source}: target_modules is missing`);
  const num = (key: string, fallback: number) => {
    const v = json[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number') throw new ConfigError(`${source}: ${key} must be a number; got ${JSON.stringify(v)}`);
    return v;
  };
  return monaConfig({
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    layersToTransform: (json['layers_to_transform'] as number[] | null) ?? undefined,
    dim: num('mona_dim', 64),
    dropout: num('mona_dropout', 0.1),
    zeroInitUp: json['mona_zero_init_up'] === true,
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  });
}
