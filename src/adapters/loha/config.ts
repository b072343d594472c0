// LoHaConfig with huggingface/peft's defaults (loha/config.py), its adapter_config.json form and
// the run configuration's `loha` section.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { SharedAdapterOptions } from '../method.js';
import {
  checkLycorisConfig, LYCORIS_DEFAULTS, lycorisFieldsFromRun, lycorisOptionFields, lycorisPeftJson, readLycorisPeftJson, sortedKeys, type LycorisConfig,
} from '../lycoris/config.js';

export interface LohaConfig extends LycorisConfig {
  /** PEFT's init_weights: true → w2_b = 0 (ΔW = 0 at start); false → every factor random. */
  initWeights: boolean;
}

/** The run configuration's `loha` section: what LoHa has beyond the shared adapter options. */
export const LohaOptionsSchema = z.object({
  ...lycorisOptionFields,
  initWeights: z.boolean().default(true),
}).strict();

export function lohaConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): LohaConfig {
  const o = LohaOptionsSchema.parse(own);
  return lohaConfig({ ...lycorisFieldsFromRun(shared, 'loha'), ...o });
}

export function lohaConfig(partial: Partial<LohaConfig> & { targetModules: TargetSpec }): LohaConfig {
  const c: LohaConfig = { ...LYCORIS_DEFAULTS, initWeights: true, ...partial };
  if (typeof c.initWeights !== 'boolean') throw new Error(`LoHaConfig.initWeights must be true or false; got ${JSON.stringify(c.initWeights)}`);
  return checkLycorisConfig(c, 'LoHaConfig');
}

/** The adapter_config.json object PEFT writes for this configuration. */
export function lohaToPeftJson(c: LohaConfig, baseModelClass: string): Record<string, unknown> {
  return sortedKeys({ ...lycorisPeftJson(c, 'LOHA', baseModelClass), init_weights: c.initWeights });
}

export function lohaFromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): LohaConfig {
  return lohaConfig({ ...readLycorisPeftJson(json, 'LOHA', source), initWeights: json['init_weights'] === undefined ? true : Boolean(json['init_weights']) });
}
