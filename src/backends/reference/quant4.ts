// Products with a 4-bit weight (Q4Weight): the spec the native kernels follow. The weight is
// dequantised a chunk of rows at a time (at most Q4_CHUNK_FLOATS values) and each chunk goes
// through the float kernels; results are those of dequantise-then-float-op, chunk sums aside.
import type { ConvParams, Q4LinearParams, Q4Weight } from '../backend.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { bf16Operands, conv2d, conv2dBackwardData } from './conv.js';
import { matmul } from './linalg.js';
import { roundBf16Array } from '../../tensor/bf16.js';

/** As kQ4ChunkFloats in native/src/kernels.h. */
export const Q4_CHUNK_FLOATS = 1 << 20;

function rowsPerChunk(rows: number, cols: number): number {
  return Math.min(Math.max(1, Math.floor(Q4_CHUNK_FLOATS / Math.max(cols, 1))), Math.max(rows, 1));
}

/** Elements [start, start + count) of the flattened weight into out (a fresh array of x's kind). */
function dequantize(w: Q4Weight<TypedArray>, start: number, count: number, like: TypedArray): TypedArray {
  const out = new (like.constructor as new (n: number) => TypedArray)(count);
  const { packed, scales, code, blocksize } = w;
  for (let j = 0; j < count; j++) {
    const i = start + j;
    const byte = packed[i >> 1]!;
    out[j] = Math.fround(code[i & 1 ? byte & 15 : byte >> 4]! * scales[Math.floor(i / blocksize)]!);
  }
  return out;
}

export function q4Linear(x: TypedArray, w: Q4Weight<TypedArray>, bias: TypedArray | null, y: TypedArray, _dtype: unknown, p: Q4LinearParams): void {
  if (bias && p.trans) throw new RangeError('q4Linear: the gradient to the input takes no bias');
  const { m, rows, cols, trans } = p;
  // bf16: both operands rounded to bf16, the products and sums in float32 (as native's kernels).
  if (p.bf16) x = roundBf16Array(x as Float32Array);
  const rc = rowsPerChunk(rows, cols);
  for (let r0 = 0; r0 < rows; r0 += rc) {
    const n = Math.min(rc, rows - r0);
    const wc = p.bf16 ? roundBf16Array(dequantize(w, r0 * cols, n * cols, x) as Float32Array) : dequantize(w, r0 * cols, n * cols, x);
    if (!trans) {
      const t = new (x.constructor as new (n: number) => TypedArray)(m * n);
      matmul(x, wc, t, { batch: 1, m, n, k: cols, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, beta: 0 }, bias ? bias.subarray(r0, r0 + n) : null);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) y[i * rows + r0 + j] = t[i * n + j]!;
    } else {
      const xs = new (x.constructor as new (n: number) => TypedArray)(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) xs[i * n + j] = x[i * rows + r0 + j]!;
      matmul(xs, wc, y, { batch: 1, m, n: cols, k: n, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, beta: r0 > 0 ? 1 : 0 });
    }
  }
}

function checkGroups(p: ConvParams): void {
  if (p.groups !== 1) throw new RangeError(`4-bit convolutions take groups = 1; got groups = ${p.groups}`);
}

export function q4Conv2d(x: TypedArray, w: Q4Weight<TypedArray>, bias: TypedArray | null, y: TypedArray, _dtype: unknown, p: ConvParams): void {
  checkGroups(p);
  const cols = p.cIn * p.kh * p.kw;
  const plane = p.outH * p.outW;
  const rc = rowsPerChunk(p.cOut, cols);
  for (let o0 = 0; o0 < p.cOut; o0 += rc) {
    const n = Math.min(rc, p.cOut - o0);
    const wc = dequantize(w, o0 * cols, n * cols, x);
    const t = new (x.constructor as new (n: number) => TypedArray)(p.n * n * plane);
    conv2d(...bf16Operands(p, x, wc), bias ? bias.subarray(o0, o0 + n) : null, t, { ...p, cOut: n });
    for (let b = 0; b < p.n; b++) for (let o = 0; o < n; o++) y.set(t.subarray((b * n + o) * plane, (b * n + o + 1) * plane), (b * p.cOut + o0 + o) * plane);
  }
}

export function q4Conv2dBackwardData(gy: TypedArray, w: Q4Weight<TypedArray>, gx: TypedArray, _dtype: unknown, p: ConvParams): void {
  checkGroups(p);
  const cols = p.cIn * p.kh * p.kw;
  const plane = p.outH * p.outW;
  const rc = rowsPerChunk(p.cOut, cols);
  const part = new (gx.constructor as new (n: number) => TypedArray)(gx.length);
  for (let o0 = 0; o0 < p.cOut; o0 += rc) {
    const n = Math.min(rc, p.cOut - o0);
    const wc = dequantize(w, o0 * cols, n * cols, gx);
    const g = new (gy.constructor as new (n: number) => TypedArray)(p.n * n * plane);
    for (let b = 0; b < p.n; b++) for (let o = 0; o < n; o++) g.set(gy.subarray((b * p.cOut + o0 + o) * plane, (b * p.cOut + o0 + o + 1) * plane), (b * n + o) * plane);
    conv2dBackwardData(...bf16Operands(p, g, wc), o0 === 0 ? gx : part, { ...p, cOut: n });
    if (o0 > 0) for (let i = 0; i < gx.length; i++) gx[i]! += part[i]!;
  }
}
