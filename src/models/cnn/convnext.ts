// torchvision's ConvNeXt (models/convnext.py) with its names:
//   features.0 stem (Conv2d 4×4 s4 '0', LayerNorm2d '1'),
//   features.{1,3,5,7}.{i}.block.{0 dwconv 7×7, 2 LayerNorm, 3 Linear C→4C, 5 Linear 4C→C}
//     and .layer_scale (C, 1, 1),
//   features.{2,4,6} downsampling (LayerNorm2d '0', Conv2d 2×2 s2 '1'),
//   classifier.{0 LayerNorm2d, 2 Linear}.
// Block: x + drop_path(layer_scale · block(x)); the block runs channels-last between its permutes.
import { Module } from '../../nn/module.js';
import { Activation, Conv2d, LayerNorm, Linear, Sequential } from '../../nn/layers.js';
import { adaptiveAvgPool2d } from '../../ops/conv.js';
import { ones } from '../../ops/creation.js';
import { add, mul } from '../../ops/elementwise.js';
import { dropPath } from '../../ops/nn.js';
import type { Tensor } from '../../tensor/tensor.js';
import { runStagesCheckpointed } from '../checkpointing.js';
import { VisionModel, type FeatureMapSpec, type PreprocessConfig } from '../model.js';
import { torchvisionPreprocess, type ConfigEntry } from './config.js';
import { IDENTITY_TAP, type Tap, type TappedBlock } from '../../nn/residual-taps.js';
import { conv2dNormActivation, Flatten, Permute, runUntil } from './torchvision-blocks.js';

export interface ConvNeXtConfig {
  /** torchvision's CNBlockConfig rows: [input channels, output channels (null: last stage), blocks]. */
  blockSetting: [number, number | null, number][];
  /** Initial value of each block's layer_scale. */
  layerScale: number;
  /** Stochastic depth, rising linearly over the blocks to this value (the builder's default). */
  stochasticDepthProb: number;
}

const setting = (dims: [number, number, number, number], depths: [number, number, number, number]): ConvNeXtConfig['blockSetting'] =>
  dims.map((d, i) => [d, i < 3 ? dims[i + 1]! : null, depths[i]!]);

// DEFAULT weights (IMAGENET1K_V1) evaluate bilinearly at 224 after resizing to 236 / 230 / 232 / 232.
export const CONVNEXT_MODELS: Record<string, ConfigEntry<ConvNeXtConfig>> = {
  convnext_tiny: { config: { blockSetting: setting([96, 192, 384, 768], [3, 3, 9, 3]), layerScale: 1e-6, stochasticDepthProb: 0.1 }, preprocess: torchvisionPreprocess(236) },
  convnext_small: { config: { blockSetting: setting([96, 192, 384, 768], [3, 3, 27, 3]), layerScale: 1e-6, stochasticDepthProb: 0.4 }, preprocess: torchvisionPreprocess(230) },
  convnext_base: { config: { blockSetting: setting([128, 256, 512, 1024], [3, 3, 27, 3]), layerScale: 1e-6, stochasticDepthProb: 0.5 }, preprocess: torchvisionPreprocess(232) },
  convnext_large: { config: { blockSetting: setting([192, 384, 768, 1536], [3, 3, 27, 3]), layerScale: 1e-6, stochasticDepthProb: 0.5 }, preprocess: torchvisionPreprocess(232) },
};

const layerNorm2d = (c: number) => new LayerNorm(c, 1e-6, { channelsFirst: true });

const CHANNELS_FIRST = { kind: 'channels-first' } as const;

export class CNBlock extends Module implements TappedBlock {
  readonly tapPoints = ['block'] as const;
  readonly tapChannels: number;
  block: Sequential;
  layer_scale: Tensor;
  constructor(readonly dim: number, layerScale: number, readonly stochasticDepthProb: number) {
    super();
    this.tapChannels = dim;
    this.block = this.module('block', new Sequential(
      new Conv2d(dim, dim, 7, { padding: 3, groups: dim }),
      new Permute([0, 2, 3, 1]),
      new LayerNorm(dim, 1e-6),
      new Linear(dim, 4 * dim),
      new Activation('gelu'),
      new Linear(4 * dim, dim),
      new Permute([0, 3, 1, 2]),
    ));
    this.layer_scale = this.param('layer_scale', mul(ones([dim, 1, 1]), layerScale));
  }
  /** x (B, C, H, W) → (B, C, H, W). */
  forward(x: Tensor): Tensor {
    return this.forwardTapped(IDENTITY_TAP, x);
  }
  /** The forward with `tap` after the residual add (point 0). */
  forwardTapped(tap: Tap, x: Tensor): Tensor {
    return tap(0, add(dropPath(mul(this.layer_scale, this.block.forward(x)), this.stochasticDepthProb, this.training), x), CHANNELS_FIRST);
  }
}

export class ConvNeXt extends VisionModel {
  /** Recompute each stage in the backward pass instead of keeping its activations. */
  gradientCheckpointing = false;
  readonly family = 'convnext';
  readonly numFeatures: number;
  features: Sequential;
  classifier: Sequential;

  constructor(readonly config: ConvNeXtConfig, readonly numClasses: number, readonly preprocess: PreprocessConfig) {
    super();
    const stages = config.blockSetting;
    if (stages.length === 0) throw new Error('ConvNeXt: blockSetting must not be empty');
    const total = stages.reduce((n, [, , layers]) => n + layers, 0);
    let blockId = 0;
    const layers: Module[] = [conv2dNormActivation(3, stages[0]![0], 4, { stride: 4, padding: 0, norm: 'layer2d', activation: null, bias: true })];
    for (const [cIn, cOut, n] of stages) {
      const blocks: Module[] = [];
      for (let i = 0; i < n; i++) {
        blocks.push(new CNBlock(cIn, config.layerScale, total > 1 ? (config.stochasticDepthProb * blockId) / (total - 1) : 0));
        blockId++;
      }
      layers.push(new Sequential(...blocks));
      if (cOut !== null) layers.push(new Sequential(layerNorm2d(cIn), new Conv2d(cIn, cOut, 2, { stride: 2 })));
    }
    const last = stages[stages.length - 1]!;
    this.numFeatures = last[1] ?? last[0];
    this.features = this.module('features', new Sequential(...layers));
    this.classifier = this.module('classifier', new Sequential(
      layerNorm2d(this.numFeatures), new Flatten(1), ...(numClasses > 0 ? [new Linear(this.numFeatures, numClasses)] : []),
    ));
  }

  /** x (B, 3, H, W) → (B, C, H/32, W/32). */
  forwardFeatures(x: Tensor): Tensor {
    // Under gradient checkpointing each child of `features` (the stem, a stage's blocks, a downsampling) is one checkpoint.
    return runStagesCheckpointed(this, this.features.children().map(([, m]) => [m]), x) ?? this.features.forward(x);
  }

  override featureMapSpec(levels: 1 | 4): FeatureMapSpec | null {
    const stages = this.config.blockSetting;
    if (levels === 4 && stages.length !== 4) return null;
    const picked = levels === 1 ? [stages.length - 1] : [0, 1, 2, 3];
    return { channels: picked.map((s) => stages[s]![0]), strides: picked.map((s) => 4 * 2 ** s) };
  }

  /** The output of each stage's blocks (before the downsampling after it). */
  override forwardFeatureMaps(x: Tensor, levels: 1 | 4): Tensor[] {
    if (!this.featureMapSpec(levels)) return super.forwardFeatureMaps(x, levels);
    const n = this.config.blockSetting.length;
    const maps: Tensor[] = [];
    let h = x;
    this.features.children().forEach(([, layer], i) => {
      h = layer.forward(h);
      const stage = i % 2 === 1 ? (i - 1) / 2 : -1;
      if (stage >= 0 && (levels === 4 || stage === n - 1)) maps.push(h);
    });
    return maps;
  }

  /** Global average pool, LayerNorm2d, flatten, Linear; `preLogits` stops before the Linear (B, numFeatures). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    return runUntil(this.classifier, adaptiveAvgPool2d(features, 1), preLogits ? '2' : null);
  }
}
