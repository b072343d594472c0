// A model name and an optional checkpoint → a backbone with its weights and preprocessing:
// `buildModel({ name: 'resnet18', weights: 'hf:ORG/NAME' })`. Where the weights are is
// io/checkpoint-source's job; which loader reads them (the ViT family's naming schemes, or the
// model's own torchvision names) and how the head's class count is settled is this file's.
import { ConfigError } from '../errors.js';
import { createModel, listModels } from './registry.js';
import type { VisionModel } from './model.js';
import { CheckpointFormatError } from './checkpoint-error.js';
import { classifierPath } from './head.js';
import { loadVitCheckpoint, resolveCheckpointNames, type LoadsCheckpoints } from './vit/checkpoint.js';
import { cnnCheckpointClasses, loadCnnCheckpoint } from './cnn/checkpoint.js';
import { loadSafetensors } from '../io/safetensors.js';
import { attachQuantized, splitQuantizedCheckpoint } from '../nn/quant4.js';
import { resolveCheckpoint } from '../io/checkpoint-source.js';
import type { DownloadProgress } from '../io/hub.js';
import { readPreprocessorConfig, type PreprocessConfig } from '../data/preprocess.js';
import type { Tensor } from '../tensor/tensor.js';
import './all.js';

export interface ModelRequest {
  name: string;
  weights?: string;
  imageSize?: number;
  /** Classes of the head; default: the checkpoint head's when weights are given (1000 when it has none), else 1000. */
  numClasses?: number;
  /** When numClasses differs from the checkpoint's head: drop that head and keep a freshly initialised one (otherwise an error). */
  reinitHead?: boolean;
  /** Overrides of the named configuration's fields (createModel's). */
  overrides?: Record<string, unknown>;
  /** Download progress of hf:ORG/NAME checkpoints; none by default (the graft CLI passes downloadProgressPrinter()). */
  onProgress?: (p: DownloadProgress) => void;
}

function loadsCheckpoints(m: VisionModel): m is VisionModel & LoadsCheckpoints {
  return typeof (m as Partial<LoadsCheckpoints>).checkpointLayout === 'function';
}

/** Classes of the checkpoint's head as this model reads the checkpoint, null when it has none. */
function checkpointClasses(model: VisionModel, tensors: Map<string, Tensor>): number | null {
  if (!loadsCheckpoints(model)) return cnnCheckpointClasses(model, tensors);
  const layout = model.checkpointLayout();
  const { names } = resolveCheckpointNames(layout, [...tensors.keys()]);
  for (const [k, n] of names) {
    if (n !== `${layout.headPrefix}weight`) continue;
    const t = tensors.get(k)!;
    return t.rank === 2 ? t.shape[0]! : null;
  }
  return null;
}

/**
 * Builds the named backbone; loads `weights` when given (the ViT family's naming schemes; for the
 * other families their own names, after stripping a `module.`/`model.`/`backbone.` prefix). The
 * preprocessing is the checkpoint's preprocessor_config.json where its folder or Hub snapshot has
 * one, else the family's default. Without numClasses the head takes the checkpoint's class count.
 */
export async function buildModel(req: ModelRequest): Promise<VisionModel> {
  if (!listModels().includes(req.name)) throw new ConfigError(`model: unknown model '${req.name}'; graft inspect --list names the models`);
  if (!req.weights) return createModel(req.name, { imageSize: req.imageSize, numClasses: req.numClasses, overrides: req.overrides });
  const ckpt = await resolveCheckpoint(req.weights, { onProgress: req.onProgress });
  const preprocess: PreprocessConfig | undefined = ckpt.preprocessorConfig ? readPreprocessorConfig(ckpt.preprocessorConfig) : undefined;
  const tensors = loadSafetensors(ckpt.file);
  const create = (numClasses: number | undefined) => createModel(req.name, { imageSize: req.imageSize, numClasses, overrides: req.overrides, preprocess });
  let model = create(req.numClasses);
  try {
    const theirs = checkpointClasses(model, tensors);
    const head = classifierPath(model);
    const ours = head ? model.stateDict().get(`${head}.weight`)?.shape[0] ?? null : null;
    if (theirs !== null && ours !== null && theirs !== ours) {
      if (req.numClasses === undefined) {
        model.dispose();
        model = create(theirs);
      } else if (!req.reinitHead) {
        throw new CheckpointFormatError(
          `${ckpt.file}: the head has ${theirs} classes in the checkpoint and ${ours} in the model ${req.name}. Leave numClasses out (or set it to ${theirs}) ` +
          `to keep the checkpoint's head, or pass reinitHead: true to let graft re-initialise the head for ${ours} classes.`,
        );
      }
    }
    // A bitsandbytes 4-bit checkpoint: its layers load as float under their usual names, then
    // become 4-bit again from the file's own codes and scales.
    const quantized = splitQuantizedCheckpoint(tensors, ckpt.file);
    const fileKeys = [...tensors.keys()];
    if (loadsCheckpoints(model)) loadVitCheckpoint(model, tensors);
    else loadCnnCheckpoint(model, tensors, { name: req.name, what: ckpt.file, reinitHead: req.reinitHead });
    if (quantized.size) {
      const names = loadsCheckpoints(model) ? resolveCheckpointNames(model.checkpointLayout(), fileKeys).names : null;
      const paths = new Set(model.namedModules().map(([p]) => p));
      attachQuantized(model, quantized, (prefix) => {
        const renamed = names ? names.get(`${prefix}.weight`) : null;
        if (renamed) return renamed.replace(/\.weight$/, '');
        // CNN checkpoints: the module path, possibly under a prefix (module., model., backbone.)
        for (let p = prefix; ; p = p.slice(p.indexOf('.') + 1)) {
          if (paths.has(p)) return p;
          if (!p.includes('.')) return null;
        }
      }, ckpt.file);
    }
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
