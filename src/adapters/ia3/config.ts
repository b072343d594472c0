// IA3Config with huggingface/peft's defaults (tuners/ia3/config.py), its adapter_config.json form
// and the `ia3` section of a run configuration. (IA)³ has no rank, alpha or dropout, and PEFT's
// IA3Config has no layers_to_transform, so those shared options do not apply.
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';

export interface Ia3Config extends AdapterConfig {
  /** Targets whose vector scales the input (PEFT: a regex, full match, or names matched as key suffixes). */
  feedforwardModules: string[] | string;
  initIa3Weights: boolean;
}

/** The run configuration's `ia3` section. */
export const Ia3OptionsSchema = z.object({
  feedforwardModules: z.union([z.array(z.string()), z.string()]).default([]),
  initIa3Weights: z.boolean().default(true),
}).strict();

/** Ia3Config from a run's shared adapter options and its `ia3` section; `r` and `alpha` are not used. */
export function ia3ConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): Ia3Config {
  const o = Ia3OptionsSchema.parse(own);
  if (shared.dropout > 0) throw new Error('adapter.dropout: (IA)³ has no dropout; remove it (or choose a method with dropout, e.g. lora)');
  if (shared.rankPattern || shared.alphaPattern) throw new Error('adapter.rankPattern/alphaPattern: (IA)³ has no rank or alpha; remove them');
  if (shared.layersToTransform) throw new Error("adapter.layersToTransform: PEFT's IA3Config has no layers_to_transform; list the layers in adapter.targets instead");
  return ia3Config({
    targetModules: shared.targets, excludeModules: shared.exclude, modulesToSave: shared.modulesToSave,
    feedforwardModules: o.feedforwardModules, initIa3Weights: o.initIa3Weights,
  });
}

/** Checks a configuration as PEFT's IA3Config.__post_init__ does (feedforward ⊆ targets when both are lists). */
export function ia3Config(partial: Partial<Ia3Config> & { targetModules: TargetSpec }): Ia3Config {
  const c: Ia3Config = { feedforwardModules: [], initIa3Weights: true, ...partial };
  if (c.layersToTransform) throw new Error("Ia3Config.layersToTransform: PEFT's IA3Config has no layers_to_transform; list the layers in targetModules instead");
  const ff = c.feedforwardModules;
  if (Array.isArray(ff) && Array.isArray(c.targetModules)) {
    const targets = new Set(c.targetModules);
    const extra = ff.filter((m) => !targets.has(m));
    if (extra.length) {
      throw new Error(`feedforwardModules must be a subset of targetModules (as in PEFT): ${extra.map((m) => `'${m}'`).join(', ')} ${extra.length > 1 ? 'are' : 'is'} not a target; add ${extra.length > 1 ? 'them' : 'it'} to the targets or remove ${extra.length > 1 ? 'them' : 'it'} from feedforwardModules`);
    }
  }
  return c;
}

/** PEFT's IA3Model._check_target_module_feedforward: a string is a full-match regex, a list entry matches as a key suffix. */
export function isFeedforward(path: string, ff: string[] | string): boolean {
  if (typeof ff === 'string') return new RegExp(`^(?:${ff})$`).test(path);
  return ff.some((name) => path.endsWith(name));
}

/** The adapter_config.json object PEFT writes for this configuration (sorted keys). */
export function ia3ToPeftJson(c: Ia3Config, baseModelClass: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    exclude_modules: c.excludeModules ?? null,
    fan_in_fan_out: false,
    // PEFT asks for feedforward_modules when it is null and the model is not a known transformer.
    feedforward_modules: c.feedforwardModules,
    inference_mode: true,
    init_ia3_weights: c.initIa3Weights,
    modules_to_save: c.modulesToSave ?? null,
    peft_type: 'IA3',
    revision: null,
    target_modules: c.targetModules,
    task_type: null,
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Reads a PEFT adapter_config.json object of peft_type IA3. */
export function ia3FromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): Ia3Config {
  if (json['peft_type'] !== 'IA3') throw new Error(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads IA3`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new Error(`${source}: target_modules is missing`);
  if (json['fan_in_fan_out'] === true) {
    // PEFT turns it off for nn.Linear too; graft's Linear and Conv2d weights are always (out, in, …).
    console.warn(`${source}: fan_in_fan_out is true, but graft's layers store weights as (out, in); reading it as false, as PEFT does for nn.Linear`);
  }
  return ia3Config({
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    feedforwardModules: (json['feedforward_modules'] as string[] | string | null) ?? [],
    initIa3Weights: json['init_ia3_weights'] === undefined ? true : Boolean(json['init_ia3_weights']),
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  });
}
