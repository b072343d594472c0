// What every backbone offers: features and head separately (timm's split), and its own
// preprocessing defaults.
import { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { ConfigError } from '../errors.js';

export { IMAGENET_MEAN, IMAGENET_STD, type PreprocessConfig } from '../data/preprocess.js';
import type { PreprocessConfig } from '../data/preprocess.js';

export interface CreateModelOptions {
  /** Classes of the head; 0 gives a model without a head (forwardHead returns pooled features). */
  numClasses?: number;
  /** Square input size, or (H, W); ViTs interpolate their position embeddings to it. */
  imageSize?: number | [number, number];
  dropRate?: number;
  dropPathRate?: number;
  /** Overrides of the named configuration's fields (configs are data). */
  overrides?: Record<string, unknown>;
  /** The model's preprocessing instead of its family's default (e.g. a checkpoint's preprocessor_config.json); imageSize applies on top. */
  preprocess?: PreprocessConfig;
}

/** What forwardFeatureMaps returns: channels and output stride of each map. */
export interface FeatureMapSpec {
  channels: number[];
  strides: number[];
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

  /**
   * The feature maps dense heads read: `levels` 1 gives the last map, 4 gives four (a CNN's or
   * Swin's four stages; a ViT's patch tokens after four evenly spaced blocks, normed, all at the
   * patch stride). Null for a family that gives none.
   */
  featureMapSpec(_levels: 1 | 4): FeatureMapSpec | null {
    return null;
  }

  /** Feature maps (B, C_i, h_i, w_i) as featureMapSpec describes them. */
  forwardFeatureMaps(_x: Tensor, levels: 1 | 4): Tensor[] {
    throw new ConfigError(`${this.family} models give no feature maps for ${levels} level${levels > 1 ? 's' : ''}; segmentation needs a ViT (vit, dinov2, dinov3), Swin, ConvNeXt or ResNet backbone`);
  }

  /**
   * The module path Python PEFT sees for graft's `path` on this family's checkpoint class, which
   * PEFT adapter files name (graft's paths are the checkpoint's own unless a class nests the
   * backbone, as Dinov2ForImageClassification does under `dinov2.`).
   */
  peftModulePath(path: string): string {
    return path;
  }
}
