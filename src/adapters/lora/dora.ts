// DoRA (Liu et al. 2024): W' = m · (W + sBA) / ‖W + sBA‖_c, with m initialised to the per-output
// norm of W and the norm treated as a constant in backward (paper §4.3; PEFT does the same).
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { keep } from '../../tensor/memory.js';
import { Module } from '../../nn/module.js';
import { Identity } from '../../nn/layers.js';
import { add, div, eq, mul, sub, where } from '../../ops/elementwise.js';
import { norm } from '../../ops/reduce.js';
import { reshape } from '../../ops/layout.js';
import { assign } from '../../ops/layout.js';
import type { LoraLayer } from './layer.js';
import type { LoraVariant } from './variant.js';

/** ‖W + ΔW‖ per output channel, shaped like the magnitude vector: (out,) or (1, out, 1, 1). */
function weightNorm(layer: LoraLayer, adapter: string): Tensor {
  return noGrad(() => {
    const w = add(layer.base_layer.weight, layer.deltaWeight(adapter));
    const n = norm(reshape(w, [w.shape[0]!, -1]), 1);
    return layer.isConv ? reshape(n, [1, -1, 1, 1]) : n;
  });
}

/**
 * m / ‖W + ΔW‖, taken as 0 for an output channel whose weights are all zero (pretrained
 * checkpoints have such dead channels; their magnitude is 0 too, and 0/0 would make the whole
 * output NaN). Such a channel stays zero, as it is in the base model.
 */
function magnitudeScale(m: Tensor, n: Tensor): Tensor {
  const dead = eq(n, 0);
  return where(dead, 0, div(m, where(dead, 1, n)));
}

/** The magnitude shaped to scale W row by row: (out, 1) or (out, 1, 1, 1). */
function perRow(m: Tensor, layer: LoraLayer): Tensor {
  return reshape(m, layer.isConv ? [-1, 1, 1, 1] : [-1, 1]);
}

/**
 * DoRA's per-adapter state on a layer: the magnitude m (parameter `weight`, PEFT's
 * DoraLinearLayer layout) and, while merged, the factor m / ‖W + ΔW‖ that unmerging divides out.
 */
export class DoraMagnitude extends Module {
  readonly weight: Tensor;
  mergeFactor: Tensor | null = null;
  constructor(value: Tensor) {
    super();
    this.weight = this.param('weight', value);
  }
  forward(): Tensor {
    return this.weight;
  }
  override dispose(): void {
    this.mergeFactor?.dispose();
    this.mergeFactor = null;
    super.dispose();
  }
}

function magnitudeOf(layer: LoraLayer, adapter: string): DoraMagnitude {
  const m = layer.lora_magnitude_vector.get(adapter);
  if (!(m instanceof DoraMagnitude)) throw new Error(`layer has no DoRA magnitude for adapter '${adapter}'`);
  return m;
}

export const dora: LoraVariant = {
  name: 'DoRA',

  init(layer, adapter) {
    layer.lora_magnitude_vector.set(adapter, new DoraMagnitude(keep(weightNorm(layer, adapter))));
  },

  forward(layer, adapter, _x, xd, result) {
    const m = magnitudeOf(layer, adapter).weight;
    const scale = magnitudeScale(m, weightNorm(layer, adapter));
    const dropout = layer.lora_dropout.get(adapter)!;
    // Without active dropout, base(x) − bias is the already computed result; otherwise recompute on xd.
    let base: Tensor;
    if (dropout instanceof Identity || !layer.training) {
      const bias = layer.base_layer.bias;
      base = bias ? sub(result, layer.isConv ? reshape(bias, [1, -1, 1, 1]) : bias) : result;
    } else base = layer.baseWithoutBias(xd);
    const doraTerm = add(mul(sub(scale, 1), base), mul(scale, layer.loraOutput(adapter, xd)));
    return add(result, doraTerm);
  },

  merge(layer, adapter) {
    const magnitude = magnitudeOf(layer, adapter);
    const factor = keep(perRow(magnitudeScale(magnitude.weight, weightNorm(layer, adapter)), layer));
    const W = layer.base_layer.weight;
    assign(W, mul(add(W, layer.deltaWeight(adapter)), factor));
    magnitude.mergeFactor?.dispose();
    magnitude.mergeFactor = factor;
  },

  unmerge(layer, adapter) {
    const magnitude = magnitudeOf(layer, adapter);
    const factor = magnitude.mergeFactor;
    if (!factor) throw new Error(`DoRA adapter '${adapter}' has no merge record to undo`);
    const W = layer.base_layer.weight;
    // A dead channel (factor 0) had W + ΔW = 0 there, so its base row was −ΔW.
    const dead = eq(factor, 0);
    assign(W, sub(where(dead, 0, div(W, where(dead, 1, factor))), layer.deltaWeight(adapter)));
    factor.dispose();
    magnitude.mergeFactor = null;
  },
};
