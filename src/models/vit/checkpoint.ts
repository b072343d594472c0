// Loading a checkpoint into a ViT-family model by the checkpoint's own names. A model describes
// its layout (the naming schemes it reads, the model prefixes to strip, its head and position
// embeddings); the loader strips the prefix, detects the scheme from the keys, renames where a
// scheme needs it (torchvision, earlier DINOv3 names), resizes position embeddings to the
// model's grid the way the checkpoint's library does, and loads strictly (buffers graft derives
// may be absent, as in the CNN loader; DINOv3's RoPE periods and key-bias mask, which graft
// computes rather than stores, are dropped by the scheme's rename).
import type { LoadResult } from '../../nn/module.js';
import { reshape } from '../../ops/layout.js';
import { noGrad } from '../../tensor/autograd.js';
import { fmt, shapeEq } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import { loadSafetensors } from '../../io/safetensors.js';
import type { VisionModel } from '../model.js';
import { CheckpointFormatError } from '../checkpoint-error.js';
import { completeDerivedBuffers } from '../derived-buffers.js';
import { resamplePosEmbed, squareGrid, type PosEmbedResize } from './pos-embed.js';

export interface CheckpointScheme {
  /** Shown in reports and errors: 'timm', 'torchvision', 'transformers', … */
  name: string;
  /** Matches a key only this scheme's checkpoints have (after prefix stripping). */
  signature: RegExp;
  /** An example key of the scheme, for error messages. */
  example: string;
  /** The model's name for a checkpoint key (prefix already stripped); null drops the key (e.g. non-persistent buffers). */
  rename(key: string): string | null;
  /** How the scheme's library resizes position embeddings to another grid. */
  posEmbedResize: PosEmbedResize;
}

export interface CheckpointLayout {
  family: string;
  /** Model prefixes a checkpoint may carry (`dinov2.` in Dinov2ForImageClassification). */
  prefixes: readonly string[];
  schemes: readonly CheckpointScheme[];
  /** Prefix of the classification head's keys (`head.`, `classifier.`). */
  headPrefix: string;
  /** Learned absolute position embeddings (1, P + h·w, C), if the model has them. */
  posEmbed: { key: string; prefixTokens: number; grid: [number, number] } | null;
}

export interface LoadsCheckpoints {
  checkpointLayout(): CheckpointLayout;
}

export interface CheckpointReport {
  scheme: string;
  strippedPrefix: string | null;
  renamedKeys: number;
  droppedKeys: string[];
  posEmbedResized: { from: [number, number]; to: [number, number]; method: PosEmbedResize } | null;
  /** 'loaded' from the checkpoint; 'initialised': the checkpoint has no head of this shape, the model keeps its own; 'none': the model has no head. */
  head: 'loaded' | 'initialised' | 'none';
  /** Derived buffers the checkpoint left out, which keep the model's own values (derived-buffers.ts). */
  keptDerivedBuffers: string[];
  /** Keys that did not match (empty unless loaded with strict: false). */
  result: LoadResult;
}

function describeKeys(keys: readonly string[], limit = 12): string {
  const shown = keys.slice(0, limit).map((k) => `  ${k}`).join('\n');
  return `${shown}${keys.length > limit ? `\n  … ${keys.length - limit} more` : ''}`;
}

/** How a checkpoint's keys map onto a model: the prefix stripped, the scheme, and each key's model name (null: dropped). */
export interface CheckpointNames {
  prefix: string | null;
  scheme: CheckpointScheme;
  names: Map<string, string | null>;
}

/** Strips the first known prefix any key carries, detects the naming scheme, and renames. */
export function resolveCheckpointNames(layout: CheckpointLayout, keys: readonly string[]): CheckpointNames {
  const prefix = layout.prefixes.find((p) => keys.some((k) => k.startsWith(p))) ?? null;
  const strip = (k: string) => (prefix && k.startsWith(prefix) ? k.slice(prefix.length) : k);
  const scheme = layout.schemes.find((s) => keys.some((k) => s.signature.test(strip(k))));
  if (!scheme) {
    throw new CheckpointFormatError(
      `this is not a ${layout.family} checkpoint in any naming graft reads for it (${layout.schemes.map((s) => `${s.name}: e.g. '${s.example}'`).join('; ')}). ` +
      `Its ${keys.length} keys:\n${describeKeys(keys)}\nCreate the model whose family matches the checkpoint (listModels() names them).`,
    );
  }
  return { prefix, scheme, names: new Map(keys.map((k) => [k, scheme.rename(strip(k))])) };
}

/**
 * Loads `checkpoint` (a state dict in timm, torchvision or transformers naming, with or without a
 * model prefix) into `model`. Strict by default: any other difference is one StateDictError
 * listing every missing, unexpected and mismatched key.
 */
export function loadVitCheckpoint(model: VisionModel & LoadsCheckpoints, checkpoint: Map<string, Tensor>, opts: { strict?: boolean } = {}): CheckpointReport {
  const layout = model.checkpointLayout();
  const keys = [...checkpoint.keys()];
  const { prefix, scheme, names } = resolveCheckpointNames(layout, keys);
  const own = model.stateDict();
  const state = new Map<string, Tensor>();
  const droppedKeys: string[] = [];
  let renamedKeys = 0;
  for (const [k, t] of checkpoint) {
    const name = names.get(k)!;
    if (name === null) {
      droppedKeys.push(k);
      continue;
    }
    if (name !== (prefix && k.startsWith(prefix) ? k.slice(prefix.length) : k)) renamedKeys++;
    const target = own.get(name);
    // Same values under extra unit axes, e.g. DINOv3 mask_token (1, C) in original checkpoints vs (1, 1, C).
    const sameUpToUnitAxes = target && !shapeEq(t.shape, target.shape) && shapeEq(t.shape.filter((d) => d !== 1), target.shape.filter((d) => d !== 1));
    state.set(name, sameUpToUnitAxes ? reshape(t, target.shape) : t);
  }

  const created: Tensor[] = [];
  let posEmbedResized: CheckpointReport['posEmbedResized'] = null;
  const pe = layout.posEmbed;
  const stored = pe && state.get(pe.key);
  if (pe && stored && stored.rank === 3 && stored.shape[1] !== pe.prefixTokens + pe.grid[0] * pe.grid[1]) {
    const from = squareGrid(stored.shape[1]! - pe.prefixTokens, `checkpoint ${pe.key} ${fmt(stored.shape)}`);
    const resized = noGrad(() => resamplePosEmbed(stored, pe.prefixTokens, from, pe.grid, scheme.posEmbedResize));
    created.push(resized);
    state.set(pe.key, resized);
    posEmbedResized = { from, to: pe.grid, method: scheme.posEmbedResize };
  }

  const isHead = (k: string) => k.startsWith(layout.headPrefix);
  const modelHead = [...own.keys()].filter(isHead);
  let head: CheckpointReport['head'] = 'loaded';
  if (modelHead.length === 0) head = 'none';
  else if (modelHead.some((k) => !state.has(k) || !shapeEq(state.get(k)!.shape, own.get(k)!.shape))) head = 'initialised';
  if (head !== 'loaded') {
    for (const k of [...state.keys()]) if (isHead(k)) state.delete(k);
    for (const k of modelHead) state.set(k, own.get(k)!);
  }

  const what = `${layout.family} checkpoint (${scheme.name} names${prefix ? `, prefix '${prefix}' stripped` : ''})`;
  try {
    const keptDerivedBuffers = completeDerivedBuffers(model, state, what);
    const result = model.loadStateDict(state, { what, strict: opts.strict ?? true });
    return { scheme: scheme.name, strippedPrefix: prefix, renamedKeys, droppedKeys, posEmbedResized, head, keptDerivedBuffers, result };
  } finally {
    for (const t of created) t.dispose();
  }
}

/** loadVitCheckpoint from a .safetensors file. */
export function loadVitSafetensors(model: VisionModel & LoadsCheckpoints, path: string, opts: { strict?: boolean } = {}): CheckpointReport {
  const tensors = loadSafetensors(path, { backend: model.parameters()[0]?.backend });
  try {
    return loadVitCheckpoint(model, tensors, opts);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
