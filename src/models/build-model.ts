// A model name and an optional checkpoint → a backbone with its weights and preprocessing:
// `buildModel({ name: 'resnet18', weights: 'hf:ORG/NAME' })`. Where the weights are is
// io/checkpoint-source's job; which loader reads them (the ViT family's naming schemes, or the
// model's own torchvision names), how the head's class count is settled, and whether the layers
// are read one at a time into a 4-bit model (deferred-load.ts) is this file's.
import { ConfigError } from '../errors.js';
import { createModel, listModels } from './registry.js';
import type { VisionModel } from './model.js';
import { CheckpointFormatError } from './checkpoint-error.js';
import { classifierPath } from './head.js';
import { loadVitCheckpoint, resolveCheckpointNames, type LoadsCheckpoints } from './vit/checkpoint.js';
import { cnnCheckpointClasses, loadCnnCheckpoint, stripPrefix } from './cnn/checkpoint.js';
import { quantizeModule, type QuantizeOptions } from '../nn/quant4.js';
import { withDeferredWeights } from '../nn/layers.js';
import { CheckpointReader, loadDeferred } from './deferred-load.js';
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
  /**
   * Quantise every Linear and groups = 1 Conv2d but the classifier to 4 bits; with weights, each
   * layer as it is read from the checkpoint (the float model is never whole in memory).
   */
  quantize?: QuantizeOptions;
  /** Download progress of hf:ORG/NAME checkpoints; none by default (the graft CLI passes downloadProgressPrinter()). */
  onProgress?: (p: DownloadProgress) => void;
}

function loadsCheckpoints(m: VisionModel): m is VisionModel & LoadsCheckpoints {
  return typeof (m as Partial<LoadsCheckpoints>).checkpointLayout === 'function';
}

type Shapes = ReadonlyMap<string, { readonly shape: readonly number[] }>;

/** Classes of the checkpoint's head as this model reads the checkpoint, null when it has none. */
function checkpointClasses(model: VisionModel, tensors: Shapes): number | null {
  if (!loadsCheckpoints(model)) return cnnCheckpointClasses(model, tensors);
  const layout = model.checkpointLayout();
  const { names } = resolveCheckpointNames(layout, [...tensors.keys()]);
  for (const [k, n] of names) {
    if (n !== `${layout.headPrefix}weight`) continue;
    const { shape } = tensors.get(k)!;
    return shape.length === 2 ? shape[0]! : null;
  }
  return null;
}

/**
 * Builds the named backbone; loads `weights` when given (the ViT family's naming schemes; for the
 * other families their own names, after stripping a `module.`/`model.`/`backbone.` prefix). The
 * preprocessing is the checkpoint's preprocessor_config.json where its folder or Hub snapshot has
 * one, else the family's default. Without numClasses the head takes the checkpoint's class count.
 *
 * With `quantize`, and for a bitsandbytes 4-bit checkpoint, the model is built without its
 * weights and each layer is read from the file on its own (models/deferred-load.ts): quantised
 * as it is read, or kept as the file's 4-bit state, so the float model is never whole in memory.
 */
export async function buildModel(req: ModelRequest): Promise<VisionModel> {
  if (!listModels().includes(req.name)) throw new ConfigError(`model: unknown model '${req.name}'; graft inspect --list names the models`);
  const createOpts = { imageSize: req.imageSize, overrides: req.overrides };
  if (!req.weights) {
    const model = createModel(req.name, { ...createOpts, numClasses: req.numClasses });
    if (req.quantize) {
      const head = classifierPath(model);
      quantizeModule(model, req.quantize, (path) => path === head);
    }
    return model;
  }
  const ckpt = await resolveCheckpoint(req.weights, { onProgress: req.onProgress });
  const preprocess: PreprocessConfig | undefined = ckpt.preprocessorConfig ? readPreprocessorConfig(ckpt.preprocessorConfig) : undefined;
  const reader = new CheckpointReader(ckpt.file);
  try {
    const deferred = req.quantize !== undefined || reader.hasFourBit;
    const shapes: Shapes = new Map(reader.keys().map((k) => [k, { shape: reader.shape(k) }]));
    const create = (numClasses: number | undefined) => {
      const make = () => createModel(req.name, { ...createOpts, numClasses, preprocess });
      return deferred ? withDeferredWeights(make) : make();
    };
    let model = create(req.numClasses);
    try {
      const theirs = checkpointClasses(model, shapes);
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
      const load = (tensors: Map<string, Tensor>) => {
        if (loadsCheckpoints(model)) loadVitCheckpoint(model, tensors);
        else loadCnnCheckpoint(model, tensors, { name: req.name, what: ckpt.file, reinitHead: req.reinitHead });
      };
      if (!deferred) {
        const tensors = new Map(reader.keys().map((k) => [k, reader.float(k)]));
        try {
          load(tensors);
        } finally {
          for (const t of tensors.values()) t.dispose();
        }
        return model;
      }
      const keys = reader.keys();
      let modelKeyOf: (k: string) => string | null;
      if (loadsCheckpoints(model)) {
        const { names } = resolveCheckpointNames(model.checkpointLayout(), keys);
        modelKeyOf = (k) => names.get(k) ?? null;
      } else {
        const prefix = stripPrefix(keys, [...model.stateDict().keys()]);
        modelKeyOf = (k) => (k.startsWith(prefix) ? k.slice(prefix.length) : null);
      }
      const headPath = classifierPath(model);
      loadDeferred(model, reader, modelKeyOf, load, { quantize: req.quantize ?? null, skip: (path) => path === headPath });
      return model;
    } catch (e) {
      model.dispose();
      throw e;
    }
  } finally {
    reader.close();
  }
}
