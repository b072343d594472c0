// What every backbone offers: features and head separately (timm's split), and its own
// preprocessing defaults.
import { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

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

export interface CreateModelOptions {
  /** Classes of the head; 0 gives a model without a head (forwardHead returns pooled features). */
  numClasses?: number;
  /** Square input size, or (H, W); ViTs interpolate their position embeddings to it. */
  imageSize?: number | [number, number];
  dropRate?: number;
  dropPathRate?: number;
  /** Overrides of the named configuration's fields (configs are data). */
  overrides?: Record<string, unknown>;
}

export abstract class VisionModel extends Module {
  abstract readonly family: string;
  /** Width of the pooled features the head sees. */
  abstract readonly numFeatures: number;
  abstract readonly preprocess: PreprocessConfig;

  /** Tokens (B, N, C) or a feature map (B, C, H, W), before pooling and head. */
  abstract forwardFeatures(x: Tensor): Tensor;
  /** Pools features and applies the head; `preLogits` stops after pooling. */
  abstract forwardHead(features: Tensor, preLogits?: boolean): Tensor;

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }
}
