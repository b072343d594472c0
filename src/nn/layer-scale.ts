// LayerScale (CaiT): a learned per-channel scale on a residual branch, y = x · γ. timm names the
// parameter `gamma` (`blocks.N.ls1.gamma`), transformers `lambda1` (`layer.N.layer_scale1.lambda1`).
import { Module } from './module.js';
import { full } from '../ops/creation.js';
import { mul } from '../ops/elementwise.js';
import type { Tensor } from '../tensor/tensor.js';

export class LayerScale extends Module {
  readonly scale: Tensor;
  /** x (…, C) · γ (C), γ initialised to `initValue`; `paramName` is the checkpoint's name for γ. */
  constructor(readonly dim: number, initValue: number, readonly paramName: 'gamma' | 'lambda1' = 'gamma') {
    super();
    this.scale = this.param(paramName, full([dim], initValue));
  }
  forward(x: Tensor): Tensor {
    return mul(x, this.scale);
  }
}
