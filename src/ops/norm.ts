// Normalisation layers and softmax: fused kernels with hand-written backward.
import { fmt, normAxis, numel, ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { denseData, permute } from './layout.js';
import { record } from './table.js';
import { alloc, backendOf, expectFloat } from './util.js';

/** LayerNorm over the last axis: (x − mean) / sqrt(var + eps) · weight + bias (biased variance). */
export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  expectFloat('layerNorm', x, 'x');
  const n = x.shape[x.rank - 1]!;
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== n)) throw new ShapeError(`layerNorm: ${name} must have shape [${n}] (the last axis of x ${fmt(x.shape)}); got ${fmt(t.shape)}`);
  }
  const backend = backendOf('layerNorm', x, weight, bias);
  const rows = x.size / n;
  const xd = denseData(x);
  const wd = weight ? denseData(weight) : null;
  const bd = bias ? denseData(bias) : null;
  const out = alloc(backend, x.shape, x.dtype);
  const mean = alloc(backend, [rows], x.dtype);
  const rstd = alloc(backend, [rows], x.dtype);
  backend.layerNorm(xd.buf(), wd?.buf() ?? null, bd?.buf() ?? null, out.buf(), mean.buf(), rstd.buf(), x.dtype, rows, n, eps);
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  record(out, 'layerNorm', inputs, [xd, mean, rstd, ...(wd ? [wd] : [])], (gy, [xs, ms, rs, ws]) => {
    const g = denseData(gy);
    const gx = alloc(backend, x.shape, x.dtype);
    const gw = weight ? alloc(backend, [n], x.dtype) : null;
    const gb = bias ? alloc(backend, [n], x.dtype) : null;
    backend.layerNormBackward(xs!.buf(), g.buf(), ws?.buf() ?? null, ms!.buf(), rs!.buf(), gx.buf(), gw?.buf() ?? null, gb?.buf() ?? null, x.dtype, rows, n);
    return [x.requiresGrad ? gx : null, ...(weight ? [gw] : []), ...(bias ? [gb] : [])];
  });
  for (const [d, o] of [[xd, x], [wd, weight], [bd, bias]] as const) if (d && d !== o) d.dispose();
  mean.dispose();
  rstd.dispose();
  return out;
}

/** LayerNorm over the channel axis of (B, C, H, W) — timm's LayerNorm2d (ConvNeXt). */
export function layerNorm2d(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-6): Tensor {
  return permute(layerNorm(permute(x, [0, 2, 3, 1]), weight, bias, eps), [0, 3, 1, 2]);
}

export interface BatchNormOptions {
  training: boolean;
  momentum?: number;
  eps?: number;
}

/**
 * BatchNorm over axis 1 of (B, C, …). Training normalises with batch statistics and updates the
 * running ones in place (unbiased variance, PyTorch's momentum 0.1); eval uses the running ones.
 */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight: Tensor | null, bias: Tensor | null, opts: BatchNormOptions): Tensor {
  expectFloat('batchNorm', x, 'x');
  if (x.rank < 2) throw new ShapeError(`batchNorm: x must be (B, C, …); got ${fmt(x.shape)}`);
  const [n, c] = x.shape as [number, number];
  const s = numel(x.shape.slice(2));
  for (const [name, t] of [['runningMean', runningMean], ['runningVar', runningVar], ['weight', weight], ['bias', bias]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== c)) throw new ShapeError(`batchNorm: ${name} must have shape [${c}] (channels of x ${fmt(x.shape)}); got ${fmt(t.shape)}`);
  }
  if (!opts.training && (!runningMean || !runningVar)) throw new Error('batchNorm: eval mode needs runningMean and runningVar');
  if (opts.training && n * s <= 1) throw new ShapeError(`batchNorm: training needs more than one value per channel; got x ${fmt(x.shape)}`);
  for (const [name, t] of [['runningMean', runningMean], ['runningVar', runningVar]] as const) {
    if (t && !t.isDense()) throw new Error(`batchNorm: ${name} must be a dense tensor (it is updated in place)`);
  }
  const backend = backendOf('batchNorm', x, runningMean, runningVar, weight, bias);
  const xd = denseData(x);
  const wd = weight ? denseData(weight) : null;
  const bd = bias ? denseData(bias) : null;
  const out = alloc(backend, x.shape, x.dtype);
  const mean = alloc(backend, [c], x.dtype);
  const rstd = alloc(backend, [c], x.dtype);
  backend.batchNorm(xd.buf(), wd?.buf() ?? null, bd?.buf() ?? null, runningMean?.buf() ?? null, runningVar?.buf() ?? null,
    out.buf(), mean.buf(), rstd.buf(), x.dtype, n, c, s, opts.training, opts.momentum ?? 0.1, opts.eps ?? 1e-5);
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  record(out, 'batchNorm', inputs, [xd, mean, rstd, ...(wd ? [wd] : [])], (gy, [xs, ms, rs, ws]) => {
    const g = denseData(gy);
    const gx = alloc(backend, x.shape, x.dtype);
    const gw = weight ? alloc(backend, [c], x.dtype) : null;
    const gb = bias ? alloc(backend, [c], x.dtype) : null;
    backend.batchNormBackward(xs!.buf(), g.buf(), ws?.buf() ?? null, ms!.buf(), rs!.buf(), gx.buf(), gw?.buf() ?? null, gb?.buf() ?? null, x.dtype, n, c, s, opts.training);
    return [x.requiresGrad ? gx : null, ...(weight ? [gw] : []), ...(bias ? [gb] : [])];
  });
  for (const [d, o] of [[xd, x], [wd, weight], [bd, bias]] as const) if (d && d !== o) d.dispose();
  mean.dispose();
  rstd.dispose();
  return out;
}

function softmaxOp(name: 'softmax' | 'logSoftmax', x: Tensor, axis: number, log: boolean): Tensor {
  expectFloat(name, x, 'x');
  const a = normAxis(name, axis, x.rank);
  if (a !== x.rank - 1) {
    const perm = x.shape.map((_, i) => i);
    [perm[a], perm[x.rank - 1]] = [perm[x.rank - 1]!, perm[a]!];
    return permute(softmaxOp(name, permute(x, perm), -1, log), perm);
  }
  const n = x.shape[a]!;
  const rows = x.size / n;
  const xd = denseData(x);
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.softmax(xd.buf(), out.buf(), x.dtype, rows, n, log);
  if (xd !== x) xd.dispose();
  return record(out, name, [x], [out], (gy, [ys]) => {
    const g = denseData(gy);
    const gx = alloc(gy.backend, x.shape, gy.dtype);
    gy.backend.softmaxBackward(ys!.buf(), g.buf(), gx.buf(), gy.dtype, rows, n, log);
    return [gx];
  });
}

/** softmax along `axis` (last by default). */
export const softmax = (x: Tensor, axis = -1): Tensor => softmaxOp('softmax', x, axis, false);
/** log(softmax(x)) computed stably in one pass. */
export const logSoftmax = (x: Tensor, axis = -1): Tensor => softmaxOp('logSoftmax', x, axis, true);
