// Keras activations by the names a layer config uses, on graft tensors in graft's layout: the
// channel axis (Keras's last axis of NHWC or of (B, F)) is axis 1, so softmax runs over axis 1.
import type { Tensor } from '../../tensor/tensor.js';
import { abs, add, affine, clamp, div, exp, ge, gelu, log, relu, relu6, sigmoid, silu, tanh, where } from '../../ops/elementwise.js';
import { softmax } from '../../ops/norm.js';

const SELU_ALPHA = 1.6732632423543772;
const SELU_SCALE = 1.0507009873554805;

// exp of min(x, 0) so the branch where() discards cannot overflow and turn gradients into NaN.
const elu = (x: Tensor, alpha = 1) => where(ge(x, 0), x, affine(exp(clamp(x, -Infinity, 0)), alpha, -alpha));

export const KERAS_ACTIVATIONS: Record<string, (x: Tensor) => Tensor> = {
  linear: (x) => x,
  relu,
  relu6,
  sigmoid,
  tanh,
  softmax: (x) => softmax(x, 1),
  elu: (x) => elu(x),
  selu: (x) => affine(elu(x, SELU_ALPHA), SELU_SCALE),
  // log(1 + eˣ) = max(x, 0) + log(1 + e^−|x|), without overflow for large x.
  softplus: (x) => add(relu(x), log(affine(exp(affine(abs(x), -1)), 1, 1))),
  softsign: (x) => div(x, affine(abs(x), 1, 1)),
  swish: silu,
  silu,
  gelu: (x) => gelu(x),
  // Keras 2 and TF.js: clip(0.2·x + 0.5, 0, 1).
  hard_sigmoid: (x) => clamp(affine(x, 0.2, 0.5), 0, 1),
  exponential: exp,
};

/** The activation `name`, or an error listing the ones graft knows. */
export function kerasActivation(name: unknown, layer: string): (x: Tensor) => Tensor {
  const key = typeof name === 'string' ? name : name && typeof name === 'object' ? (name as { class_name?: string }).class_name : undefined;
  const fn = key ? KERAS_ACTIVATIONS[key] ?? KERAS_ACTIVATIONS[key.toLowerCase()] : undefined;
  if (!fn) throw new Error(`layer '${layer}': activation ${JSON.stringify(name)} is not supported; supported activations: ${Object.keys(KERAS_ACTIVATIONS).join(', ')}`);
  return fn;
}
