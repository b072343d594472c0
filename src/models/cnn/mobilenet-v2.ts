// torchvision's MobileNetV2 (models/mobilenetv2.py) with its names:
//   features.0 (Conv2dNormActivation 3×3 s2), features.{1..17}.conv (inverted residuals:
//   [1×1 expand CNA,] 3×3 depthwise CNA, 1×1 Conv2d, BatchNorm2d), features.18 (1×1 CNA),
//   classifier.{0 Dropout, 1 Linear}. Activations are ReLU6.
import { Module } from '../../nn/module.js';
import { BatchNorm2d, Conv2d, Dropout, Linear, Sequential } from '../../nn/layers.js';
import { adaptiveAvgPool2d } from '../../ops/conv.js';
import { add } from '../../ops/elementwise.js';
import { flatten } from '../../ops/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { runStagesCheckpointed } from '../checkpointing.js';
import { channelsLastUnlessRecording } from '../../tensor/memory-format.js';
import { VisionModel, type PreprocessConfig } from '../model.js';
import { torchvisionPreprocess, type ConfigEntry } from './config.js';
import { conv2dNormActivation, pyRound, runUntil } from './torchvision-blocks.js';

export interface MobileNetV2Config {
  widthMult: number;
  /** Channel counts are rounded to multiples of this. */
  roundNearest: number;
  /** Rows [t expansion, c channels, n blocks, s stride of the first block]. */
  invertedResidualSetting: number[][];
  inputChannel: number;
  lastChannel: number;
  dropout: number;
}

export const MOBILENET_V2_MODELS: Record<string, ConfigEntry<MobileNetV2Config>> = {
  mobilenet_v2: {
    config: {
      widthMult: 1, roundNearest: 8, inputChannel: 32, lastChannel: 1280, dropout: 0.2,
      invertedResidualSetting: [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]],
    },
    // DEFAULT = IMAGENET1K_V2: resize 232, crop 224.
    preprocess: torchvisionPreprocess(232),
  },
};

/** torchvision's _make_divisible: the nearest multiple of `divisor`, never below 90% of v. */
export function makeDivisible(v: number, divisor: number, minValue = divisor): number {
  let out = Math.max(minValue, Math.trunc(v + divisor / 2) - (Math.trunc(v + divisor / 2) % divisor));
  if (out < 0.9 * v) out += divisor;
  return out;
}

/** Expand (1×1), depthwise 3×3 (stride), project (1×1, linear); a residual when shapes allow. */
export class InvertedResidual extends Module {
  conv: Sequential;
  readonly useResConnect: boolean;
  constructor(cIn: number, cOut: number, stride: number, expandRatio: number) {
    super();
    if (stride !== 1 && stride !== 2) throw new Error(`InvertedResidual: stride must be 1 or 2; got ${stride}`);
    const hidden = pyRound(cIn * expandRatio);
    this.useResConnect = stride === 1 && cIn === cOut;
    this.conv = this.module('conv', new Sequential(
      ...(expandRatio !== 1 ? [conv2dNormActivation(cIn, hidden, 1, { activation: 'relu6' })] : []),
      conv2dNormActivation(hidden, hidden, 3, { stride, groups: hidden, activation: 'relu6' }),
      new Conv2d(hidden, cOut, 1, { bias: false }),
      new BatchNorm2d(cOut),
    ));
  }
  forward(x: Tensor): Tensor {
    const y = this.conv.forward(x);
    return this.useResConnect ? add(x, y) : y;
  }
}

export class MobileNetV2 extends VisionModel {
  /** Recompute each stage (a row of the inverted residual setting) in the backward pass instead of keeping its activations. */
  gradientCheckpointing = false;
  readonly family = 'mobilenet_v2';
  readonly numFeatures: number;
  features: Sequential;
  classifier: Sequential;

  constructor(readonly config: MobileNetV2Config, readonly numClasses: number, readonly preprocess: PreprocessConfig) {
    super();
    const c = config;
    if (c.invertedResidualSetting.length === 0 || c.invertedResidualSetting.some((row) => row.length !== 4)) {
      throw new Error(`MobileNetV2: invertedResidualSetting must be non-empty rows [t, c, n, s]; got ${JSON.stringify(c.invertedResidualSetting)}`);
    }
    let cIn = makeDivisible(c.inputChannel * c.widthMult, c.roundNearest);
    this.numFeatures = makeDivisible(c.lastChannel * Math.max(1, c.widthMult), c.roundNearest);
    const layers: Module[] = [conv2dNormActivation(3, cIn, 3, { stride: 2, activation: 'relu6' })];
    for (const [t, channels, n, s] of c.invertedResidualSetting as [number, number, number, number][]) {
      const cOut = makeDivisible(channels * c.widthMult, c.roundNearest);
      for (let i = 0; i < n; i++) {
        layers.push(new InvertedResidual(cIn, cOut, i === 0 ? s : 1, t));
        cIn = cOut;
      }
    }
    layers.push(conv2dNormActivation(cIn, this.numFeatures, 1, { activation: 'relu6' }));
    this.features = this.module('features', new Sequential(...layers));
    this.classifier = this.module('classifier', new Sequential(new Dropout(c.dropout), ...(numClasses > 0 ? [new Linear(this.numFeatures, numClasses)] : [])));
  }

  /** x (B, 3, H, W) → (B, lastChannel, H/32, W/32). */
  forwardFeatures(x: Tensor): Tensor {
    // Without a graph the features run channels-last (tensor/memory-format.ts).
    return runStagesCheckpointed(this, this.stages(), x) ?? channelsLastUnlessRecording(() => this.features.forward(x));
  }

  /** The features' children by stage: the stem, each row of the inverted residual setting, the last convolution. */
  private stages(): Module[][] {
    const children = this.features.children().map(([, m]) => m);
    const sizes = [1, ...this.config.invertedResidualSetting.map((row) => row[2]!), 1];
    if (sizes.reduce((a, b) => a + b, 0) !== children.length) return children.map((m) => [m]);
    let at = 0;
    return sizes.map((n) => children.slice(at, (at += n)));
  }

  /** Global average pool, dropout, Linear; `preLogits` stops at the pooled (B, numFeatures). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    return runUntil(this.classifier, flatten(adaptiveAvgPool2d(features, 1), 1), preLogits ? '1' : null);
  }
}
