// The preprocessing a model expects.

/** Preprocessing a model expects, as timm's pretrained_cfg / HF preprocessor_config.json give it. */
export interface PreprocessConfig {
  inputSize: [number, number, number]; // (C, H, W)
  mean: [number, number, number];
  std: [number, number, number];
  interpolation: 'bilinear' | 'bicubic';
  cropPct: number;
}

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
