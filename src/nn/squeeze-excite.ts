// Squeeze-and-Excitation (Hu et al. 2018), torchvision.ops.SqueezeExcitation's names:
//   fc1 Conv2d(C, S, 1), fc2 Conv2d(S, C, 1);  y = x · σ(fc2(δ(fc1(mean_hw x)))).
import { Module } from './module.js';
import { Conv2d, type ActivationName } from './layers.js';
import { adaptiveAvgPool2d } from '../ops/conv.js';
import { mul, relu, sigmoid, silu } from '../ops/elementwise.js';
import type { Tensor } from '../tensor/tensor.js';

const DELTA = { relu, silu } as const;

export class SqueezeExcitation extends Module {
  fc1: Conv2d;
  fc2: Conv2d;
  /** `activation`: δ between the two 1×1 convolutions (ReLU in torchvision's RegNet, SiLU in EfficientNet). */
  constructor(readonly inputChannels: number, readonly squeezeChannels: number, readonly activation: Extract<ActivationName, keyof typeof DELTA> = 'relu') {
    super();
    this.fc1 = this.module('fc1', new Conv2d(inputChannels, squeezeChannels, 1));
    this.fc2 = this.module('fc2', new Conv2d(squeezeChannels, inputChannels, 1));
  }
  /** x (B, C, H, W) → x scaled per channel. */
  forward(x: Tensor): Tensor {
    const squeezed = adaptiveAvgPool2d(x, 1);
    const scale = sigmoid(this.fc2.forward(DELTA[this.activation](this.fc1.forward(squeezed))));
    return mul(scale, x);
  }
}
