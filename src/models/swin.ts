// torchvision's Swin Transformer v1 (models/swin_transformer.py: swin_t, swin_s, swin_b) with
// its names, registered as swin_tiny, swin_small, swin_base:
//   features.0 patch embedding (Conv2d p×p s p '0', Permute, LayerNorm '2'),
//   features.{1,3,5,7}.{i}.{norm1, attn.{qkv, proj, relative_position_bias_table,
//     relative_position_index}, norm2, mlp.{0, 3}} (block i shifts its windows when i is odd),
//   features.{2,4,6}.{reduction, norm} patch merging, norm, head.
// Tokens stay channels-last (B, H, W, C) through the stages, as in torchvision. Any input size
// works: each attention pads its map to whole windows and crops after, patch merging pads odd
// sizes, as torchvision does.
import { Module } from '../nn/module.js';
import { Activation, Conv2d, Dropout, LayerNorm, Linear, Sequential } from '../nn/layers.js';
import { ShiftedWindowAttention, type Window } from '../nn/window-attention.js';
import { adaptiveAvgPool2d } from '../ops/conv.js';
import { add } from '../ops/elementwise.js';
import { concat, flatten, pad, permute, slice } from '../ops/layout.js';
import { dropout, dropPath } from '../ops/nn.js';
import type { Tensor } from '../tensor/tensor.js';
import { VisionModel, type FeatureMapSpec, type PreprocessConfig } from './model.js';
import { registerFamily, torchvisionPreprocess, type ConfigEntry } from './cnn/config.js';
import { Permute } from './cnn/torchvision-blocks.js';
import { runStagesCheckpointed } from './checkpointing.js';
import { IDENTITY_TAP, type Tap, type TappedBlock } from '../nn/residual-taps.js';

export interface SwinConfig {
  patchSize: number;
  embedDim: number;
  /** Blocks per stage; the width doubles and the map halves from one stage to the next. */
  depths: number[];
  numHeads: number[];
  windowSize: Window;
  mlpRatio: number;
  /** Dropout in the MLPs and after each attention's projection (torchvision's `dropout`). */
  dropout: number;
  /** Stochastic depth, rising linearly over all blocks to this value (the builder's default). */
  stochasticDepthProb: number;
}

const swin = (embedDim: number, depths: number[], numHeads: number[], stochasticDepthProb: number): SwinConfig =>
  ({ patchSize: 4, embedDim, depths, numHeads, windowSize: [7, 7], mlpRatio: 4, dropout: 0, stochasticDepthProb });

// DEFAULT weights (IMAGENET1K_V1) evaluate at 224 after a bicubic resize to 232 / 246 / 238.
export const SWIN_MODELS: Record<string, ConfigEntry<SwinConfig>> = {
  swin_tiny: { config: swin(96, [2, 2, 6, 2], [3, 6, 12, 24], 0.2), preprocess: torchvisionPreprocess(232, 'bicubic') },
  swin_small: { config: swin(96, [2, 2, 18, 2], [3, 6, 12, 24], 0.3), preprocess: torchvisionPreprocess(246, 'bicubic') },
  swin_base: { config: swin(128, [2, 2, 18, 2], [4, 8, 16, 32], 0.5), preprocess: torchvisionPreprocess(238, 'bicubic') },
};

/** (B, H, W, C) → (B, ⌈H/2⌉, ⌈W/2⌉, 2C): 2×2 neighbours concatenated (odd sizes zero-padded), LayerNorm, Linear. */
export class PatchMerging extends Module {
  reduction: Linear;
  norm: LayerNorm;
  constructor(readonly dim: number) {
    super();
    this.reduction = this.module('reduction', new Linear(4 * dim, 2 * dim, { bias: false }));
    this.norm = this.module('norm', new LayerNorm(4 * dim));
  }
  forward(x: Tensor): Tensor {
    const [, h, w] = x.shape as [number, number, number, number];
    const padded = h % 2 || w % 2 ? pad(x, [0, 0, 0, w % 2, 0, h % 2]) : x;
    const pick = (dy: number, dx: number) => slice(slice(padded, 1, dy, undefined, 2), 2, dx, undefined, 2);
    // torchvision's order: x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2].
    return this.reduction.forward(this.norm.forward(concat([pick(0, 0), pick(1, 0), pick(0, 1), pick(1, 1)], -1)));
  }
}

const CHANNELS_LAST = { kind: 'channels-last' } as const;

export class SwinTransformerBlock extends Module implements TappedBlock {
  readonly tapPoints = ['attn', 'mlp'] as const;
  readonly tapChannels: number;
  norm1: LayerNorm;
  attn: ShiftedWindowAttention;
  norm2: LayerNorm;
  mlp: Sequential;
  constructor(dim: number, numHeads: number, windowSize: Window, shiftSize: Window, mlpRatio: number, readonly dropoutRate: number, readonly stochasticDepthProb: number) {
    super();
    this.tapChannels = dim;
    this.norm1 = this.module('norm1', new LayerNorm(dim));
    this.attn = this.module('attn', new ShiftedWindowAttention(dim, windowSize, shiftSize, numHeads));
    this.norm2 = this.module('norm2', new LayerNorm(dim));
    const hidden = Math.trunc(dim * mlpRatio);
    this.mlp = this.module('mlp', new Sequential(new Linear(dim, hidden), new Activation('gelu'), new Dropout(dropoutRate), new Linear(hidden, dim), new Dropout(dropoutRate)));
  }
  /** x (B, H, W, C) → (B, H, W, C). */
  forward(x: Tensor): Tensor {
    return this.forwardTapped(IDENTITY_TAP, x);
  }
  /** The forward with `tap` after the attention residual (point 0) and after the MLP residual (point 1). */
  forwardTapped(tap: Tap, x: Tensor): Tensor {
    const branch = (y: Tensor) => dropPath(y, this.stochasticDepthProb, this.training);
    const attended = dropout(this.attn.forward(this.norm1.forward(x)), this.dropoutRate, this.training);
    const h = tap(0, add(x, branch(attended)), CHANNELS_LAST);
    return tap(1, add(h, branch(this.mlp.forward(this.norm2.forward(h)))), CHANNELS_LAST);
  }
}

export class SwinTransformer extends VisionModel {
  /** Recompute each transformer block in the backward pass instead of keeping its activations. */
  gradientCheckpointing = false;
  readonly family = 'swin';
  readonly numFeatures: number;
  features: Sequential;
  norm: LayerNorm;
  head: Linear | null;

  constructor(readonly config: SwinConfig, readonly numClasses: number, readonly preprocess: PreprocessConfig) {
    super();
    const c = config;
    if (c.depths.length === 0 || c.numHeads.length !== c.depths.length) {
      throw new Error(`Swin: depths and numHeads need one entry per stage; got ${JSON.stringify(c.depths)} and ${JSON.stringify(c.numHeads)}`);
    }
    const total = c.depths.reduce((a, d) => a + d, 0);
    let blockId = 0;
    const layers: Module[] = [new Sequential(new Conv2d(3, c.embedDim, c.patchSize, { stride: c.patchSize }), new Permute([0, 2, 3, 1]), new LayerNorm(c.embedDim))];
    c.depths.forEach((depth, s) => {
      const dim = c.embedDim * 2 ** s;
      const blocks: Module[] = [];
      for (let i = 0; i < depth; i++) {
        const shift: Window = i % 2 === 0 ? [0, 0] : [Math.floor(c.windowSize[0] / 2), Math.floor(c.windowSize[1] / 2)];
        const sd = total > 1 ? (c.stochasticDepthProb * blockId) / (total - 1) : 0;
        blocks.push(new SwinTransformerBlock(dim, c.numHeads[s]!, c.windowSize, shift, c.mlpRatio, c.dropout, sd));
        blockId++;
      }
      layers.push(new Sequential(...blocks));
      if (s < c.depths.length - 1) layers.push(new PatchMerging(dim));
    });
    this.numFeatures = c.embedDim * 2 ** (c.depths.length - 1);
    this.features = this.module('features', new Sequential(...layers));
    this.norm = this.module('norm', new LayerNorm(this.numFeatures));
    this.head = this.module('head', numClasses > 0 ? new Linear(this.numFeatures, numClasses) : null);
  }

  /** x (B, 3, H, W) → (B, C, H/32, W/32) after the final LayerNorm (channels-first, like the CNNs). */
  forwardFeatures(x: Tensor): Tensor {
    return permute(this.norm.forward(runStagesCheckpointed(this, this.checkpointUnits(), x) ?? this.features.forward(x)), [0, 3, 1, 2]);
  }

  /** Under gradient checkpointing: each transformer block one checkpoint, and the patch embedding and each patch merging. */
  private checkpointUnits(): Module[][] {
    return this.features.children().flatMap(([, m]) => {
      const blocks = m instanceof Sequential ? m.children().map(([, b]) => b) : [];
      return blocks.length && blocks.every((b) => b instanceof SwinTransformerBlock) ? blocks.map((b) => [b]) : [[m]];
    });
  }

  override featureMapSpec(levels: 1 | 4): FeatureMapSpec | null {
    const n = this.config.depths.length;
    if (levels === 4 && n !== 4) return null;
    const stages = levels === 1 ? [n - 1] : [0, 1, 2, 3];
    return { channels: stages.map((s) => this.config.embedDim * 2 ** s), strides: stages.map((s) => this.config.patchSize * 2 ** s) };
  }

  /** The output of each stage's blocks (before the patch merging after it), the last through the final norm, channels-first. */
  override forwardFeatureMaps(x: Tensor, levels: 1 | 4): Tensor[] {
    if (!this.featureMapSpec(levels)) return super.forwardFeatureMaps(x, levels);
    const layers = this.features.children().map(([, m]) => m);
    const n = this.config.depths.length;
    const maps: Tensor[] = [];
    let h = x;
    layers.forEach((layer, i) => {
      h = layer.forward(h);
      const stage = i % 2 === 1 ? (i - 1) / 2 : -1;
      if (stage < 0 || (levels === 1 && stage !== n - 1)) return;
      maps.push(permute(stage === n - 1 ? this.norm.forward(h) : h, [0, 3, 1, 2]));
    });
    return maps;
  }

  /** Global average pool and head; `preLogits` stops at the pooled (B, numFeatures). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    const pooled = flatten(adaptiveAvgPool2d(features, 1), 1);
    return preLogits || !this.head ? pooled : this.head.forward(pooled);
  }
}

registerFamily('swin', SWIN_MODELS, { dropRate: 'dropout', dropPathRate: 'stochasticDepthProb' }, (c, n, p) => new SwinTransformer(c, n, p));
