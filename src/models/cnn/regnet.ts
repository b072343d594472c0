// torchvision's RegNet (models/regnet.py), Y variants (squeeze-excitation), with its names:
//   stem (Conv2dNormActivation 3×3 s2), trunk_output.block{s}.block{s}-{i}.{proj?, f.{a, b, se.{fc1, fc2}, c}},
//   fc. Registered as regnety_400mf, regnety_800mf, regnety_1_6gf (torchvision's regnet_y_*).
// The per-stage widths are stored as torchvision's BlockParams.from_init_params computes them
// (quantised, group-compatible), so the configs need no float32 re-derivation.
import { Module } from '../../nn/module.js';
import { Linear, type Sequential } from '../../nn/layers.js';
import { SqueezeExcitation } from '../../nn/squeeze-excite.js';
import { adaptiveAvgPool2d } from '../../ops/conv.js';
import { add, relu } from '../../ops/elementwise.js';
import { flatten } from '../../ops/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { runStagesCheckpointed } from '../checkpointing.js';
import { VisionModel, type PreprocessConfig } from '../model.js';
import { torchvisionPreprocess, type ConfigEntry } from './config.js';
import { conv2dNormActivation, NamedSequential, pyRound } from './torchvision-blocks.js';

export interface RegNetConfig {
  stemWidth: number;
  /** Per stage: blocks, output width, group width, bottleneck multiplier (each stage starts with stride 2). */
  depths: number[];
  widths: number[];
  groupWidths: number[];
  bottleneckMultipliers: number[];
  /** Squeeze channels = round(seRatio · block input width); null: no SE (RegNetX). */
  seRatio: number | null;
}

const regnetY = (depths: number[], widths: number[], groupWidth: number): RegNetConfig =>
  ({ stemWidth: 32, depths, widths, groupWidths: depths.map(() => groupWidth), bottleneckMultipliers: depths.map(() => 1), seRatio: 0.25 });

// regnet_y_400mf: from_init_params(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25), etc.
// DEFAULT weights (IMAGENET1K_V2) evaluate at 224 after resizing to 232, bilinear.
export const REGNET_MODELS: Record<string, ConfigEntry<RegNetConfig>> = {
  regnety_400mf: { config: regnetY([1, 3, 6, 6], [48, 104, 208, 440], 8), preprocess: torchvisionPreprocess(232) },
  regnety_800mf: { config: regnetY([1, 3, 8, 2], [64, 144, 320, 784], 16), preprocess: torchvisionPreprocess(232) },
  regnety_1_6gf: { config: regnetY([2, 6, 17, 2], [48, 120, 336, 888], 24), preprocess: torchvisionPreprocess(232) },
};

/** x + f(x) (or proj(x) + f(x) when the shape changes), then ReLU; f = 1×1, grouped 3×3 (stride), [SE], 1×1. */
export class ResBottleneckBlock extends Module {
  proj: Sequential | null;
  f: NamedSequential;
  constructor(cIn: number, cOut: number, stride: number, groupWidth: number, bottleneckMultiplier: number, seRatio: number | null) {
    super();
    const wb = pyRound(cOut * bottleneckMultiplier);
    this.proj = this.module('proj', cIn !== cOut || stride !== 1 ? conv2dNormActivation(cIn, cOut, 1, { stride, activation: null }) : null);
    this.f = this.module('f', new NamedSequential([
      ['a', conv2dNormActivation(cIn, wb, 1)],
      ['b', conv2dNormActivation(wb, wb, 3, { stride, groups: Math.floor(wb / groupWidth) })],
      ...(seRatio ? [['se', new SqueezeExcitation(wb, pyRound(seRatio * cIn))] as const] : []),
      ['c', conv2dNormActivation(wb, cOut, 1, { activation: null })],
    ]));
  }
  forward(x: Tensor): Tensor {
    return relu(add(this.proj ? this.proj.forward(x) : x, this.f.forward(x)));
  }
}

export class RegNet extends VisionModel {
  /** Recompute each stage in the backward pass instead of keeping its activations. */
  gradientCheckpointing = false;
  readonly family = 'regnet';
  readonly numFeatures: number;
  stem: Sequential;
  trunk_output: NamedSequential;
  fc: Linear | null;

  constructor(readonly config: RegNetConfig, readonly numClasses: number, readonly preprocess: PreprocessConfig) {
    super();
    const c = config;
    const n = c.depths.length;
    if ([c.widths, c.groupWidths, c.bottleneckMultipliers].some((a) => a.length !== n)) {
      throw new Error(`RegNet: depths, widths, groupWidths and bottleneckMultipliers need one entry per stage; got ${JSON.stringify([c.depths, c.widths, c.groupWidths, c.bottleneckMultipliers])}`);
    }
    this.stem = this.module('stem', conv2dNormActivation(3, c.stemWidth, 3, { stride: 2 }));
    let cIn = c.stemWidth;
    const stages: [string, Module][] = c.depths.map((depth, s) => {
      const blocks: [string, Module][] = [];
      for (let i = 0; i < depth; i++) {
        blocks.push([`block${s + 1}-${i}`, new ResBottleneckBlock(i === 0 ? cIn : c.widths[s]!, c.widths[s]!, i === 0 ? 2 : 1, c.groupWidths[s]!, c.bottleneckMultipliers[s]!, c.seRatio)]);
      }
      cIn = c.widths[s]!;
      return [`block${s + 1}`, new NamedSequential(blocks)];
    });
    this.trunk_output = this.module('trunk_output', new NamedSequential(stages));
    this.numFeatures = cIn;
    this.fc = this.module('fc', numClasses > 0 ? new Linear(cIn, numClasses) : null);
  }

  /** x (B, 3, H, W) → (B, widths[-1], H/32, W/32) for four stages. */
  forwardFeatures(x: Tensor): Tensor {
    const h = this.stem.forward(x);
    // Under gradient checkpointing each stage of trunk_output (block1 … block4) is one checkpoint.
    return runStagesCheckpointed(this, this.trunk_output.children().map(([, m]) => [m]), h) ?? this.trunk_output.forward(h);
  }

  /** Global average pool and fc; `preLogits` stops at the pooled (B, numFeatures). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    const pooled = flatten(adaptiveAvgPool2d(features, 1), 1);
    return preLogits || !this.fc ? pooled : this.fc.forward(pooled);
  }
}
