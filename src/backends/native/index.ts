// The native backend: a C++17 N-API addon (native/src) on oneDNN and OpenMP that works in place
// on TypedArrays owned by JavaScript (zero copy). float32 runs natively (and int32 where a kernel
// only moves elements: copy, indexSelect); every other dtype goes to the reference kernels.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, ConvParams, PoolParams, View } from '../backend.js';
import { registerBackend } from '../registry.js';
import { referenceBackend as ref } from '../reference/index.js';
import { poolAlloc, poolFree, poolUpload, setPoolAligner } from '../../tensor/host-pool.js';
import type { DType, TypedArray } from '../../tensor/dtype.js';
import { contiguousStrides, isContiguous, numel } from '../../tensor/shape.js';
import { BINARY, contractMismatches, REDUCE, UNARY, type AddonContract, type Kernel, type KernelName } from './contract.js';

const BUILD_HINT = 'install the compiler and oneDNN (Debian/Ubuntu: apt-get install -y g++ make libdnnl-dev), then run: npm run build:native';

/** The addon's exports: the entry points listed in contract.ts, and the description of its side. */
type Addon = { [N in KernelName]: Kernel<N> } & { contract?: AddonContract };

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (; dir !== dirname(dir); dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'graft') return dir;
  }
  throw new Error('cannot find the graft package folder (no package.json named "graft" above this file)');
}

const isF32 = (...dtypes: DType[]) => dtypes.every((d) => d === 'float32');
const movesElements = (d: DType) => d === 'float32' || d === 'int32';
const convGeometry = (p: ConvParams) =>
  [p.n, p.cIn, p.h, p.w, p.cOut, p.kh, p.kw, p.outH, p.outW, p.strideH, p.strideW, p.padH, p.padW, p.dilH, p.dilW, p.groups, (p.srcNhwc ? 1 : 0) | (p.dstNhwc ? 2 : 0) | (p.bf16 ? 4 : 0)];
const poolGeometry = (p: PoolParams) => [p.n, p.c, p.h, p.w, p.outH, p.outW, p.kh, p.kw, p.strideH, p.strideW, p.padH, p.padW, p.nhwc ? 1 : 0];

function makeBackend(addon: Addon): Backend<TypedArray> {
  const { copy, fill, unary, unaryGrad, binary, where, reduce, matmul, matmulPackedLength, matmulPack, matmulPacked, bf16Supported, conv2d, conv2dClip, conv2dPackedLength, conv2dPack, conv2dPacked, conv2dBackwardData, conv2dBackwardWeight, q4Linear, q4Conv2d, q4Conv2dBackwardData } = addon;
  const { maxPool2d, maxPool2dBackward, avgPool2d, avgPool2dBackward, adaptiveAvgPool2d, adaptiveAvgPool2dBackward } = addon;
  const { layerNorm, layerNormBackward, batchNorm, batchNormBackward, softmax, softmaxBackward, attention, attentionBackward, attentionStrided } = addon;
  const { indexSelect, indexAdd, interpolate, interpolateBackward } = addon;

  /** The view's elements as one contiguous array: a subarray when already contiguous, else a pooled copy. */
  const dense = (v: View<TypedArray>): TypedArray => {
    const n = numel(v.shape);
    if (isContiguous(v.shape, v.strides)) return v.offset === 0 && v.buf.length === n ? v.buf : v.buf.subarray(v.offset, v.offset + n);
    const out = poolAlloc(v.dtype, n, false);
    copy(v.buf, v.offset, v.strides, out, 0, contiguousStrides(v.shape), v.shape);
    return out;
  };

  return {
    name: 'native',
    alloc: poolAlloc,
    free: poolFree,
    upload: poolUpload,
    read: (buf, _dtype, offset, size) => buf.subarray(offset, offset + size),

    copy: (src, dst) => {
      if (!movesElements(src.dtype) || !movesElements(dst.dtype)) return ref.copy(src, dst);
      copy(src.buf, src.offset, src.strides, dst.buf, dst.offset, dst.strides, dst.shape);
    },
    fill: (dst, value) => (isF32(dst.dtype) ? fill(dst.buf, dst.offset, dst.strides, dst.shape, value) : ref.fill(dst, value)),

    unary: (op, x, out, p0, p1) => {
      if (!isF32(x.dtype) || !(out instanceof Float32Array)) return ref.unary(op, x, out, p0, p1);
      const xd = dense(x);
      unary(UNARY[op], xd, out, numel(x.shape), p0, p1);
      if (xd.buffer !== x.buf.buffer) poolFree(xd, x.dtype);
    },
    unaryGrad: (op, x, gy, gx, n, p0, p1) =>
      x instanceof Float32Array && gy instanceof Float32Array && gx instanceof Float32Array
        ? unaryGrad(UNARY[op], x, gy, gx, n, p0, p1)
        : ref.unaryGrad(op, x, gy, gx, n, p0, p1),
    binary: (op, a, b, out, outDtype, shape) => {
      if (!isF32(a.dtype, b.dtype, outDtype)) return ref.binary(op, a, b, out, outDtype, shape);
      binary(BINARY[op], a.buf, a.offset, a.strides, b.buf, b.offset, b.strides, out, shape);
    },
    where: (cond, a, b, out, shape) => {
      if (!isF32(cond.dtype, a.dtype, b.dtype)) return ref.where(cond, a, b, out, shape);
      where(cond.buf, cond.offset, cond.strides, a.buf, a.offset, a.strides, b.buf, b.offset, b.strides, out, shape);
    },

    reduce: (op, x, dtype, outer, len, inner, out, arg) =>
      isF32(dtype) ? reduce(REDUCE[op], x, outer, len, inner, out, arg) : ref.reduce(op, x, dtype, outer, len, inner, out, arg),
    matmul: (a, b, c, dtype, p, bias) =>
      isF32(dtype)
        ? matmul(a, b, c, p.batch, p.m, p.n, p.k, p.transA, p.transB, p.strideA, p.strideB, p.strideC, p.beta, bias ?? null)
        : ref.matmul(a, b, c, dtype, p, bias),

    conv2d: (x, w, bias, y, dtype, p) => (isF32(dtype) ? conv2d(x, w, bias, y, convGeometry(p)) : ref.conv2d(x, w, bias, y, dtype, p)),
    conv2dClip: (x, w, bias, y, dtype, p, lo, hi) =>
      isF32(dtype) ? conv2dClip(x, w, bias, y, convGeometry(p), lo, hi) : ref.conv2dClip(x, w, bias, y, dtype, p, lo, hi),
    matmulPackedLength: (dtype, n, k, hasBias, precision) => (isF32(dtype) ? Number(matmulPackedLength(n, k, hasBias, precision === 'bf16')) : 0),
    matmulPack: (b, packed, _dtype, n, k, transB, hasBias, precision) => matmulPack(b, packed, n, k, transB, hasBias, precision === 'bf16'),
    bf16Supported: () => Number(bf16Supported()) === 1,
    matmulPacked: (a, b, packed, c, _dtype, m, n, k, transB, bias, act) => matmulPacked(a, b, packed, c, m, n, k, transB, bias, act ? UNARY[act] : -1),
    conv2dPackedLength: (dtype, p, hasBias, clip) => (isF32(dtype) ? Number(conv2dPackedLength(convGeometry(p), hasBias, clip !== null, clip?.[0] ?? 0, clip?.[1] ?? 0)) : 0),
    conv2dPack: (w, packed, _dtype, p, hasBias, clip) => conv2dPack(w, packed, convGeometry(p), hasBias, clip !== null, clip?.[0] ?? 0, clip?.[1] ?? 0),
    conv2dPacked: (x, w, packed, bias, y, _dtype, p, clip) => conv2dPacked(x, w, packed, bias, y, convGeometry(p), clip !== null, clip?.[0] ?? 0, clip?.[1] ?? 0),
    conv2dBackwardData: (gy, w, gx, dtype, p) =>
      isF32(dtype) ? conv2dBackwardData(gy, w, gx, convGeometry(p)) : ref.conv2dBackwardData(gy, w, gx, dtype, p),
    q4Linear: (x, w, bias, y, dtype, p) =>
      isF32(dtype) ? q4Linear(x, w.packed, w.scales, w.code, bias, y, p.m, p.rows, p.cols, w.blocksize, p.trans, p.bf16 === true) : ref.q4Linear(x, w, bias, y, dtype, p),
    q4Conv2d: (x, w, bias, y, dtype, p) =>
      isF32(dtype) ? q4Conv2d(x, w.packed, w.scales, w.code, bias, y, convGeometry(p), w.blocksize) : ref.q4Conv2d(x, w, bias, y, dtype, p),
    q4Conv2dBackwardData: (gy, w, gx, dtype, p) =>
      isF32(dtype) ? q4Conv2dBackwardData(gy, w.packed, w.scales, w.code, gx, convGeometry(p), w.blocksize) : ref.q4Conv2dBackwardData(gy, w, gx, dtype, p),
    conv2dBackwardWeight: (x, gy, gw, gb, dtype, p) =>
      isF32(dtype) ? conv2dBackwardWeight(x, gy, gw, gb, convGeometry(p)) : ref.conv2dBackwardWeight(x, gy, gw, gb, dtype, p),
    maxPool2d: (x, y, arg, dtype, p) =>
      isF32(dtype) && arg instanceof Int32Array ? maxPool2d(x, y, arg, poolGeometry(p), p.countIncludePad) : ref.maxPool2d(x, y, arg, dtype, p),
    maxPool2dBackward: (gy, arg, gx, dtype, p) =>
      isF32(dtype) && arg instanceof Int32Array
        ? maxPool2dBackward(gy, arg, gx, poolGeometry(p), p.countIncludePad)
        : ref.maxPool2dBackward(gy, arg, gx, dtype, p),
    avgPool2d: (x, y, dtype, p) => (isF32(dtype) ? avgPool2d(x, y, poolGeometry(p), p.countIncludePad) : ref.avgPool2d(x, y, dtype, p)),
    avgPool2dBackward: (gy, gx, dtype, p) =>
      isF32(dtype) ? avgPool2dBackward(gy, gx, poolGeometry(p), p.countIncludePad) : ref.avgPool2dBackward(gy, gx, dtype, p),
    adaptiveAvgPool2d: (x, y, dtype, n, c, h, w, oh, ow) =>
      isF32(dtype) ? adaptiveAvgPool2d(x, y, n * c, h, w, oh, ow) : ref.adaptiveAvgPool2d(x, y, dtype, n, c, h, w, oh, ow),
    adaptiveAvgPool2dBackward: (gy, gx, dtype, n, c, h, w, oh, ow) =>
      isF32(dtype) ? adaptiveAvgPool2dBackward(gy, gx, n * c, h, w, oh, ow) : ref.adaptiveAvgPool2dBackward(gy, gx, dtype, n, c, h, w, oh, ow),

    layerNorm: (x, g, b, y, mean, rstd, dtype, rows, n, eps) =>
      isF32(dtype) ? layerNorm(x, g, b, y, mean, rstd, rows, n, eps) : ref.layerNorm(x, g, b, y, mean, rstd, dtype, rows, n, eps),
    layerNormBackward: (x, gy, g, mean, rstd, gx, gg, gb, dtype, rows, n) =>
      isF32(dtype)
        ? layerNormBackward(x, gy, g, mean, rstd, gx, gg, gb, rows, n)
        : ref.layerNormBackward(x, gy, g, mean, rstd, gx, gg, gb, dtype, rows, n),
    batchNorm: (x, g, b, rm, rv, y, mean, rstd, dtype, n, c, s, training, momentum, eps) =>
      isF32(dtype)
        ? batchNorm(x, g, b, rm, rv, y, mean, rstd, n, c, s, training, momentum, eps)
        : ref.batchNorm(x, g, b, rm, rv, y, mean, rstd, dtype, n, c, s, training, momentum, eps),
    batchNormBackward: (x, gy, g, mean, rstd, gx, gg, gb, dtype, n, c, s, training) =>
      isF32(dtype)
        ? batchNormBackward(x, gy, g, mean, rstd, gx, gg, gb, n, c, s, training)
        : ref.batchNormBackward(x, gy, g, mean, rstd, gx, gg, gb, dtype, n, c, s, training),
    softmax: (x, y, dtype, rows, n, log) => (isF32(dtype) ? softmax(x, y, rows, n, log) : ref.softmax(x, y, dtype, rows, n, log)),
    softmaxBackward: (y, gy, gx, dtype, rows, n, log) =>
      isF32(dtype) ? softmaxBackward(y, gy, gx, rows, n, log) : ref.softmaxBackward(y, gy, gx, dtype, rows, n, log),

    attention: (q, kk, v, out, lse, probs, dtype, p) =>
      isF32(dtype) ? attention(q, kk, v, out, lse, probs, p.batch, p.n, p.m, p.d, p.scale, p.causal) : ref.attention(q, kk, v, out, lse, probs, dtype, p),
    attentionStrided: (q, kk, v, out, _dtype, p) => {
      const st = (x: View<TypedArray>) => x.strides.slice(0, 3);
      attentionStrided(q.buf, q.offset, st(q), kk.buf, kk.offset, st(kk), v.buf, v.offset, st(v), out.buf, out.offset, st(out), p.batch / p.heads, p.heads, p.n, p.m, p.d, p.scale, p.causal);
    },
    attentionBackward: (q, kk, v, out, lse, probs, gout, gq, gk, gv, dtype, p) =>
      isF32(dtype)
        ? attentionBackward(q, kk, v, out, lse, probs, gout, gq, gk, gv, p.batch, p.n, p.m, p.d, p.scale, p.causal)
        : ref.attentionBackward(q, kk, v, out, lse, probs, gout, gq, gk, gv, dtype, p),

    indexSelect: (x, idx, out, dtype, outer, len, inner, count) =>
      movesElements(dtype) && idx instanceof Int32Array
        ? indexSelect(x, idx, out, outer, len, inner, count)
        : ref.indexSelect(x, idx, out, dtype, outer, len, inner, count),
    indexAdd: (gy, idx, gx, dtype, outer, len, inner, count) =>
      isF32(dtype) && idx instanceof Int32Array ? indexAdd(gy, idx, gx, outer, len, inner, count) : ref.indexAdd(gy, idx, gx, dtype, outer, len, inner, count),

    interpolate: (x, y, dtype, p) =>
      isF32(dtype)
        ? interpolate(x, y, [p.n, p.c, p.h, p.w, p.outH, p.outW], p.mode === 'bicubic', p.alignCorners, p.scaleH ?? 0, p.scaleW ?? 0)
        : ref.interpolate(x, y, dtype, p),
    interpolateBackward: (gy, gx, dtype, p) =>
      isF32(dtype)
        ? interpolateBackward(gy, gx, [p.n, p.c, p.h, p.w, p.outH, p.outW], p.mode === 'bicubic', p.alignCorners, p.scaleH ?? 0, p.scaleW ?? 0)
        : ref.interpolateBackward(gy, gx, dtype, p),
  };
}

/** Loads build/Release/graft_native.node and checks it against contract.ts; throws saying what failed and how to build it. */
export function loadNativeBackend(): Backend<TypedArray> {
  let path = 'build/Release/graft_native.node';
  let addon: Addon;
  try {
    path = join(packageRoot(), 'build', 'Release', 'graft_native.node');
    if (!existsSync(path)) throw new Error(`the addon ${path} has not been built; ${BUILD_HINT}`);
    // OpenMP threads that spin long at barriers stall whenever another process holds a core
    // (on a shared 2-core machine one busy core made each kernel wait a scheduler tick). A short
    // spin, then sleep, costs microseconds when idle and keeps kernels fast under load.
    // libgomp reads this when the addon loads it; an explicit user setting wins.
    if (process.env['OMP_WAIT_POLICY'] === undefined && process.env['GOMP_SPINCOUNT'] === undefined) process.env['GOMP_SPINCOUNT'] = '1000';
    addon = createRequire(import.meta.url)(path) as Addon;
  } catch (e) {
    const message = (e as Error).message;
    throw new Error(message.includes(BUILD_HINT) ? message : `loading ${path} failed: ${message}; ${BUILD_HINT}`);
  }
  if (!addon.contract) throw new Error(`the addon ${path} describes no contract, so it predates this code; ${BUILD_HINT}`);
  const mismatches = contractMismatches(addon.contract);
  if (mismatches.length) {
    throw new Error(`the addon ${path} does not match src/backends/native/contract.ts: ${mismatches.join('; ')}; rebuild it (${BUILD_HINT}), or bring the side that changed back in line`);
  }
  setPoolAligner(addon.alignOffset as (buffer: ArrayBuffer) => number);
  return makeBackend(addon);
}

// Native outranks reference: it is the default whenever the addon loads.
registerBackend('native', { load: loadNativeBackend, priority: 10 });
