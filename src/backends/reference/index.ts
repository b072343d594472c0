// The reference backend: plain TypeScript loops over typed arrays. It is the specification the
// native backend is tested against, and it runs every dtype (float64 for gradient checks).
// Registered at the lowest priority: it always loads, so it is the default of last resort.
import type { Backend } from '../backend.js';
import { registerBackend } from '../registry.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { poolAlloc, poolFree, poolUpload } from '../../tensor/host-pool.js';
import * as conv from './conv.js';
import * as q4 from './quant4.js';
import * as ew from './elementwise.js';
import * as la from './linalg.js';
import * as norm from './norm.js';
import * as rs from './resample.js';

export const referenceBackend: Backend<TypedArray> = {
  name: 'reference',
  alloc: poolAlloc,
  free: poolFree,
  upload: poolUpload,
  read: (buf, _dtype, offset, size) => buf.subarray(offset, offset + size),
  copy: ew.copy,
  fill: ew.fill,
  unary: ew.unary,
  unaryGrad: ew.unaryGrad,
  binary: ew.binary,
  where: ew.where,
  reduce: (op, x, _dtype, outer, len, inner, out, arg) => la.reduce(op, x, outer, len, inner, out, arg),
  matmul: (a, b, c, _dtype, p, bias) => la.matmul(a, b, c, p, bias ?? null),
  conv2d: (x, w, bias, y, _dtype, p) => conv.conv2dLayouts(...conv.bf16Operands(p, x, w), bias, y, p),
  conv2dClip: (x, w, bias, y, _dtype, p, lo, hi) => {
    conv.conv2dLayouts(...conv.bf16Operands(p, x, w), bias, y, p);
    for (let i = 0; i < y.length; i++) y[i] = Math.min(Math.max(y[i]!, lo), hi);
  },
  conv2dBackwardData: (gy, w, gx, _dtype, p) => conv.conv2dBackwardData(...conv.bf16Operands(p, gy, w), gx, p),
  q4Linear: q4.q4Linear,
  q4Conv2d: q4.q4Conv2d,
  q4Conv2dBackwardData: q4.q4Conv2dBackwardData,
  conv2dBackwardWeight: (x, gy, gw, gb, _dtype, p) => conv.conv2dBackwardWeight(x, gy, gw, gb, p),
  maxPool2d: (x, y, arg, _dtype, p) => conv.maxPool2dLayouts(x, y, arg, p),
  maxPool2dBackward: (gy, arg, gx, _dtype, p) => conv.maxPool2dBackward(gy, arg, gx, p),
  avgPool2d: (x, y, _dtype, p) => conv.avgPool2d(x, y, p),
  avgPool2dBackward: (gy, gx, _dtype, p) => conv.avgPool2dBackward(gy, gx, p),
  adaptiveAvgPool2d: (x, y, _dtype, n, c, h, w, oh, ow) => conv.adaptiveAvgPool2d(x, y, n, c, h, w, oh, ow),
  adaptiveAvgPool2dBackward: (gy, gx, _dtype, n, c, h, w, oh, ow) => conv.adaptiveAvgPool2dBackward(gy, gx, n, c, h, w, oh, ow),
  layerNorm: (x, g, b, y, mean, rstd, _dtype, rows, n, eps) => norm.layerNorm(x, g, b, y, mean, rstd, rows, n, eps),
  layerNormBackward: (x, gy, g, mean, rstd, gx, gg, gb, _dtype, rows, n) => norm.layerNormBackward(x, gy, g, mean, rstd, gx, gg, gb, rows, n),
  batchNorm: (x, g, b, rm, rv, y, mean, rstd, _dtype, n, c, s, training, momentum, eps) =>
    norm.batchNorm(x, g, b, rm, rv, y, mean, rstd, n, c, s, training, momentum, eps),
  batchNormBackward: (x, gy, g, mean, rstd, gx, gg, gb, _dtype, n, c, s, training) =>
    norm.batchNormBackward(x, gy, g, mean, rstd, gx, gg, gb, n, c, s, training),
  softmax: (x, y, _dtype, rows, n, log) => norm.softmax(x, y, rows, n, log),
  softmaxBackward: (y, gy, gx, _dtype, rows, n, log) => norm.softmaxBackward(y, gy, gx, rows, n, log),
  attention: (q, k, v, out, lse, probs, _dtype, p) => norm.attention(q, k, v, out, lse, probs, p),
  attentionBackward: (q, k, v, out, lse, _probs, gout, gq, gk, gv, _dtype, p) => norm.attentionBackward(q, k, v, out, lse, gout, gq, gk, gv, p),
  indexSelect: (x, idx, out, _dtype, outer, len, inner, count) => rs.indexSelect(x, idx, out, outer, len, inner, count),
  indexAdd: (gy, idx, gx, _dtype, outer, len, inner, count) => rs.indexAdd(gy, idx, gx, outer, len, inner, count),
  interpolate: (x, y, _dtype, p) => rs.interpolate(x, y, p),
  interpolateBackward: (gy, gx, _dtype, p) => rs.interpolateBackward(gy, gx, p),
};

registerBackend('reference', { load: () => referenceBackend, priority: 0 });
