// Memory formats of 4-D maps: NCHW (graft's default, row-major) or channels-last, an (N, C, H, W)
// tensor whose storage is (N, H, W, C), as PyTorch's channels_last. Convolutions write
// channels-last inside channelsLastInference (ops/conv.ts); every other op reads such tensors
// through their strides.
import type { Tensor } from './tensor.js';
import { inferenceKernels } from './autograd.js';

let channelsLastDepth = 0;
// GRAFT_CHANNELS_LAST=0 keeps every map NCHW (for comparison and debugging).
let channelsLastEnabled = process.env['GRAFT_CHANNELS_LAST'] !== '0';

/** Turns channels-last inference on or off for the whole process (default on; GRAFT_CHANNELS_LAST=0: off). */
export function setChannelsLast(enabled: boolean): void {
  channelsLastEnabled = enabled;
}

/** Whether convolutions from NCHW inputs should write channels-last now. */
export function channelsLastRequested(): boolean {
  return channelsLastEnabled && channelsLastDepth > 0;
}

/**
 * Runs `fn` (forward passes without a graph) with convolutions writing channels-last (N, H, W, C)
 * maps, which the next convolution reads as they are: pointwise convolutions become one matrix
 * product with the bias and activation fused, depthwise ones vectorise along the channels, and
 * max pooling, unary ops, residual additions and pads of such maps keep the layout. Other ops read
 * these tensors through their strides like any view. The results are the same as in NCHW.
 */
export function channelsLastInference<T>(fn: () => T): T {
  channelsLastDepth++;
  try {
    return fn();
  } finally {
    channelsLastDepth--;
  }
}

/** Strides of an (N, C, H, W) tensor stored as (N, H, W, C). */
export function channelsLastStrides([, c, h, w]: readonly number[]): number[] {
  return [h! * w! * c!, 1, w! * c!, c!];
}

/** Whether x is an (N, C, H, W) tensor stored densely as (N, H, W, C). */
export function isChannelsLast(x: Tensor): boolean {
  if (x.rank !== 4 || x.offset !== 0 || x.size !== x.storage.size) return false;
  const want = channelsLastStrides(x.shape);
  return x.strides.every((st, i) => st === want[i] || x.shape[i] === 1);
}

/** channelsLastInference(fn) when no graph is recorded or recomputed later (inferenceKernels), else fn() as it is. */
export function channelsLastUnlessRecording<T>(fn: () => T): T {
  return inferenceKernels() ? channelsLastInference(fn) : fn();
}
