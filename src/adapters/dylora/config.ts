// DyLoRA's configuration (Valipour et al. 2023). PEFT has no DyLoRA, so its file is PEFT's LoRA
// layout (peft_type LORA, r = r_max, lora_alpha) plus graft's own field
//   "graft_dylora": { "r_min", "r_max", "mode", "chosen_rank", "eval_ranks" }
// which Python PEFT ignores (it loads the whole adapter as a LoRA of rank r_max, i.e. DyLoRA at
// b = r_max). The `dylora` section of a run configuration holds what DyLoRA adds to the shared options.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';
import { loraConfig, toPeftJson as loraToPeftJson, fromPeftJson as loraFromPeftJson } from '../lora/config.js';

/** 'frozen': only the b-th row of A and column of B get gradient (the official code); 'prefix': all of A[:b], B[:, :b]. */
export type DyLoraMode = 'frozen' | 'prefix';

export interface DyLoraConfig extends AdapterConfig {
  /** r_max: the rank of the stored matrices. */
  r: number;
  loraAlpha: number;
  loraDropout: number;
  rMin: number;
  mode: DyLoraMode;
  /** Ranks compared on the validation split after training (default: every rank rMin…r). */
  evalRanks?: number[];
  /** The rank the adapter computes at outside training (default r): the one validation chose. */
  chosenRank: number | null;
}

export const DyLoraOptionsSchema = z.object({
  rMin: z.number().int().positive().default(1),
  mode: z.enum(['frozen', 'prefix']).default('frozen'),
  evalRanks: z.array(z.number().int().positive()).min(1).optional(),
}).strict();

export function dyLoraConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): DyLoraConfig {
  const o = DyLoraOptionsSchema.parse(own);
  if (shared.rankPattern || shared.alphaPattern) throw new Error('adapter.rankPattern / alphaPattern: DyLoRA draws one rank for every layer; remove the pattern');
  return dyLoraConfig({
    r: shared.r, loraAlpha: shared.alpha, loraDropout: shared.dropout, targetModules: shared.targets, excludeModules: shared.exclude,
    modulesToSave: shared.modulesToSave, layersToTransform: shared.layersToTransform, rMin: o.rMin, mode: o.mode, evalRanks: o.evalRanks, chosenRank: null,
  });
}

export function dyLoraConfig(partial: Partial<DyLoraConfig> & { targetModules: TargetSpec }): DyLoraConfig {
  const c: DyLoraConfig = { r: 8, loraAlpha: 8, loraDropout: 0, rMin: 1, mode: 'frozen', chosenRank: null, ...partial };
  loraConfig({ ...c });
  if (!Number.isInteger(c.rMin) || c.rMin < 1 || c.rMin > c.r) throw new Error(`DyLoRA rMin must be an integer in 1…r (${c.r}); got ${c.rMin}`);
  if (c.mode !== 'frozen' && c.mode !== 'prefix') throw new Error(`DyLoRA mode must be 'frozen' or 'prefix'; got ${JSON.stringify(c.mode)}`);
  for (const b of [...(c.evalRanks ?? []), ...(c.chosenRank === null ? [] : [c.chosenRank])]) checkRank(c, b);
  return c;
}

/** A rank the adapter can compute at: rMin ≤ b ≤ r. */
export function checkRank(c: DyLoraConfig, b: number): void {
  if (!Number.isInteger(b) || b < c.rMin || b > c.r) throw new Error(`DyLoRA rank ${b} is outside the trained range ${c.rMin}…${c.r}; choose a rank in it`);
}

export function toPeftJson(c: DyLoraConfig, baseModelClass: string): Record<string, unknown> {
  const json = loraToPeftJson(loraConfig({ ...c, useDora: false, useRslora: false, initLoraWeights: true }), baseModelClass);
  json['graft_dylora'] = { chosen_rank: c.chosenRank, eval_ranks: c.evalRanks ?? null, mode: c.mode, r_max: c.r, r_min: c.rMin };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

export function fromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): DyLoraConfig {
  const d = json['graft_dylora'] as Record<string, unknown> | undefined;
  if (!d || typeof d !== 'object') throw new Error(`${source}: no graft_dylora field; this is a plain LoRA adapter (load it with method lora)`);
  const l = loraFromPeftJson(json, source);
  if (Number(d['r_max']) !== l.r) throw new Error(`${source}: graft_dylora.r_max (${String(d['r_max'])}) differs from r (${l.r})`);
  return dyLoraConfig({
    r: l.r, loraAlpha: l.loraAlpha, loraDropout: l.loraDropout, targetModules: l.targetModules, excludeModules: l.excludeModules,
    modulesToSave: l.modulesToSave, layersToTransform: l.layersToTransform, baseModelName: l.baseModelName,
    rMin: Number(d['r_min'] ?? 1), mode: (d['mode'] ?? 'frozen') as DyLoraMode,
    evalRanks: Array.isArray(d['eval_ranks']) ? (d['eval_ranks'] as number[]) : undefined,
    chosenRank: d['chosen_rank'] === null || d['chosen_rank'] === undefined ? null : Number(d['chosen_rank']),
  });
}
