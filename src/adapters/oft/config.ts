// OFTConfig with huggingface/peft's current defaults (tuners/oft/config.py), its
// adapter_config.json form and the `oft` section of a run configuration. OFT's `r` is its block
// count, not a rank: PEFT's default is r = 0 with oft_block_size = 32, so the shared adapter.r and
// adapter.alpha do not apply; r and oftBlockSize live in the `oft` section (exactly one nonzero).
import { z } from 'zod';
import type { TargetSpec } from '../targets.js';
import type { AdapterConfig, SharedAdapterOptions } from '../method.js';

export interface OftConfig extends AdapterConfig {
  /** Blocks per layer (0: derived from oftBlockSize). */
  r: number;
  /** Block size (0: derived from r). */
  oftBlockSize: number;
  /** Probability of replacing a block of the rotation by the identity during training. */
  moduleDropout: number;
  /** Constrained OFT: each block's skew-symmetric matrix is projected into a ball of radius eps/√blocks. */
  coft: boolean;
  eps: number;
  /** One block shared by all blocks of a layer. */
  blockShare: boolean;
  /** true: the rotation starts at the identity; false: its parameters ~ N(0, 0.1²). */
  initWeights: boolean;
  /** The Cayley transform by PEFT's truncated Neumann series instead of the exact inverse. */
  useCayleyNeumann: boolean;
  numCayleyNeumannTerms: number;
}

export const OFT_DEFAULTS = {
  r: 0, oftBlockSize: 32, moduleDropout: 0, coft: false, eps: 6e-5, blockShare: false, initWeights: true,
  useCayleyNeumann: true, numCayleyNeumannTerms: 5,
};

/** The run configuration's `oft` section. */
export const OftOptionsSchema = z.object({
  r: z.number().int().min(0).default(OFT_DEFAULTS.r),
  oftBlockSize: z.number().int().min(0).default(OFT_DEFAULTS.oftBlockSize),
  moduleDropout: z.number().min(0).max(0.99).default(OFT_DEFAULTS.moduleDropout),
  coft: z.boolean().default(OFT_DEFAULTS.coft),
  eps: z.number().positive().default(OFT_DEFAULTS.eps),
  blockShare: z.boolean().default(OFT_DEFAULTS.blockShare),
  initWeights: z.boolean().default(OFT_DEFAULTS.initWeights),
  useCayleyNeumann: z.boolean().default(OFT_DEFAULTS.useCayleyNeumann),
  numCayleyNeumannTerms: z.number().int().positive().default(OFT_DEFAULTS.numCayleyNeumannTerms),
}).strict();

export function oftConfigFromRun(shared: SharedAdapterOptions, own: Record<string, unknown>): OftConfig {
  const o = OftOptionsSchema.parse(own);
  if (shared.dropout > 0) throw new Error('adapter.dropout: OFT has no input dropout; use oft.moduleDropout (the probability of a block being the identity)');
  if (shared.rankPattern || shared.alphaPattern) throw new Error('adapter.rankPattern/alphaPattern: OFT has no per-layer rank or alpha in PEFT; remove them');
  return oftConfig({
    ...o, targetModules: shared.targets, excludeModules: shared.exclude, modulesToSave: shared.modulesToSave, layersToTransform: shared.layersToTransform,
  });
}

/** Checks a configuration as PEFT's OFTConfig.__post_init__ does. */
export function oftConfig(partial: Partial<OftConfig> & { targetModules: TargetSpec }): OftConfig {
  const c: OftConfig = { ...OFT_DEFAULTS, ...partial };
  for (const k of ['r', 'oftBlockSize'] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 0) throw new Error(`OftConfig.${k} must be an integer ≥ 0; got ${c[k]}`);
  }
  if (c.r === 0 && c.oftBlockSize === 0) throw new Error('OFT needs r (blocks per layer) or oftBlockSize (block size) nonzero; both are 0. Set one, e.g. oftBlockSize 32');
  if (c.r !== 0 && c.oftBlockSize !== 0) {
    throw new Error(`OFT takes r (${c.r}) or oftBlockSize (${c.oftBlockSize}), not both, since r × oftBlockSize = input features; set the other to 0`);
  }
  if (!(c.moduleDropout >= 0 && c.moduleDropout < 1)) throw new Error(`OftConfig.moduleDropout must be in [0, 1); got ${c.moduleDropout}`);
  if (!(c.eps > 0)) throw new Error(`OftConfig.eps must be positive; got ${c.eps}`);
  if (!Number.isInteger(c.numCayleyNeumannTerms) || c.numCayleyNeumannTerms < 1) {
    throw new Error(`OftConfig.numCayleyNeumannTerms must be a positive integer; got ${c.numCayleyNeumannTerms}`);
  }
  return c;
}

/** The adapter_config.json object PEFT writes for this configuration (sorted keys). */
export function oftToPeftJson(c: OftConfig, baseModelClass: string): Record<string, unknown> {
  const json: Record<string, unknown> = {
    auto_mapping: { base_model_class: baseModelClass, parent_library: 'graft' },
    base_model_name_or_path: c.baseModelName ?? null,
    bias: 'none',
    block_share: c.blockShare,
    coft: c.coft,
    eps: c.eps,
    exclude_modules: c.excludeModules ?? null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_weights: c.initWeights,
    layers_pattern: null,
    layers_to_transform: c.layersToTransform ?? null,
    module_dropout: c.moduleDropout,
    modules_to_save: c.modulesToSave ?? null,
    num_cayley_neumann_terms: c.numCayleyNeumannTerms,
    oft_block_size: c.oftBlockSize,
    peft_type: 'OFT',
    // PEFT warns that a Cayley–Neumann file without a version ≥ 0.18 predates the series graft
    // computes (the one PEFT 0.18 introduced).
    peft_version: '0.18.0',
    r: c.r,
    revision: null,
    target_modules: c.targetModules,
    task_type: null,
    use_cayley_neumann: c.useCayleyNeumann,
  };
  return Object.fromEntries(Object.entries(json).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Reads a PEFT adapter_config.json object of peft_type OFT (PEFT ≥ 0.14's layout). */
export function oftFromPeftJson(json: Record<string, unknown>, source = 'adapter_config.json'): OftConfig {
  if (json['peft_type'] !== 'OFT') throw new Error(`${source}: peft_type is ${JSON.stringify(json['peft_type'])}; this loader reads OFT`);
  if (json['target_modules'] === undefined || json['target_modules'] === null) throw new Error(`${source}: target_modules is missing`);
  if (json['oft_block_size'] === undefined) {
    throw new Error(`${source}: no oft_block_size, so it was written by PEFT < 0.14, whose OFT weights have another layout; retrain the adapter with PEFT ≥ 0.14 or graft`);
  }
  if (json['bias'] !== undefined && json['bias'] !== 'none') throw new Error(`${source}: bias '${String(json['bias'])}' is not supported; graft reads adapters with bias "none"`);
  const num = (k: string, d: number) => (json[k] === undefined || json[k] === null ? d : Number(json[k]));
  const bool = (k: string, d: boolean) => (json[k] === undefined || json[k] === null ? d : Boolean(json[k]));
  const neumann = bool('use_cayley_neumann', OFT_DEFAULTS.useCayleyNeumann);
  if (neumann && versionBelow(json['peft_version'], [0, 18])) {
    console.warn(`${source}: this Cayley–Neumann OFT adapter was written by PEFT < 0.18 (peft_version ${JSON.stringify(json['peft_version'] ?? null)}), whose series differs slightly from the current one graft computes; retrain it for exact results`);
  }
  return oftConfig({
    r: num('r', OFT_DEFAULTS.r),
    oftBlockSize: num('oft_block_size', OFT_DEFAULTS.oftBlockSize),
    moduleDropout: num('module_dropout', 0),
    coft: bool('coft', false),
    eps: num('eps', OFT_DEFAULTS.eps),
    blockShare: bool('block_share', false),
    initWeights: bool('init_weights', true),
    useCayleyNeumann: neumann,
    numCayleyNeumannTerms: num('num_cayley_neumann_terms', OFT_DEFAULTS.numCayleyNeumannTerms),
    targetModules: json['target_modules'] as TargetSpec,
    excludeModules: (json['exclude_modules'] as string[] | string | null) ?? undefined,
    modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined,
    layersToTransform: (json['layers_to_transform'] as number[] | null) ?? undefined,
    baseModelName: (json['base_model_name_or_path'] as string | null) ?? undefined,
  });
}

function versionBelow(version: unknown, min: [number, number]): boolean {
  if (typeof version !== 'string') return true;
  const [major = 0, minor = 0] = version.split('@')[0]!.split('.').map((p) => Number.parseInt(p, 10) || 0);
  return major < min[0] || (major === min[0] && minor < min[1]);
}
