// torchvision's ResNet (models/resnet.py, "ResNet v1.5": the stride sits on the 3×3 conv) with
// its names: conv1, bn1, layer{1..4}.{i}.{conv1,bn1,conv2,bn2[,conv3,bn3],downsample.{0,1}}, fc.
// ResNeXt and wide ResNets are the same code with other `groups` / `widthPerGroup`.
import { Module } from '../../nn/module.js';
import { BatchNorm2d, Conv2d, Linear, MaxPool2d, Sequential, convBn, convBnAct } from '../../nn/layers.js';
import { adaptiveAvgPool2d } from '../../ops/conv.js';
import { add, relu } from '../../ops/elementwise.js';
import { flatten } from '../../ops/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { runStagesCheckpointed } from '../checkpointing.js';
import { channelsLastUnlessRecording } from '../../tensor/memory-format.js';
import { VisionModel, type FeatureMapSpec, type PreprocessConfig } from '../model.js';
import { torchvisionPreprocess, type ConfigEntry } from './config.js';

export interface ResNetConfig {
  block: 'basic' | 'bottleneck';
  /** Blocks in layer1..layer4. */
  layers: number[];
  groups: number;
  widthPerGroup: number;
}

const basic = (layers: number[]): ResNetConfig => ({ block: 'basic', layers, groups: 1, widthPerGroup: 64 });
const bottleneck = (layers: number[], groups = 1, widthPerGroup = 64): ResNetConfig => ({ block: 'bottleneck', layers, groups, widthPerGroup });

// Preprocessing of each model's DEFAULT weights: IMAGENET1K_V1 (resize 256) for 18/34,
// IMAGENET1K_V2 (resize 232) for the deeper ones.
export const RESNET_MODELS: Record<string, ConfigEntry<ResNetConfig>> = {
  resnet18: { config: basic([2, 2, 2, 2]), preprocess: torchvisionPreprocess(256) },
  resnet34: { config: basic([3, 4, 6, 3]), preprocess: torchvisionPreprocess(256) },
  resnet50: { config: bottleneck([3, 4, 6, 3]), preprocess: torchvisionPreprocess(232) },
  resnet101: { config: bottleneck([3, 4, 23, 3]), preprocess: torchvisionPreprocess(232) },
  resnet152: { config: bottleneck([3, 8, 36, 3]), preprocess: torchvisionPreprocess(232) },
};

const EXPANSION = { basic: 1, bottleneck: 4 } as const;

const conv3x3 = (cIn: number, cOut: number, stride = 1, groups = 1) => new Conv2d(cIn, cOut, 3, { stride, padding: 1, groups, bias: false });
const conv1x1 = (cIn: number, cOut: number, stride = 1) => new Conv2d(cIn, cOut, 1, { stride, bias: false });

/** Two 3×3 convolutions: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x). */
export class BasicBlock extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  bn2: BatchNorm2d;
  downsample: Sequential | null;
  constructor(cIn: number, planes: number, stride: number, downsample: Sequential | null) {
    super();
    this.conv1 = this.module('conv1', conv3x3(cIn, planes, stride));
    this.bn1 = this.module('bn1', new BatchNorm2d(planes));
    this.conv2 = this.module('conv2', conv3x3(planes, planes));
    this.bn2 = this.module('bn2', new BatchNorm2d(planes));
    this.downsample = this.module('downsample', downsample);
  }
  forward(x: Tensor): Tensor {
    const h = convBnAct(this.conv1, this.bn1, x, 'relu');
    const out = convBn(this.conv2, this.bn2, h);
    return relu(add(out, this.downsample ? this.downsample.forward(x) : x));
  }
}

/** 1×1 → 3×3 (stride, groups) → 1×1 ×4 channels, plus the shortcut. */
export class Bottleneck extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  bn2: BatchNorm2d;
  conv3: Conv2d;
  bn3: BatchNorm2d;
  downsample: Sequential | null;
  constructor(cIn: number, planes: number, stride: number, downsample: Sequential | null, groups: number, widthPerGroup: number) {
    super();
    const width = Math.trunc(planes * (widthPerGroup / 64)) * groups;
    this.conv1 = this.module('conv1', conv1x1(cIn, width));
    this.bn1 = this.module('bn1', new BatchNorm2d(width));
    this.conv2 = this.module('conv2', conv3x3(width, width, stride, groups));
    this.bn2 = this.module('bn2', new BatchNorm2d(width));
    this.conv3 = this.module('conv3', conv1x1(width, planes * EXPANSION.bottleneck));
    this.bn3 = this.module('bn3', new BatchNorm2d(planes * EXPANSION.bottleneck));
    this.downsample = this.module('downsample', downsample);
  }
  forward(x: Tensor): Tensor {
    let h = convBnAct(this.conv1, this.bn1, x, 'relu');
    h = convBnAct(this.conv2, this.bn2, h, 'relu');
    h = convBn(this.conv3, this.bn3, h);
    return relu(add(h, this.downsample ? this.downsample.forward(x) : x));
  }
}

export class ResNet extends VisionModel {
  /** Recompute each of layer1 … layer4 in the backward pass instead of keeping its activations. */
  gradientCheckpointing = false;
  readonly family = 'resnet';
  readonly numFeatures: number;
  conv1: Conv2d;
  bn1: BatchNorm2d;
  maxpool: MaxPool2d;
  layer1: Sequential;
  layer2: Sequential;
  layer3: Sequential;
  layer4: Sequential;
  fc: Linear | null;

  constructor(readonly config: ResNetConfig, readonly numClasses: number, readonly preprocess: PreprocessConfig) {
    super();
    const c = config;
    if (c.layers.length !== 4) throw new Error(`ResNet: layers must give the blocks of the 4 stages; got ${JSON.stringify(c.layers)}`);
    if (c.block === 'basic' && (c.groups !== 1 || c.widthPerGroup !== 64)) throw new Error('ResNet: basic blocks support only groups=1 and widthPerGroup=64 (as torchvision)');
    const expansion = EXPANSION[c.block];
    let cIn = 64;
    const makeLayer = (planes: number, blocks: number, stride: number): Sequential => {
      const down = stride !== 1 || cIn !== planes * expansion ? new Sequential(conv1x1(cIn, planes * expansion, stride), new BatchNorm2d(planes * expansion)) : null;
      const list: Module[] = [];
      for (let i = 0; i < blocks; i++) {
        const [s, d] = i === 0 ? [stride, down] : [1, null];
        list.push(c.block === 'basic' ? new BasicBlock(cIn, planes, s, d) : new Bottleneck(cIn, planes, s, d, c.groups, c.widthPerGroup));
        cIn = planes * expansion;
      }
      return new Sequential(...list);
    };
    this.conv1 = this.module('conv1', new Conv2d(3, 64, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.module('bn1', new BatchNorm2d(64));
    this.maxpool = this.module('maxpool', new MaxPool2d(3, { stride: 2, padding: 1 }));
    this.layer1 = this.module('layer1', makeLayer(64, c.layers[0]!, 1));
    this.layer2 = this.module('layer2', makeLayer(128, c.layers[1]!, 2));
    this.layer3 = this.module('layer3', makeLayer(256, c.layers[2]!, 2));
    this.layer4 = this.module('layer4', makeLayer(512, c.layers[3]!, 2));
    this.numFeatures = 512 * expansion;
    this.fc = this.module('fc', numClasses > 0 ? new Linear(this.numFeatures, numClasses) : null);
  }

  private stages(): Sequential[] {
    return [this.layer1, this.layer2, this.layer3, this.layer4];
  }

  /** x (B, 3, H, W) → (B, 512·expansion, H/32, W/32). */
  forwardFeatures(x: Tensor): Tensor {
    // Without a graph the features run channels-last (tensor/memory-format.ts).
    return channelsLastUnlessRecording(() => {
      const h = this.maxpool.forward(convBnAct(this.conv1, this.bn1, x, 'relu'));
      // Under gradient checkpointing each of layer1 … layer4 is one checkpoint.
      return runStagesCheckpointed(this, this.stages().map((l) => [l]), h) ?? this.stages().reduce((acc, l) => l.forward(acc), h);
    });
  }

  override featureMapSpec(levels: 1 | 4): FeatureMapSpec {
    const e = EXPANSION[this.config.block];
    const all = { channels: [64 * e, 128 * e, 256 * e, 512 * e], strides: [4, 8, 16, 32] };
    return levels === 4 ? all : { channels: [512 * e], strides: [32] };
  }

  /** The outputs of layer1 … layer4 (levels 4) or of layer4. */
  override forwardFeatureMaps(x: Tensor, levels: 1 | 4): Tensor[] {
    let h = this.maxpool.forward(relu(convBn(this.conv1, this.bn1, x)));
    const maps: Tensor[] = [];
    for (const layer of this.stages()) {
      h = runStagesCheckpointed(this, [[layer]], h) ?? layer.forward(h);
      maps.push(h);
    }
    return levels === 4 ? maps : [h];
  }

  /** Global average pool and fc; `preLogits` stops at the pooled (B, numFeatures). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    const pooled = flatten(adaptiveAvgPool2d(features, 1), 1);
    return preLogits || !this.fc ? pooled : this.fc.forward(pooled);
  }
}
