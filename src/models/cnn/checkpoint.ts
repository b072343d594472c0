// Loading a torchvision/timm-named checkpoint into a model that uses those names directly (the
// torchvision CNNs, Swin): a wrapper prefix (`module.` from DataParallel, `model.`, `backbone.`)
// is stripped, a checkpoint of another architecture or with another number of classes is one
// paragraph saying what was expected and what was found, buffers graft derives may be absent
// (derived-buffers.ts), and the rest loads strictly.
// As the ViT loader: a checkpoint without a head leaves the model's own head (initialised).
import type { LoadResult } from '../../nn/module.js';
import { fmt } from '../../tensor/shape.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { VisionModel } from '../model.js';
import { CheckpointFormatError } from '../checkpoint-error.js';
import { classifierPath } from '../head.js';
import { completeDerivedBuffers, derivedBufferKeys } from '../derived-buffers.js';

/** Wrapper prefixes stripped when every key carries one (repeatedly: `module.model.`). */
export const CNN_CHECKPOINT_PREFIXES = ['module.', 'model.', 'backbone.'] as const;

export interface CnnCheckpointReport {
  /** The prefix removed from every key ('' when none). */
  strippedPrefix: string;
  /** 'loaded' from the checkpoint; 'initialised': the model keeps its own head; 'none': the model has no head. */
  head: 'loaded' | 'initialised' | 'none';
  /** Classes of the checkpoint's head, null when it has none. */
  checkpointClasses: number | null;
  /** Derived buffers the checkpoint left out, which keep the model's own values (num_batches_tracked, relative_position_index). */
  keptDerivedBuffers: string[];
  result: LoadResult;
}

/** The longest run of wrapper prefixes every key carries and no model key starts with. */
export function stripPrefix(keys: readonly string[], modelKeys: readonly string[]): string {
  let prefix = '';
  for (;;) {
    const next = CNN_CHECKPOINT_PREFIXES.find((p) => keys.length > 0 && keys.every((k) => k.startsWith(prefix + p)) && !modelKeys.some((k) => k.startsWith(p)));
    if (!next) return prefix;
    prefix += next;
  }
}

// Key patterns of the checkpoints people try, to say what a checkpoint looks like.
const LOOKS_LIKE: [RegExp, string][] = [
  [/^(cls_token|pos_embed|blocks\.\d+\.attn\.qkv\.weight)$/, 'a timm ViT (vit_*/deit_* in graft)'],
  [/^(class_token|conv_proj\.weight|encoder\.layers\.encoder_layer_\d+\.)/, 'a torchvision ViT (vit_b_16… in graft)'],
  [/^(\w+\.)?embeddings\.(cls_token|patch_embeddings\.projection\.weight)$/, 'a transformers ViT/DINOv2/DINOv3 (dinov2_*/dinov3_* in graft)'],
  [/^layer_?\d\.\d+\.(conv|bn)\d\.weight$/, 'a ResNet'],
  [/^trunk_output\.block\d/, 'a torchvision RegNet (regnety_* in graft)'],
  [/^features\.\d+\.\d+\.attn\.relative_position_bias_table$/, 'a torchvision Swin (swin_* in graft)'],
  [/^features\.\d+\.\d+\.block\.\d+\.weight$/, 'a torchvision ConvNeXt (convnext_* in graft)'],
  [/^stages\.\d+\.blocks\.\d+\.conv_dw\.weight$/, "a timm ConvNeXt (graft's convnext_* read torchvision's names)"],
  [/^features\.\d+\.conv\.\d+\.\d+\.weight$/, 'a torchvision MobileNetV2'],
  [/^conv_stem\.weight$/, "a timm EfficientNet/MobileNet (graft has no model with timm's names for it)"],
];

function looksLike(keys: readonly string[]): string | null {
  for (const [re, what] of LOOKS_LIKE) if (keys.some((k) => re.test(k))) return what;
  return null;
}

const sample = (keys: readonly string[], n = 4) => `${keys.slice(0, n).join(', ')}${keys.length > n ? ' …' : ''}`;

export interface CnnLoadOptions {
  /** The model's name in messages. */
  name?: string;
  /** The checkpoint in messages (a file name). */
  what?: string;
  /** Drop a checkpoint head of another class count and keep the model's freshly initialised head. */
  reinitHead?: boolean;
  strict?: boolean;
}

/** Classes of the checkpoint's head for this model (the classifier's weight rows), null when it has none. */
export function cnnCheckpointClasses(model: VisionModel, checkpoint: ReadonlyMap<string, { readonly shape: readonly number[] }>, headPath = classifierPath(model)): number | null {
  if (!headPath) return null;
  const own = [...model.stateDict().keys()];
  const prefix = stripPrefix([...checkpoint.keys()], own);
  const w = checkpoint.get(`${prefix}${headPath}.weight`);
  return w && w.shape.length === 2 ? w.shape[0]! : null;
}

/**
 * Loads `checkpoint` into `model` by the model's own (torchvision) names, after stripping a
 * wrapper prefix. Errors (CheckpointFormatError): a checkpoint of another architecture (few
 * keys in common) names expected and found keys; a head of another class count says both and
 * how to proceed; a recomputed buffer (relative_position_index) unlike graft's names the key.
 * Derived buffers the checkpoint lacks keep the model's values; anything else differing is the
 * strict StateDictError.
 */
export function loadCnnCheckpoint(model: VisionModel, checkpoint: Map<string, Tensor>, opts: CnnLoadOptions = {}): CnnCheckpointReport {
  const name = opts.name ?? model.constructor.name;
  const what = opts.what ?? 'the checkpoint';
  const ownState = model.stateDict();
  const own = [...ownState.keys()];
  const raw = [...checkpoint.keys()];
  const prefix = stripPrefix(raw, own);
  const state = new Map<string, Tensor>();
  for (const [k, t] of checkpoint) state.set(k.slice(prefix.length), t);
  const keys = [...state.keys()];

  // The head: the model's classifier, or for a headless model the checkpoint's Linear onto the pooled features.
  const headPath = classifierPath(model);
  const isHead = (k: string, p: string | null) => p !== null && (k === `${p}.weight` || k === `${p}.bias`);
  let ckptHead: string | null = headPath;
  if (!headPath) {
    const extra = keys.filter((k) => !ownState.has(k) && k.endsWith('.weight') && state.get(k)!.rank === 2 && state.get(k)!.shape[1] === model.numFeatures);
    ckptHead = extra.length === 1 ? extra[0]!.slice(0, -'.weight'.length) : null;
  }

  // Another architecture: most of the model's non-head keys are not in the checkpoint.
  const derived = derivedBufferKeys(model);
  const body = own.filter((k) => !isHead(k, headPath) && !derived.has(k));
  const matched = body.filter((k) => state.has(k)).length;
  if (body.length > 0 && matched < body.length / 2) {
    const kind = looksLike(keys);
    throw new CheckpointFormatError(
      `${what} is not a ${name} checkpoint: ${name} expects ${own.length} keys such as ${sample(body)}, ` +
      `but only ${matched} of them are among the checkpoint's ${keys.length} keys (${sample(keys)})${prefix ? ` after stripping '${prefix}'` : ''}` +
      `${kind ? `; it looks like ${kind} checkpoint` : ''}. Choose the model the checkpoint was saved from (graft inspect --list names graft's models).`,
    );
  }

  let head: CnnCheckpointReport['head'] = 'loaded';
  const ckptW = ckptHead ? state.get(`${ckptHead}.weight`) : undefined;
  const checkpointClasses = ckptW && ckptW.rank === 2 ? ckptW.shape[0]! : null;
  if (!headPath) {
    head = 'none';
    for (const k of keys) if (isHead(k, ckptHead)) state.delete(k);
  } else {
    const ownW = ownState.get(`${headPath}.weight`)!;
    const modelClasses = ownW.shape[0]!;
    if (!ckptW) {
      head = 'initialised';
    } else if (ckptW.rank === 2 && ckptW.shape[1] === ownW.shape[1] && checkpointClasses !== modelClasses) {
      if (!opts.reinitHead) {
        throw new CheckpointFormatError(
          `${what}: the head (${headPath}) has ${checkpointClasses} classes in the checkpoint and ${modelClasses} in the model ` +
          `(${headPath}.weight ${fmt(ckptW.shape)} vs ${fmt(ownW.shape)}). Create the model with numClasses: ${checkpointClasses} to keep the checkpoint's head ` +
          `(buildModel does when numClasses is not given), or pass reinitHead: true to let graft re-initialise the head for ${modelClasses} classes ` +
          `(graft train replaces the head for the dataset's classes in any case).`,
        );
      }
      head = 'initialised';
    }
    if (head === 'initialised') {
      for (const k of keys) if (isHead(k, headPath)) state.delete(k);
      for (const k of own) if (isHead(k, headPath)) state.set(k, ownState.get(k)!);
    }
  }
  const into = `${what} into ${name}${prefix ? ` (prefix '${prefix}' stripped)` : ''}`;
  const keptDerivedBuffers = completeDerivedBuffers(model, state, into);
  const result = model.loadStateDict(state, { what: into, strict: opts.strict ?? true });
  return { strippedPrefix: prefix, head, checkpointClasses, keptDerivedBuffers, result };
}
