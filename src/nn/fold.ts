// Folding a BatchNorm that uses its running statistics (eval mode, or frozen for adapter
// training) into the convolution before it: BN(conv(x, W) + b) = conv(x, W·s) + (b − μ)·s + β
// with s = γ / √(σ² + ε) per output channel. One pass over the activations instead of three
// (convolution, normalisation read and write), in forward and backward alike; gradients reach
// x, and W, γ, β where they are trainable, through the ops that build the folded weights.
import { Conv2d, BatchNorm2d } from './layers.js';
import type { Module } from './module.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, mul, neg, rsqrt, sub } from '../ops/elementwise.js';
import { reshape } from '../ops/layout.js';
import { conv2d } from '../ops/conv.js';

/** A module that is, right now, exactly a Conv2d (itself, or an adapter wrapper that adds nothing). */
export interface ConvLike {
  plainConv(): Conv2d | null;
}

function plainConvOf(m: Module | null): Conv2d | null {
  if (m instanceof Conv2d) return m;
  const c = m as Partial<ConvLike> | null;
  return typeof c?.plainConv === 'function' ? c.plainConv() : null;
}

/** Whether `bn` normalises with its running statistics (so it is an affine map per channel). */
export function usesRunningStats(bn: Module | null): bn is BatchNorm2d {
  return bn instanceof BatchNorm2d && (!bn.training || bn.frozen) && bn.runningMean !== null && bn.runningVar !== null;
}

/**
 * conv then bn as one convolution, or null when they cannot be folded (the BatchNorm uses batch
 * statistics, or the conv module carries an unmerged adapter). `input` is the conv's input.
 */
export function convBatchNormFolded(convModule: Module | null, bn: Module | null, input: Tensor): Tensor | null {
  if (!usesRunningStats(bn)) return null;
  const conv = plainConvOf(convModule);
  if (!conv) return null;
  const c = conv.outChannels;
  let s = rsqrt(add(bn.runningVar!, bn.eps));
  if (bn.weight) s = mul(s, bn.weight);
  const weight = mul(conv.weight, reshape(s, [c, 1, 1, 1]));
  let bias = mul(conv.bias ? sub(conv.bias, bn.runningMean!) : neg(bn.runningMean!), s);
  if (bn.bias) bias = add(bias, bn.bias);
  return conv2d(input, weight, bias, conv.convOptions);
}
