// Which modules an adapter targets, with huggingface/peft's matching rules
// (tuners_utils.check_target_module_exists, utils/other.get_pattern_key).
import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';
import { Linear, Conv2d } from '../nn/layers.js';
import { AdapterLayer } from './layer.js';
import { ModulesToSaveWrapper } from './modules-to-save.js';

/** What a method can adapt: `canWrap` for plain layers, `isLayer` for its own grafted ones. */
export interface Adaptability {
  canWrap(m: Module): boolean;
  isLayer(m: Module): boolean;
  /** What `canWrap` accepts, for errors (default: 'Linear and Conv2d layers'). */
  readonly wraps?: string;
}

/**
 * 'all-linear' (PEFT's): every Linear but the head; 'all-blocks' (graft's, for methods that wrap
 * whole blocks such as Mona): every module the method can wrap.
 */
export type TargetSpec = string[] | string | 'all-linear' | 'all-blocks';
export const ALL_BLOCKS = 'all-blocks';

export interface TargetOptions {
  targetModules: TargetSpec;
  excludeModules?: string[] | string;
  modulesToSave?: string[];
  layersToTransform?: number[];
  /** Per-family aliases: a name such as 'q_proj' expands to the names this model uses. */
  aliases?: Record<string, string[]>;
}

/**
 * Per-family aliases: the projection names of Llama-style checkpoints (which DINOv3 uses) and what
 * each other naming scheme calls the same layer. An alias applies only when the name itself
 * matches no module, so a model that has `q_proj` keeps PEFT's literal meaning.
 */
export const TARGET_ALIASES: Record<string, readonly string[]> = {
  q_proj: ['attention.attention.query', 'attention.query', 'attn.q_proj', 'attn.q'],
  k_proj: ['attention.attention.key', 'attention.key', 'attn.k_proj', 'attn.k'],
  v_proj: ['attention.attention.value', 'attention.value', 'attn.v_proj', 'attn.v'],
  o_proj: ['attention.output.dense', 'attn.proj', 'self_attention.out_proj', 'attn.out_proj'],
  up_proj: ['mlp.fc1', 'mlp.weights_in', 'mlp.0'],
  down_proj: ['mlp.fc2', 'mlp.weights_out', 'mlp.3'],
};
const FUSED_QKV = ['attn.qkv', 'self_attention.in_proj', 'attention.qkv'];

function expandAliases(model: Module, names: string[], extra: Record<string, string[]> | undefined, can: Adaptability): string[] {
  const paths = candidates(model, can);
  const present = (name: string) => paths.some((p) => p === name || p.endsWith(`.${name}`));
  return names.flatMap((name) => {
    if (extra?.[name]) return extra[name]!;
    const alias = TARGET_ALIASES[name];
    if (!alias || present(name)) return [name];
    const hits = alias.filter(present);
    if (hits.length > 0) return hits;
    const fused = FUSED_QKV.find((f) => paths.some((p) => p.endsWith(`.${f}`)));
    if (fused && ['q_proj', 'k_proj', 'v_proj'].includes(name)) {
      throw new Error(`target '${name}': this model computes query, key and value in one fused layer ('${fused}', as its checkpoints store it), so '${name}' alone cannot be adapted. ` +
        `Target '${fused.split('.').pop()}' to adapt all three, or use a backbone with separate projections (dinov2_*, dinov3_*).`);
    }
    return [name];
  });
}

/** A list entry matches the key exactly or as a dotted suffix; a string is a full-match regex. */
function matches(key: string, spec: string[] | string): boolean {
  if (typeof spec === 'string') return new RegExp(`^(?:${spec})$`).test(key);
  return spec.some((name) => key === name || key.endsWith(`.${name}`));
}

function isModuleToSave(key: string, modulesToSave: readonly string[]): boolean {
  return modulesToSave.some((m) => new RegExp(`(^|.*\\.)${escape(m)}($|\\..*)`).test(key));
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The first numbered path segment after the first one, PEFT's layer index rule. */
function layerIndex(key: string): number | null {
  const m = /.*?\.[^.]*\.(\d+)\./.exec(`${key}.`) ?? /^[^.]*\.(\d+)\./.exec(`${key}.`);
  return m ? Number(m[1]) : null;
}

/** Any method's view when none is named: Linear and Conv2d layers, and grafted ones. */
export const LINEAR_AND_CONV: Adaptability = {
  canWrap: (m) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m) => m instanceof AdapterLayer,
};

function isAdaptable(m: Module, can: Adaptability): boolean {
  return can.canWrap(m) || can.isLayer(m);
}

function isLinearLike(m: Module): boolean {
  return m instanceof Linear || (m instanceof AdapterLayer && m.base_layer instanceof Linear);
}

/**
 * The modules of `model` that are not inside an adapter layer or a modules_to_save wrapper
 * (those internals are never targets themselves), with their paths, in model order.
 */
export function outerModules(model: Module): [string, Module][] {
  const out: [string, Module][] = [];
  const walk = (m: Module, path: string) => {
    out.push([path, m]);
    if (m instanceof AdapterLayer || m instanceof ModulesToSaveWrapper) return;
    for (const [name, child] of m.children()) walk(child, path ? `${path}.${name}` : name);
  };
  walk(model, '');
  return out;
}

function candidates(model: Module, can: Adaptability): string[] {
  return outerModules(model).filter(([p, m]) => p && isAdaptable(m, can)).map(([p]) => p);
}

/**
 * Paths of the modules to adapt, in model order. `all-linear` takes every Linear except the
 * model's head modules listed in modulesToSave. Throws when nothing matches, naming what exists.
 */
export function findTargets(model: Module, opts: TargetOptions, can: Adaptability & { name?: string } = LINEAR_AND_CONV): string[] {
  const modulesToSave = opts.modulesToSave ?? [];
  let spec: string[] | string = opts.targetModules;
  if (Array.isArray(spec)) spec = expandAliases(model, spec, opts.aliases, can);
  if (opts.layersToTransform && typeof spec === 'string' && spec !== 'all-linear') {
    throw new Error('layersToTransform needs targetModules as a list of names, not a regular expression (as in PEFT)');
  }
  const found: string[] = [];
  for (const [path, m] of outerModules(model)) {
    if (!path) continue;
    if (opts.excludeModules && matches(path, opts.excludeModules)) continue;
    if (isModuleToSave(path, modulesToSave)) continue;
    const hit = spec === 'all-linear' ? isLinearLike(m) : spec === ALL_BLOCKS ? isAdaptable(m, can) : matches(path, spec);
    if (!hit) continue;
    if (opts.layersToTransform) {
      const idx = layerIndex(path);
      if (idx === null || !opts.layersToTransform.includes(idx)) continue;
    }
    if (!isAdaptable(m, can)) {
      const what = m instanceof AdapterLayer ? `already carries another method's adapter (${m.constructor.name})` : `is a ${m.constructor.name}`;
      const narrow = can.wraps ? `Name those in targetModules, or '${ALL_BLOCKS}' for all of them` : `Narrow targetModules (e.g. '${path}.<child>')`;
      throw new ConfigError(`target '${path}' ${what}; ${can.name ?? 'an adapter'} adapts ${can.wraps ?? 'Linear and Conv2d layers'}. ${narrow}.`);
    }
    found.push(path);
  }
  if (found.length === 0) {
    // A numeric suffix (downsample.0) names a position, not a layer kind: show the parent's name with it.
    const names = [...new Set(candidates(model, can).filter((p) => !isModuleToSave(p, modulesToSave)).map((p) => {
      const parts = p.split('.');
      return /^\d+$/.test(parts[parts.length - 1]!) && parts.length > 1 ? parts.slice(-2).join('.') : parts[parts.length - 1]!;
    }))];
    const why = spec === 'all-linear' ? "'all-linear' takes every Linear but the new head, and this model has no other Linear (a CNN); "
      : spec === ALL_BLOCKS ? `'${ALL_BLOCKS}' takes every module ${can.name ?? 'the method'} adapts, ${can.wraps ?? 'Linear and Conv2d layers'}, and this model has none; ` : '';
    if (names.length === 0) throw new ConfigError(`adapter.targets: no module matches ${JSON.stringify(opts.targetModules)}; ${why}choose another method or backbone ('graft inspect MODEL' lists its layers)`);
    throw new ConfigError(`adapter.targets: no module matches ${JSON.stringify(opts.targetModules)}; ${why}give --targets with layer names such as ${names.slice(0, 8).join(', ')} or a regex over module paths ('graft inspect MODEL' lists them)`);
  }
  return found;
}

/** PEFT's get_pattern_key: the first pattern p with /(.*\.)?(p)$/ matching the module path. */
export function patternValue<T>(path: string, pattern: Record<string, T> | undefined, fallback: T): T {
  for (const [key, value] of Object.entries(pattern ?? {})) {
    if (new RegExp(`^(.*\\.)?(${key})$`).test(path)) return value;
  }
  return fallback;
}
