// A run as a folder that @huggingface/transformers' image-classification pipeline loads
// offline: config.json (model_type, id2label, label2id), preprocessor_config.json (the run's
// evaluation preprocessing in transformers' image-processor fields) and onnx/model.onnx
// (onnx/model_quantized.onnx too when asked: the same graph with int8 weights).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PreprocessConfig } from '../data/preprocess.js';

// transformers.js picks the model class from model_type; each of these maps to an
// …ForImageClassification class whose session reads pixel_values and returns logits.
const MODEL_TYPES: Record<string, string> = {
  resnet: 'resnet', mobilenet_v2: 'mobilenet_v2', vit: 'vit', dinov2: 'dinov2', dinov2_with_registers: 'dinov2_with_registers',
};

/** The transformers model_type of a graft family (ViT's for families transformers.js has no own class for). */
export function modelTypeOf(family: string): string {
  return MODEL_TYPES[family] ?? 'vit';
}

// PIL resampling codes as transformers writes them.
const RESAMPLE = { nearest: 0, bilinear: 2, bicubic: 3 } as const;

/** preprocessor_config.json for graft's evaluation transform of `pre`. */
export function preprocessorConfig(pre: PreprocessConfig): Record<string, unknown> {
  const [, h, w] = pre.inputSize;
  // Without an explicit resize graft scales the shorter side to min(H, W) / cropPct before the crop, as timm.
  const shortest = pre.resize?.mode === 'shortest-edge' ? pre.resize.size : Math.round(Math.min(h, w) / pre.cropPct);
  const size = pre.resize?.mode === 'fixed' ? { height: pre.resize.height, width: pre.resize.width } : pre.resize?.mode === 'none' ? undefined : { shortest_edge: shortest };
  return {
    image_processor_type: 'ViTImageProcessor',
    do_resize: size !== undefined,
    ...(size ? { size } : {}),
    resample: RESAMPLE[pre.interpolation],
    do_center_crop: true,
    crop_size: { height: h, width: w },
    do_rescale: true,
    rescale_factor: pre.rescaleFactor ?? 1 / 255,
    do_normalize: true,
    image_mean: pre.mean,
    image_std: pre.std,
    do_convert_rgb: true,
  };
}

export interface TransformersJsFolder {
  family: string;
  classes: readonly string[];
  preprocess: PreprocessConfig;
  model: Uint8Array;
  quantized?: Uint8Array;
  /** Written as config.json's graft field: backbone, method, source run. */
  provenance: Record<string, string>;
}

/** Writes the folder; returns the files written. */
export function writeTransformersJsFolder(dir: string, f: TransformersJsFolder): string[] {
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  const id2label = Object.fromEntries(f.classes.map((c, i) => [String(i), c]));
  const label2id = Object.fromEntries(f.classes.map((c, i) => [c, i]));
  const [channels, h, w] = f.preprocess.inputSize;
  const config = {
    model_type: modelTypeOf(f.family), architectures: [`${f.family}ForImageClassification`], id2label, label2id,
    num_labels: f.classes.length, num_channels: channels, image_size: h === w ? h : [h, w], graft: f.provenance,
  };
  const files: [string, string | Uint8Array][] = [
    ['config.json', JSON.stringify(config, null, 2) + '\n'],
    ['preprocessor_config.json', JSON.stringify(preprocessorConfig(f.preprocess), null, 2) + '\n'],
    [join('onnx', 'model.onnx'), f.model],
    ...(f.quantized ? [[join('onnx', 'model_quantized.onnx'), f.quantized] as [string, Uint8Array]] : []),
  ];
  for (const [name, data] of files) writeFileSync(join(dir, name), data);
  return files.map(([n]) => join(dir, n));
}
