// Convolution and pooling over NCHW tensors.
import type { ConvClip, ConvParams, PoolParams } from '../backends/backend.js';
import { fmt, ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { denseData } from './layout.js';
import { record } from './table.js';
import { inferenceKernelsFor } from '../tensor/autograd.js';
import { channelsLastRequested, channelsLastStrides, isChannelsLast } from '../tensor/memory-format.js';
import { alloc, backendOf, expectFloat, expectRank, expectSameDtype, packedCopy, packingEnabled, type WeightPacks } from './util.js';
import { bf16Active } from './precision.js';

type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

export interface Conv2dOptions {
  stride?: Pair;
  /** Zeros before the first row and column (and after the last, unless paddingEnd says otherwise). */
  padding?: Pair;
  /** Zeros after the last row and column when they differ from `padding` (TensorFlow's 'same' pads, ZeroPadding2D). */
  paddingEnd?: Pair;
  dilation?: Pair;
  groups?: number;
  /**
   * Inference only: where the weight's packed copies (Backend.conv2dPack: the layout the
   * backend's channels-last kernel reads) are kept between calls, made on first use. The caller
   * owns them (disposes every tensor in the map) and must not change the weight while they live.
   */
  packs?: WeightPacks;
}

export type { WeightPacks };

/** Output size of a sliding window, PyTorch's formula. */
function outSize(op: string, size: number, k: number, stride: number, padding: number, dilation: number, ceilMode = false, paddingEnd = padding): number {
  const span = size + padding + paddingEnd - dilation * (k - 1) - 1;
  let out = (ceilMode ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
  // With ceil mode the last window must start inside the input or left padding.
  if (ceilMode && (out - 1) * stride >= size + padding) out--;
  if (out <= 0) throw new ShapeError(`${op}: input of size ${size} is too small for kernel ${k} (dilation ${dilation}, padding ${padding})`);
  return out;
}

/** 2-D convolution: x (B, Cin, H, W), weight (Cout, Cin/groups, KH, KW), bias (Cout). */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  return convolve('conv2d', x, weight, bias ?? null, opts, null);
}

/** The activations conv2dAct fuses, as the clamp of the output they are. */
export type ConvActivation = 'relu' | 'relu6';
const ACT_BOUNDS: Record<ConvActivation, [number, number]> = { relu: [0, Infinity], relu6: [0, 6] };

/**
 * act(conv2d(x, weight, bias)) in one pass: the activation (ReLU or ReLU6, a clamp of the
 * output) is applied as each output is stored (oneDNN's eltwise post-op on the native backend).
 * Equal to relu/relu6 after conv2d, gradient included: gy passes where lo < y < hi, which for
 * y = clamp(z) is where lo < z < hi, relu's and relu6's rule on the pre-activation z.
 */
export function conv2dAct(x: Tensor, weight: Tensor, bias: Tensor | null, opts: Conv2dOptions, act: ConvActivation): Tensor {
  if (!(act in ACT_BOUNDS)) throw new ShapeError(`conv2dAct: act must be 'relu' or 'relu6'; got '${String(act)}'`);
  return convolve('conv2dAct', x, weight, bias, opts, act);
}

function convolve(op: 'conv2d' | 'conv2dAct', x: Tensor, weight: Tensor, bias: Tensor | null, opts: Conv2dOptions, act: ConvActivation | null): Tensor {
  expectFloat(op, x, 'x');
  expectRank(op, x, 4, 'x', 'B, C, H, W');
  expectRank(op, weight, 4, 'weight', 'Cout, Cin/groups, KH, KW');
  expectSameDtype(op, x, weight);
  const groups = opts.groups ?? 1;
  const [strideH, strideW] = pair(opts.stride ?? 1);
  const [padH, padW] = pair(opts.padding ?? 0);
  const [padEndH, padEndW] = pair(opts.paddingEnd ?? [padH, padW]);
  if (padH < 0 || padW < 0 || padEndH < 0 || padEndW < 0) throw new ShapeError(`${op}: padding must be ≥ 0; got padding [${padH}, ${padW}], paddingEnd [${padEndH}, ${padEndW}]`);
  const [dilH, dilW] = pair(opts.dilation ?? 1);
  const [n, cIn, h, w] = x.shape as [number, number, number, number];
  const [cOut, cInG, kh, kw] = weight.shape as [number, number, number, number];
  if (cIn % groups !== 0 || cOut % groups !== 0 || cInG !== cIn / groups) {
    throw new ShapeError(`${op}: x has ${cIn} channels and weight ${fmt(weight.shape)} with groups=${groups}; expected weight (Cout, ${cIn / groups}, KH, KW) with Cout divisible by ${groups}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== cOut)) throw new ShapeError(`${op}: bias must have shape [${cOut}]; got ${fmt(bias.shape)}`);
  const p: ConvParams = {
    n, cIn, h, w, cOut, kh, kw, strideH, strideW, padH, padW, dilH, dilW, groups,
    outH: outSize(op, h, kh, strideH, padH, dilH, false, padEndH), outW: outSize(op, w, kw, strideW, padW, dilW, false, padEndW),
  };
  const backend = backendOf(op, x, weight, bias);
  // Channels-last only where no graph is recorded: from a channels-last input, or from NCHW while
  // channelsLastInference asks for it (a CNN's feature extractor under noGrad).
  const inference = inferenceKernelsFor([x, weight, bias]);
  p.srcNhwc = inference && !x.isDense() && isChannelsLast(x);
  // (A depthwise convolution from NCHW stays NCHW: its direct kernels are the fast ones there.)
  p.dstNhwc = inference && (p.srcNhwc || (channelsLastRequested() && groups === 1));
  // Under --precision bf16 a frozen convolution (groups = 1, NCHW) reads x and w as bf16, its
  // gradient to x too; the weight gradient, where asked (a trainable bias), stays float32.
  p.bf16 = groups === 1 && !p.srcNhwc && !p.dstNhwc && !weight.requiresGrad && x.dtype === 'float32' && bf16Active(backend);
  const xd = p.srcNhwc ? x : denseData(x);
  const wd = denseData(weight);
  const bd = bias ? denseData(bias) : null;
  const out = alloc(backend, [n, cOut, p.outH, p.outW], x.dtype, false, p.dstNhwc ? channelsLastStrides([n, cOut, p.outH, p.outW]) : undefined);
  const clip: ConvClip = act ? ACT_BOUNDS[act] : null;
  const packed = packingEnabled && inference && p.dstNhwc && opts.packs && backend.conv2dPacked ? packedWeight(opts.packs, wd, p, bias !== null, clip, [padEndH, padEndW]) : null;
  if (packed) backend.conv2dPacked!(xd.buf(), wd.buf(), packed.buf(), bd?.buf() ?? null, out.buf(), x.dtype, p, clip);
  else if (clip) backend.conv2dClip(xd.buf(), wd.buf(), bd?.buf() ?? null, out.buf(), x.dtype, p, ...clip);
  else backend.conv2d(xd.buf(), wd.buf(), bd?.buf() ?? null, out.buf(), x.dtype, p);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  // The fused activation's backward reads the output (the mask lo < y < hi), so it is saved too.
  record(out, op, inputs, act ? [xd, wd, out] : [xd, wd], (gy0, [xs, ws, ys]) => {
    let g: Tensor;
    if (act) {
      const gyd = denseData(gy0);
      g = alloc(backend, out.shape, x.dtype);
      // relu / relu6's gradient kernel at y: y's open interval (lo, hi) is z's.
      backend.unaryGrad(act, ys!.buf(), gyd.buf(), g.buf(), g.size, 0, 0);
      if (gyd !== gy0) gyd.dispose();
    } else g = denseData(gy0);
    const gy = gy0;
    let gx: Tensor | null = null;
    let gw: Tensor | null = null;
    let gb: Tensor | null = null;
    if (x.requiresGrad) {
      gx = alloc(backend, x.shape, x.dtype);
      backend.conv2dBackwardData(g.buf(), ws!.buf(), gx.buf(), x.dtype, p);
    }
    if (weight.requiresGrad || bias?.requiresGrad) {
      gw = alloc(backend, weight.shape, x.dtype);
      gb = bias ? alloc(backend, [cOut], x.dtype) : null;
      backend.conv2dBackwardWeight(xs!.buf(), g.buf(), gw.buf(), gb?.buf() ?? null, x.dtype, { ...p, bf16: false });
    }
    if (g !== gy) g.dispose();
    return bias ? [gx, weight.requiresGrad ? gw : null, bias.requiresGrad ? gb : null] : [gx, gw];
  });
  for (const [d, o] of [[xd, x], [wd, weight], [bd, bias]] as const) if (d && d !== o) d.dispose();
  return out;
}

/** The packed copy of `w` for p (made and stored in `packs` on first use), or null where the backend has none. */
function packedWeight(packs: WeightPacks, w: Tensor, p: ConvParams, hasBias: boolean, clip: ConvClip, padEnd: [number, number]): Tensor | null {
  const key = [p.cIn, p.strideH, p.strideW, p.padH, p.padW, ...padEnd, p.dilH, p.dilW, p.groups, hasBias, clip?.[0], clip?.[1]].join(',');
  return packedCopy(packs, key, w, () => w.backend.conv2dPackedLength?.(w.dtype, p, hasBias, clip) ?? 0, (src, t) => w.backend.conv2dPack!(src.buf(), t.buf(), w.dtype, p, hasBias, clip));
}

export interface Pool2dOptions {
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
  countIncludePad?: boolean;
}

function poolParams(op: string, x: Tensor, kernel: Pair, opts: Pool2dOptions): PoolParams {
  expectFloat(op, x, 'x');
  expectRank(op, x, 4, 'x', 'B, C, H, W');
  const [kh, kw] = pair(kernel);
  const [strideH, strideW] = pair(opts.stride ?? kernel);
  const [padH, padW] = pair(opts.padding ?? 0);
  if (padH > kh / 2 || padW > kw / 2) throw new ShapeError(`${op}: padding (${padH}, ${padW}) must be at most half the kernel (${kh}, ${kw})`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  return {
    n, c, h, w, kh, kw, strideH, strideW, padH, padW, countIncludePad: opts.countIncludePad ?? true,
    outH: outSize(op, h, kh, strideH, padH, 1, opts.ceilMode), outW: outSize(op, w, kw, strideW, padW, 1, opts.ceilMode),
  };
}

export function maxPool2d(x: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  const p = poolParams('maxPool2d', x, kernel, opts);
  // A channels-last map without a graph stays channels-last (tensor/memory-format.ts).
  p.nhwc = !x.isDense() && isChannelsLast(x) && inferenceKernelsFor([x]);
  const xd = p.nhwc ? x : denseData(x);
  const out = alloc(x.backend, [p.n, p.c, p.outH, p.outW], x.dtype, false, p.nhwc ? channelsLastStrides([p.n, p.c, p.outH, p.outW]) : undefined);
  const arg = alloc(x.backend, out.shape, 'int32');
  x.backend.maxPool2d(xd.buf(), out.buf(), arg.buf(), x.dtype, p);
  if (xd !== x) xd.dispose();
  record(out, 'maxPool2d', [x], [arg], (gy, [as]) => {
    const g = denseData(gy);
    const gx = alloc(gy.backend, x.shape, gy.dtype);
    gy.backend.maxPool2dBackward(g.buf(), as!.buf(), gx.buf(), gy.dtype, p);
    return [gx];
  });
  arg.dispose();
  return out;
}

export function avgPool2d(x: Tensor, kernel: Pair, opts: Pool2dOptions = {}): Tensor {
  const p = poolParams('avgPool2d', x, kernel, opts);
  const xd = denseData(x);
  const out = alloc(x.backend, [p.n, p.c, p.outH, p.outW], x.dtype);
  x.backend.avgPool2d(xd.buf(), out.buf(), x.dtype, p);
  if (xd !== x) xd.dispose();
  return record(out, 'avgPool2d', [x], [], (gy) => {
    const g = denseData(gy);
    const gx = alloc(gy.backend, x.shape, gy.dtype);
    gy.backend.avgPool2dBackward(g.buf(), gx.buf(), gy.dtype, p);
    return [gx];
  });
}

/** Adaptive average pooling to (outH, outW) with PyTorch's bins. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: Pair): Tensor {
  expectFloat('adaptiveAvgPool2d', x, 'x');
  expectRank('adaptiveAvgPool2d', x, 4, 'x', 'B, C, H, W');
  const [oh, ow] = pair(outputSize);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const xd = denseData(x);
  const out = alloc(x.backend, [n, c, oh, ow], x.dtype);
  x.backend.adaptiveAvgPool2d(xd.buf(), out.buf(), x.dtype, n, c, h, w, oh, ow);
  if (xd !== x) xd.dispose();
  return record(out, 'adaptiveAvgPool2d', [x], [], (gy) => {
    const g = denseData(gy);
    const gx = alloc(gy.backend, x.shape, gy.dtype);
    gy.backend.adaptiveAvgPool2dBackward(g.buf(), gx.buf(), gy.dtype, n, c, h, w, oh, ow);
    return [gx];
  });
}
