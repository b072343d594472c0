// The native backend: a C++17 N-API addon (native/src) on oneDNN and OpenMP, working in place on
// TypedArrays owned by JavaScript (zero copy). float32 runs natively; other dtypes, and the
// rarely hot gather/resample kernels, use the reference kernels.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, BinaryOp, ReduceOp, UnaryOp, View } from '../backend.js';
import { referenceBackend as ref } from '../reference/index.js';
import { poolAlloc, poolFree } from '../pool.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { contiguousStrides, isContiguous, numel } from '../../tensor/shape.js';

// Codes follow the enums in native/src/kernels.h.
const UNARY: Record<UnaryOp, number> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, abs: 5, sign: 6, square: 7, reciprocal: 8, relu: 9, relu6: 10, sigmoid: 11, tanh: 12,
  gelu: 13, gelu_tanh: 14, silu: 15, hardswish: 16, erf: 17, pow_scalar: 18, clamp: 19, affine: 20,
};
const BINARY: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5, pow: 6, eq: 7, lt: 8, gt: 9, le: 10, ge: 11 };
const REDUCE: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2 };

/* eslint-disable @typescript-eslint/no-explicit-any */
type Addon = Record<string, (...args: any[]) => void>;

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (; dir !== dirname(dir); dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'graft') return dir;
  }
  throw new Error('cannot find the graft package folder');
}

const f32 = (...views: { dtype: string }[]) => views.every((v) => v.dtype === 'float32');

function makeBackend(addon: Addon): Backend<TypedArray> {
  /** A dense float32 copy of a strided view (for kernels that read contiguous input). */
  const dense = (v: View<TypedArray>): TypedArray => {
    if (v.offset === 0 && isContiguous(v.shape, v.strides) && v.buf.length === numel(v.shape)) return v.buf;
    const out = poolAlloc(v.dtype, numel(v.shape), false);
    addon['copy']!(v.buf, v.offset, v.strides, out, 0, contiguousStrides(v.shape), v.shape);
    return out;
  };
  const conv = (p: { n: number; cIn: number; h: number; w: number; cOut: number; kh: number; kw: number; outH: number; outW: number; strideH: number; strideW: number; padH: number; padW: number; dilH: number; dilW: number; groups: number }) =>
    [p.n, p.cIn, p.h, p.w, p.cOut, p.kh, p.kw, p.outH, p.outW, p.strideH, p.strideW, p.padH, p.padW, p.dilH, p.dilW, p.groups];
  const pool = (p: { n: number; c: number; h: number; w: number; outH: number; outW: number; kh: number; kw: number; strideH: number; strideW: number; padH: number; padW: number }) =>
    [p.n, p.c, p.h, p.w, p.outH, p.outW, p.kh, p.kw, p.strideH, p.strideW, p.padH, p.padW];
  const intLike = (d: string) => d === 'float32' || d === 'int32';

  return {
    name: 'native',
    alloc: poolAlloc,
    free: poolFree,
    upload: (data) => data.slice(),
    read: (buf, _dtype, offset, size) => buf.subarray(offset, offset + size),
    copy: (src, dst) => {
      if (!intLike(src.dtype) || !intLike(dst.dtype)) return ref.copy(src, dst);
      addon['copy']!(src.buf, src.offset, src.strides, dst.buf, dst.offset, dst.strides, src.shape);
    },
    fill: (dst, value) => {
      if (dst.dtype !== 'float32') return ref.fill(dst, value);
      addon['fill']!(dst.buf, dst.offset, dst.strides, dst.shape, value);
    },
    unary: (op, x, out, p0, p1) => {
      if (x.dtype !== 'float32') return ref.unary(op, x, out, p0, p1);
      const xd = dense(x);
      addon['unary']!(UNARY[op], xd, out, numel(x.shape), p0, p1);
      if (xd !== x.buf) poolFree(xd, x.dtype);
    },
    unaryGrad: (op, x, gy, gx, n, p0, p1) => {
      if (!(x instanceof Float32Array)) return ref.unaryGrad(op, x, gy, gx, n, p0, p1);
      addon['unaryGrad']!(UNARY[op], x, gy, gx, n, p0, p1);
    },
    binary: (op, a, b, out, outDtype, shape) => {
      if (!f32(a, b) || outDtype !== 'float32') return ref.binary(op, a, b, out, outDtype, shape);
      addon['binary']!(BINARY[op], a.buf, a.offset, a.strides, b.buf, b.offset, b.strides, out, shape);
    },
    where: (cond, a, b, out, shape) => {
      if (!f32(cond, a, b)) return ref.where(cond, a, b, out, shape);
      addon['where']!(cond.buf, cond.offset, cond.strides, a.buf, a.offset, a.strides, b.buf, b.offset, b.strides, out, shape);
    },
    reduce: (op, x, dtype, outer, len, inner, out, arg) => {
      if (dtype !== 'float32') return ref.reduce(op, x, dtype, outer, len, inner, out, arg);
      addon['reduce']!(REDUCE[op], x, outer, len, inner, out, arg);
    },
    matmul: (a, b, c, dtype, p) => {
      if (dtype !== 'float32') return ref.matmul(a, b, c, dtype, p);
      addon['matmul']!(a, b, c, p.batch, p.m, p.n, p.k, p.transA, p.transB, p.strideA, p.strideB, p.strideC, p.beta);
    },
    conv2d: (x, w, bias, y, dtype, p) => (dtype !== 'float32' ? ref.conv2d(x, w, bias, y, dtype, p) : addon['conv2d']!(x, w, bias, y, conv(p))),
    conv2dBackwardData: (gy, w, gx, dtype, p) => (dtype !== 'float32' ? ref.conv2dBackwardData(gy, w, gx, dtype, p) : addon['conv2dBackwardData']!(gy, w, gx, conv(p))),
    conv2dBackwardWeight: (x, gy, gw, gb, dtype, p) =>
      dtype !== 'float32' ? ref.conv2dBackwardWeight(x, gy, gw, gb, dtype, p) : addon['conv2dBackwardWeight']!(x, gy, gw, gb, conv(p)),
    maxPool2d: (x, y, arg, dtype, p) => (dtype !== 'float32' ? ref.maxPool2d(x, y, arg, dtype, p) : addon['maxPool2d']!(x, y, arg, pool(p), p.countIncludePad)),
    maxPool2dBackward: (gy, arg, gx, dtype, p) =>
      dtype !== 'float32' ? ref.maxPool2dBackward(gy, arg, gx, dtype, p) : addon['maxPool2dBackward']!(gy, arg, gx, pool(p), p.countIncludePad),
    avgPool2d: (x, y, dtype, p) => (dtype !== 'float32' ? ref.avgPool2d(x, y, dtype, p) : addon['avgPool2d']!(x, y, pool(p), p.countIncludePad)),
    avgPool2dBackward: (gy, gx, dtype, p) => (dtype !== 'float32' ? ref.avgPool2dBackward(gy, gx, dtype, p) : addon['avgPool2dBackward']!(gy, gx, pool(p), p.countIncludePad)),
    adaptiveAvgPool2d: (x, y, dtype, n, c, h, w, oh, ow) =>
      dtype !== 'float32' ? ref.adaptiveAvgPool2d(x, y, dtype, n, c, h, w, oh, ow) : addon['adaptiveAvgPool2d']!(x, y, n * c, h, w, oh, ow),
    adaptiveAvgPool2dBackward: (gy, gx, dtype, n, c, h, w, oh, ow) =>
      dtype !== 'float32' ? ref.adaptiveAvgPool2dBackward(gy, gx, dtype, n, c, h, w, oh, ow) : addon['adaptiveAvgPool2dBackward']!(gy, gx, n * c, h, w, oh, ow),
    layerNorm: (x, g, b, y, mean, rstd, dtype, rows, n, eps) =>
      dtype !== 'float32' ? ref.layerNorm(x, g, b, y, mean, rstd, dtype, rows, n, eps) : addon['layerNorm']!(x, g, b, y, mean, rstd, rows, n, eps),
    layerNormBackward: (x, gy, g, mean, rstd, gx, gg, gb, dtype, rows, n) =>
      dtype !== 'float32' ? ref.layerNormBackward(x, gy, g, mean, rstd, gx, gg, gb, dtype, rows, n) : addon['layerNormBackward']!(x, gy, g, mean, rstd, gx, gg, gb, rows, n),
    batchNorm: (x, g, b, rm, rv, y, mean, rstd, dtype, n, c, s, training, momentum, eps) => {
      if (dtype !== 'float32') return ref.batchNorm(x, g, b, rm, rv, y, mean, rstd, dtype, n, c, s, training, momentum, eps);
      if (!training && (!rm || !rv)) throw new Error('batchNorm in eval mode needs running statistics');
      addon['batchNorm']!(x, g, b, rm, rv, y, mean, rstd, n, c, s, training, momentum, eps);
    },
    batchNormBackward: (x, gy, g, mean, rstd, gx, gg, gb, dtype, n, c, s, training) =>
      dtype !== 'float32' ? ref.batchNormBackward(x, gy, g, mean, rstd, gx, gg, gb, dtype, n, c, s, training) : addon['batchNormBackward']!(x, gy, g, mean, rstd, gx, gg, gb, n, c, s, training),
    softmax: (x, y, dtype, rows, n, log) => (dtype !== 'float32' ? ref.softmax(x, y, dtype, rows, n, log) : addon['softmax']!(x, y, rows, n, log)),
    softmaxBackward: (y, gy, gx, dtype, rows, n, log) => (dtype !== 'float32' ? ref.softmaxBackward(y, gy, gx, dtype, rows, n, log) : addon['softmaxBackward']!(y, gy, gx, rows, n, log)),
    attention: (q, k, v, out, lse, dtype, p) =>
      dtype !== 'float32' ? ref.attention(q, k, v, out, lse, dtype, p) : addon['attention']!(q, k, v, out, lse, p.batch, p.n, p.m, p.d, p.scale, p.causal),
    attentionBackward: (q, k, v, out, lse, gout, gq, gk, gv, dtype, p) =>
      dtype !== 'float32'
        ? ref.attentionBackward(q, k, v, out, lse, gout, gq, gk, gv, dtype, p)
        : addon['attentionBackward']!(q, k, v, out, lse, gout, gq, gk, gv, p.batch, p.n, p.m, p.d, p.scale, p.causal),
    indexSelect: ref.indexSelect,
    indexAdd: ref.indexAdd,
    interpolate: ref.interpolate,
    interpolateBackward: ref.interpolateBackward,
  };
}

/** Loads build/Release/graft_native.node; never throws — a failure comes back as `error`. */
export function loadNativeBackend(): { backend: Backend<any> | null; error: string } {
  let path = '';
  try {
    path = join(packageRoot(), 'build', 'Release', 'graft_native.node');
    if (!existsSync(path)) return { backend: null, error: `the addon ${path} has not been built (install the compiler and oneDNN: apt-get install -y g++ make libdnnl-dev, then: npm run build:native)` };
    // OpenMP threads that spin long at barriers stall whenever another process holds a core
    // (a shared 2-core machine: one busy core made each kernel wait a scheduler tick). A short
    // spin, then sleep, costs microseconds when idle and keeps kernels fast under load.
    // libgomp reads this when the addon loads it; an explicit user setting wins.
    if (process.env['OMP_WAIT_POLICY'] === undefined && process.env['GOMP_SPINCOUNT'] === undefined) process.env['GOMP_SPINCOUNT'] = '1000';
    const addon = createRequire(import.meta.url)(path) as Addon;
    return { backend: makeBackend(addon), error: '' };
  } catch (e) {
    return { backend: null, error: `loading ${path || 'the addon'} failed: ${(e as Error).message} (rebuild it with: npm run build:native)` };
  }
}
