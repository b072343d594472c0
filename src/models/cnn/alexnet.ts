// torchvision's AlexNet (models/alexnet.py, the "one weird trick" variant) with its names:
//   features.{0,3,6,8,10} Conv2d, avgpool (6×6 adaptive), classifier.{1,4,6} Linear.
// Inputs of at least 63×63 give a non-empty feature map; the adaptive pool accepts any size above.
import { Activation, Conv2d, Dropout, Linear, MaxPool2d, Sequential } from '../../nn/layers.js';
import { adaptiveAvgPool2d } from '../../ops/conv.js';
import { flatten } from '../../ops/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { VisionModel, type PreprocessConfig } from '../model.js';
import { torchvisionPreprocess, type ConfigEntry } from './config.js';
import { runUntil } from './torchvision-blocks.js';

export interface AlexNetConfig {
  /** Dropout before each hidden Linear of the classifier (torchvision's `dropout`). */
  dropout: number;
  hidden: number;
}

export const ALEXNET_MODELS: Record<string, ConfigEntry<AlexNetConfig>> = {
  alexnet: { config: { dropout: 0.5, hidden: 4096 }, preprocess: torchvisionPreprocess(256) },
};

export class AlexNet extends VisionModel {
  readonly family = 'alexnet';
  readonly numFeatures: number;
  features: Sequential;
  classifier: Sequential;

  constructor(readonly config: AlexNetConfig, readonly numClasses: number, readonly preprocess: PreprocessConfig) {
    super();
    const relu = () => new Activation('relu');
    const pool = () => new MaxPool2d(3, { stride: 2 });
    this.features = this.module('features', new Sequential(
      new Conv2d(3, 64, 11, { stride: 4, padding: 2 }), relu(), pool(),
      new Conv2d(64, 192, 5, { padding: 2 }), relu(), pool(),
      new Conv2d(192, 384, 3, { padding: 1 }), relu(),
      new Conv2d(384, 256, 3, { padding: 1 }), relu(),
      new Conv2d(256, 256, 3, { padding: 1 }), relu(), pool(),
    ));
    const h = config.hidden;
    this.numFeatures = h;
    this.classifier = this.module('classifier', new Sequential(
      new Dropout(config.dropout), new Linear(256 * 6 * 6, h), relu(),
      new Dropout(config.dropout), new Linear(h, h), relu(),
      ...(numClasses > 0 ? [new Linear(h, numClasses)] : []),
    ));
  }

  /** x (B, 3, H, W) → (B, 256, h, w) after the last max-pool. */
  forwardFeatures(x: Tensor): Tensor {
    return this.features.forward(x);
  }

  /** 6×6 adaptive average pool, flatten, classifier; `preLogits` stops after the second hidden ReLU (B, 4096). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    return runUntil(this.classifier, flatten(adaptiveAvgPool2d(features, 6), 1), preLogits ? '6' : null);
  }
}
