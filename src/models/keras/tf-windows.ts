// TensorFlow's sliding-window rules on graft's NCHW tensors, shared by the Keras layers and the
// TF graph ops. 'same' padding totals max((ceil(n/s) − 1)·s + (k − 1)·d + 1 − n, 0) per axis and
// puts the odd pixel at the bottom / right; 'same' average pooling divides by the number of
// window pixels inside the input; 'same' max pooling ignores the padding.
import type { Tensor } from '../../tensor/tensor.js';
import { div } from '../../ops/elementwise.js';
import { pad } from '../../ops/layout.js';
import { avgPool2d, maxPool2d } from '../../ops/conv.js';
import { ones } from '../../ops/creation.js';

export type Pair = [number, number];
/** [top, bottom, left, right]. */
export type Pads = [number, number, number, number];

/** TensorFlow's 'same' padding along one axis: [before, after]. */
export function samePadding(size: number, kernel: number, stride: number, dilation = 1): Pair {
  const total = Math.max((Math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export function samePads(h: number, w: number, kernel: Pair, stride: Pair, dilation: Pair = [1, 1]): Pads {
  return [...samePadding(h, kernel[0], stride[0], dilation[0]), ...samePadding(w, kernel[1], stride[1], dilation[1])];
}

/** Symmetric 'same' padding that holds for every input size (stride 1, even totals), or null. */
export function staticSamePadding(kernel: Pair, stride: Pair, dilation: Pair = [1, 1]): Pair | null {
  if (stride[0] !== 1 || stride[1] !== 1) return null;
  const [t, b, l, r] = samePads(1, 1, kernel, stride, dilation);
  return t === b && l === r ? [t, l] : null;
}

/** Output size along one axis for 'same' or 'valid'. */
export function windowOutput(size: number, kernel: number, stride: number, same: boolean, dilation = 1): number {
  return same ? Math.ceil(size / stride) : Math.floor((size - (kernel - 1) * dilation - 1) / stride) + 1;
}

/** Pads the H and W axes of (B, C, H, W). */
export function padImage(x: Tensor, [t, b, l, r]: readonly number[], value = 0): Tensor {
  return t || b || l || r ? pad(x, [l!, r!, t!, b!], value) : x;
}

/** Max or average pooling with TensorFlow's 'same' / 'valid' rules. */
export function tfPool2d(x: Tensor, kind: 'max' | 'avg', kernel: Pair, stride: Pair, same: boolean): Tensor {
  const [t, b, l, r] = same ? samePads(x.shape[2]!, x.shape[3]!, kernel, stride) : [0, 0, 0, 0];
  const opts = { stride };
  if (t === b && l === r) {
    return kind === 'max' ? maxPool2d(x, kernel, { ...opts, padding: [t, l] }) : avgPool2d(x, kernel, { ...opts, padding: [t, l], countIncludePad: false });
  }
  if (kind === 'max') return maxPool2d(padImage(x, [t, b, l, r], -Infinity), kernel, opts);
  // Divide the zero-padded window means by the share of each window that lies inside the input.
  const inside = avgPool2d(padImage(ones([1, 1, x.shape[2]!, x.shape[3]!], { backend: x.backend, dtype: x.dtype }), [t, b, l, r]), kernel, opts);
  return div(avgPool2d(padImage(x, [t, b, l, r]), kernel, opts), inside);
}
