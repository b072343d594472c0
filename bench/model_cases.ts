// The models and training cases of the model-level benchmark (bench/models.ts), shared by its
// child programs. Keys name the files bench/torch_models.py writes into the cache folder.

export interface ModelSpec {
  /** Cache file stem and torch_models.py's name for the model. */
  key: string;
  label: string;
  /** graft's registry name (listModels()). */
  graft: string;
}

export const MODELS: readonly ModelSpec[] = [
  { key: 'vit_s16', label: 'ViT-S/16', graft: 'vit_small_patch16_224' },
  { key: 'vit_b16', label: 'ViT-B/16', graft: 'vit_base_patch16_224' },
  { key: 'resnet18', label: 'ResNet-18', graft: 'resnet18' },
  { key: 'mobilenet_v2', label: 'MobileNetV2', graft: 'mobilenet_v2' },
];

export const INFER_BATCHES = [1, 8] as const;
export const TRAIN_BATCH = 8;
export const NUM_CLASSES = 10;

export interface TrainCase {
  id: string;
  label: string;
  model: string;
  method: 'lora' | 'dora' | 'full';
  /** LoRA targets: every Linear but the head ('linear'), or every Conv2d ('conv'). */
  targets?: 'linear' | 'conv';
  r?: number;
  alpha?: number;
  lr: number;
}

export const TRAIN_CASES: readonly TrainCase[] = [
  { id: 'vit_s16.lora', label: 'ViT-S/16 LoRA r=16 (qkv, proj, fc1, fc2)', model: 'vit_s16', method: 'lora', targets: 'linear', r: 16, alpha: 16, lr: 1e-3 },
  { id: 'vit_s16.dora', label: 'ViT-S/16 DoRA r=16 (qkv, proj, fc1, fc2)', model: 'vit_s16', method: 'dora', targets: 'linear', r: 16, alpha: 16, lr: 1e-3 },
  { id: 'resnet18.conv-lora', label: 'ResNet-18 conv LoRA r=8 (all Conv2d)', model: 'resnet18', method: 'lora', targets: 'conv', r: 8, alpha: 16, lr: 1e-3 },
  { id: 'mobilenet_v2.full', label: 'MobileNetV2 full fine-tuning', model: 'mobilenet_v2', method: 'full', lr: 1e-4 },
];

export function modelSpec(key: string): ModelSpec {
  const m = MODELS.find((s) => s.key === key);
  if (!m) throw new Error(`no model '${key}' in bench/model_cases.ts`);
  return m;
}

/** The files torch_models.py writes for `key` (relative to the repository root when `cache` is). */
export function modelFiles(cache: string, key: string): { weights: string; onnx: string; check: string } {
  return { weights: `${cache}/${key}.safetensors`, onnx: `${cache}/${key}.onnx`, check: `${cache}/${key}.check.safetensors` };
}
