// LoKrConfig with huggingface/peft's defaults (lokr/config.py), its adapter_config.json form and
// the run configuration's `lokr` section.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { SharedAdapterOptions } from '../method.js';
import {
  checkLycorisConfig, LYCORIS_DEFAULTS, lycorisFieldsFromRun, lycorisOptionFields, lycorisPeftJson, readLycorisPeftJson, sortedKeys, type LycorisConfig,
} from '../lycoris/config.js';

/** PEFT's init_weights: true → w1 (or w1_a) = 0; 'lycoris' → w2 (or w2_b) = 0; false → every factor random. */
export type LokrInit = boolean | 'lycoris';

export interface LokrConfig extends LycorisConfig {
  /** Also factorise the left Kronecker factor w1 = w1_a w1_b when r < max(its dims) / 2. */
  decomposeBoth: boolean;
  /** The factorisation's divider (−1: the divisor pair closest to √dim). */
  decomposeFactor: number;
  /** Whether rank dropout rescales the kept rows by 1 / (kept share). */
  rankDropoutScale: boolean;
  initWeights: LokrInit;
}

const decomposeFactor = z.number().int().refine((v) => v === -1 || v >= 1, { message: 'decomposeFactor must be -1 (closest to √dim) or a positive divider' });

/** The run configuration's `lokr` section: what LoKr has beyond the shared adapter options. */
export const LokrOptionsSchema = z.object({
  ...lycorisOptionFields,
  decomposeBoth: z.boolean().default(false),
  decomposeFactor: decomposeFactor.default(-1),
  rankDropoutScale: z.boolean().default(false),
  initWeights: z.union([z.boolean(), z.literal('lycoris')]).default(true),
}).strict();

export function lokrConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): LokrConfig {
  const o = LokrOptionsSchema.parse(own);
  return lokrConfig({ ...lycorisFieldsFromRun(shared, 'lokr'), ...o });
}

export const LOKR_DEFAULTS = { decomposeBoth: false, decomposeFactor: -1, rankDropoutScale: false, initWeights: true as LokrInit };

export function lokrConfig(partial: Partial<LokrConfig> & { targetModules: TargetSpec }): LokrConfig {
  const c: LokrConfig = { ...LYCORIS_DEFAULTS, ...LOKR_DEFAULTS, ...partial };
  if (![true, false, 'lycoris'].includes(c.initWeights)) throw new Error(`LoKrConfig.initWeights must be true, false or 'lycoris'; got ${JSON.stringify(c.initWeights)}`);
  if (!decomposeFactor.safeParse(c.decomposeFactor).success) throw new Error(`LoKrConfig.decomposeFactor must be -1 or a positive integer; got ${c.decomposeFactor}`);
  return checkLycorisConfig(c, 'LoKrConfig');
}

/** The adapter_config.json object PEFT writes for this configuration. */
export function lokrToPeftJson(c: LokrConfig, baseModelClass: string): Record<string, unknown> {
  return sortedKeys({
    ...lycorisPeftJson(c, 'LOKR', baseModelClass),
    decompose_both: c.decomposeBoth,
    decompose_factor: c.decomposeFactor,
    init_weights: c.initWeights,
    rank_dropout_scale: c.rankDropoutScale,
  });
}

export function lokrFromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): LokrConfig {
  const init = json['init_weights'];
  return lokrConfig({
    ...readLycorisPeftJson(json, 'LOKR', source),
    decomposeBoth: Boolean(json['decompose_both']),
    decomposeFactor: Number(json['decompose_factor'] ?? -1),
    rankDropoutScale: Boolean(json['rank_dropout_scale']),
    initWeights: init === undefined ? true : init === 'lycoris' ? 'lycoris' : Boolean(init),
  });
}
