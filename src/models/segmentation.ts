// Semantic segmentation on any backbone that gives feature maps (VisionModel.forwardFeatureMaps):
// a decode head turns the maps into class logits at the first map's resolution, and the model
// upsamples them bilinearly to the input size, so its output is (B, classes, H, W).
//
// Heads, named like mmsegmentation's modules:
//   linear  DINOv2's linear segmentation head (BNHead): BatchNorm over the last map's channels,
//           then `conv_seg`, a 1×1 convolution to the classes.
//   uper    a light UPerNet: per level a 1×1 `lateral_convs` (conv + BN + ReLU), the top-down
//           path (each level plus its upper neighbour upsampled bilinearly), 3×3 `fpn_convs`
//           on every level, the levels upsampled to the first and concatenated, a 3×3
//           `fpn_bottleneck` and `conv_seg`. UPerNet's pyramid pooling module is left out. Maps
//           that share one stride (a plain ViT's) are first rescaled ×4, ×2, ×1, ×½ (bilinear
//           up, 2×2 max-pool down), as mmsegmentation's MultiLevelNeck does for ViTs.
import { Module } from '../nn/module.js';
import { BatchNorm2d, Conv2d, ModuleDict, convBn } from '../nn/layers.js';
import { add, relu } from '../ops/elementwise.js';
import { concat } from '../ops/layout.js';
import { interpolate } from '../ops/nn.js';
import { maxPool2d } from '../ops/conv.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Generator } from '../tensor/random.js';
import { ConfigError } from '../errors.js';
import type { FeatureMapSpec, VisionModel } from './model.js';

export type SegmentationHeadKind = 'linear' | 'uper';

export const SEGMENTATION_HEADS: readonly SegmentationHeadKind[] = ['linear', 'uper'];

/** Convolution, BatchNorm, ReLU (mmcv's ConvModule). */
export class ConvModule extends Module {
  conv: Conv2d;
  bn: BatchNorm2d;
  constructor(cIn: number, cOut: number, kernel: 1 | 3, generator?: Generator) {
    super();
    this.conv = this.module('conv', new Conv2d(cIn, cOut, kernel, { padding: (kernel - 1) / 2, bias: false, generator }));
    this.bn = this.module('bn', new BatchNorm2d(cOut));
  }
  forward(x: Tensor): Tensor {
    return relu(convBn(this.conv, this.bn, x));
  }
}

export abstract class DecodeHead extends Module {
  abstract readonly levels: 1 | 4;
  abstract forwardMaps(maps: Tensor[]): Tensor;
  forward(x: Tensor): Tensor {
    return this.forwardMaps([x]);
  }
}

export class LinearDecodeHead extends DecodeHead {
  readonly levels = 1;
  bn: BatchNorm2d;
  conv_seg: Conv2d;
  constructor(channels: number, numClasses: number, generator?: Generator) {
    super();
    this.bn = this.module('bn', new BatchNorm2d(channels));
    this.conv_seg = this.module('conv_seg', new Conv2d(channels, numClasses, 1, { generator }));
  }
  forwardMaps(maps: Tensor[]): Tensor {
    return this.conv_seg.forward(this.bn.forward(maps[maps.length - 1]!));
  }
}

const resize = (x: Tensor, like: Tensor) =>
  x.shape[2] === like.shape[2] && x.shape[3] === like.shape[3] ? x : interpolate(x, { size: [like.shape[2]!, like.shape[3]!], mode: 'bilinear', alignCorners: false });

export class UperDecodeHead extends DecodeHead {
  readonly levels = 4;
  readonly rescale: readonly number[] | null;
  lateral_convs: ModuleDict<ConvModule>;
  fpn_convs: ModuleDict<ConvModule>;
  fpn_bottleneck: ConvModule;
  conv_seg: Conv2d;
  constructor(spec: FeatureMapSpec, channels: number, numClasses: number, generator?: Generator) {
    super();
    if (spec.channels.length !== 4) throw new Error(`uper head: needs 4 feature maps; got ${spec.channels.length}`);
    this.rescale = spec.strides.every((s) => s === spec.strides[0]) ? [4, 2, 1, 0.5] : null;
    this.lateral_convs = this.module('lateral_convs', new ModuleDict(Object.fromEntries(spec.channels.map((c, i) => [String(i), new ConvModule(c, channels, 1, generator)]))));
    this.fpn_convs = this.module('fpn_convs', new ModuleDict(Object.fromEntries(spec.channels.map((_, i) => [String(i), new ConvModule(channels, channels, 3, generator)]))));
    this.fpn_bottleneck = this.module('fpn_bottleneck', new ConvModule(4 * channels, channels, 3, generator));
    this.conv_seg = this.module('conv_seg', new Conv2d(channels, numClasses, 1, { generator }));
  }
  private scaled(maps: Tensor[]): Tensor[] {
    const r = this.rescale;
    if (!r) return maps;
    return maps.map((m, i) => {
      const s = r[i]!;
      if (s === 1) return m;
      if (s < 1) return maxPool2d(m, [2, 2], { stride: [2, 2] });
      return interpolate(m, { size: [m.shape[2]! * s, m.shape[3]! * s], mode: 'bilinear', alignCorners: false });
    });
  }
  forwardMaps(maps: Tensor[]): Tensor {
    const lateral = this.lateral_convs.children().map(([, m]) => m as ConvModule);
    const fpn = this.fpn_convs.children().map(([, m]) => m as ConvModule);
    const lat = this.scaled(maps).map((m, i) => lateral[i]!.forward(m));
    for (let i = lat.length - 1; i > 0; i--) lat[i - 1] = add(lat[i - 1]!, resize(lat[i]!, lat[i - 1]!));
    const outs = lat.map((l, i) => fpn[i]!.forward(l));
    const fused = this.fpn_bottleneck.forward(concat(outs.map((o) => resize(o, outs[0]!)), 1));
    return this.conv_seg.forward(fused);
  }
}

export interface SegmentationModelOptions {
  head: SegmentationHeadKind;
  numClasses: number;
  /** Width of the uper head's convolutions (default 64). */
  channels?: number;
  generator?: Generator;
}

/** A backbone (built without its classifier) under a decode head; forward gives logits (B, classes, H, W) at the input's size. */
export class SegmentationModel extends Module {
  backbone: VisionModel;
  decode_head: DecodeHead;
  constructor(backbone: VisionModel, opts: SegmentationModelOptions) {
    super();
    const levels = opts.head === 'linear' ? 1 : 4;
    const spec = backbone.featureMapSpec(levels);
    if (!spec) throw new ConfigError(`segmentation head '${opts.head}': ${backbone.family} models give no ${levels === 4 ? 'four-level ' : ''}feature maps; use a ViT (vit, dinov2, dinov3), Swin, ConvNeXt or ResNet backbone${levels === 4 ? ", or --seg-head linear" : ''}`);
    this.backbone = this.module('backbone', backbone);
    this.decode_head = this.module('decode_head', opts.head === 'linear'
      ? new LinearDecodeHead(spec.channels[0]!, opts.numClasses, opts.generator)
      : new UperDecodeHead(spec, opts.channels ?? 64, opts.numClasses, opts.generator));
  }
  /**
   * The head computing now: the decode head, or, when an adapter method trains it as a module to
   * save (a wrapper keeping the original and a copy per adapter), the wrapper's current one.
   */
  head(): DecodeHead {
    const m = this.decode_head as Module & { current?: () => Module };
    return (typeof m.current === 'function' ? m.current() : m) as DecodeHead;
  }
  /** The head's logits at its own resolution (the first feature map's). */
  forwardLogits(x: Tensor): Tensor {
    const head = this.head();
    return head.forwardMaps(this.backbone.forwardFeatureMaps(x, head.levels));
  }
  forward(x: Tensor): Tensor {
    const logits = this.forwardLogits(x);
    return interpolate(logits, { size: [x.shape[2]!, x.shape[3]!], mode: 'bilinear', alignCorners: false });
  }
}
