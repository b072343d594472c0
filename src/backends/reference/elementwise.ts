// Elementwise kernels of the reference backend: the definitions every other backend must match.
import type { BinaryOp, UnaryGradOp, UnaryOp, View } from '../backend.js';
import type { DType, TypedArray } from '../../tensor/dtype.js';
import { numel, type Shape } from '../../tensor/shape.js';
import { indexer, reader } from './strided.js';

const SQRT1_2 = Math.SQRT1_2;
const GELU_TANH_C = Math.sqrt(2 / Math.PI);

/**
 * erf to double precision. |x| < 3: erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)), a series of
 * positive terms (no cancellation). |x| ≥ 3: 1 − erfc(x), erfc from its continued fraction
 * e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated bottom-up with 60 levels.
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const z = Math.abs(x);
  let r: number;
  if (z < 3) {
    let term = z;
    let total = z;
    for (let n = 1; n < 200 && term > total * 1e-17; n++) {
      term *= (2 * z * z) / (2 * n + 1);
      total += term;
    }
    r = (2 / Math.sqrt(Math.PI)) * Math.exp(-z * z) * total;
  } else if (z < 6.5) {
    let f = z;
    for (let k = 60; k >= 1; k--) f = z + k / 2 / f;
    r = 1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
  } else {
    r = 1;
  }
  return x < 0 ? -r : r;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export const unaryFns: Record<UnaryOp, (x: number, p0: number, p1: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs,
  sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  square: (x) => x * x,
  reciprocal: (x) => 1 / x,
  relu: (x) => (x <= 0 ? 0 : x), // NaN propagates, as in PyTorch
  relu6: (x) => Math.min(Math.max(x, 0), 6),
  sigmoid,
  tanh: Math.tanh,
  gelu: (x) => 0.5 * x * (1 + erf(x * SQRT1_2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(GELU_TANH_C * (x + 0.044715 * x * x * x))),
  silu: (x) => x * sigmoid(x),
  hardswish: (x) => (x * Math.min(Math.max(x + 3, 0), 6)) / 6,
  erf,
  pow_scalar: (x, p) => Math.pow(x, p),
  clamp: (x, lo, hi) => Math.min(Math.max(x, lo), hi),
  affine: (x, a, b) => x * a + b,
};

/** f'(x) for each differentiable unary op (PyTorch's conventions at kinks: relu'(0) = 0, clamp passes at the bounds). */
export const unaryDerivs: Record<UnaryGradOp, (x: number, p0: number, p1: number) => number> = {
  neg: () => -1,
  exp: Math.exp,
  log: (x) => 1 / x,
  sqrt: (x) => 0.5 / Math.sqrt(x),
  rsqrt: (x) => -0.5 / (x * Math.sqrt(x)),
  abs: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  square: (x) => 2 * x,
  reciprocal: (x) => -1 / (x * x),
  relu: (x) => (x > 0 ? 1 : 0),
  relu6: (x) => (x > 0 && x < 6 ? 1 : 0),
  sigmoid: (x) => {
    const s = sigmoid(x);
    return s * (1 - s);
  },
  tanh: (x) => {
    const t = Math.tanh(x);
    return 1 - t * t;
  },
  gelu: (x) => 0.5 * (1 + erf(x * SQRT1_2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  gelu_tanh: (x) => {
    const u = GELU_TANH_C * (x + 0.044715 * x * x * x);
    const t = Math.tanh(u);
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_TANH_C * (1 + 3 * 0.044715 * x * x);
  },
  silu: (x) => {
    const s = sigmoid(x);
    return s * (1 + x * (1 - s));
  },
  hardswish: (x) => (x < -3 ? 0 : x > 3 ? 1 : (2 * x + 3) / 6),
  erf: (x) => (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x),
  pow_scalar: (x, p) => (p === 0 ? 0 : p * Math.pow(x, p - 1)),
  clamp: (x, lo, hi) => (x >= lo && x <= hi ? 1 : 0),
  affine: (_x, a) => a,
};

export const binaryFns: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: (a, b) => (a >= b || a !== a ? a : b), // NaN propagates, as in PyTorch
  minimum: (a, b) => (a <= b || a !== a ? a : b),
  pow: (a, b) => Math.pow(a, b),
  eq: (a, b) => (a === b ? 1 : 0),
  lt: (a, b) => (a < b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
  le: (a, b) => (a <= b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
};

export function copy(src: View<TypedArray>, dst: View<TypedArray>): void {
  const n = numel(src.shape);
  const read = reader(src);
  const at = indexer(dst);
  const out = dst.buf;
  const toInt = dst.dtype === 'int32' || dst.dtype === 'uint8';
  for (let i = 0; i < n; i++) out[at(i)] = toInt ? Math.trunc(read(i)) : read(i);
}

export function fill(dst: View<TypedArray>, value: number): void {
  const n = numel(dst.shape);
  const at = indexer(dst);
  for (let i = 0; i < n; i++) dst.buf[at(i)] = value;
}

export function unary(op: UnaryOp, x: View<TypedArray>, out: TypedArray, p0: number, p1: number): void {
  const f = unaryFns[op];
  const read = reader(x);
  const n = numel(x.shape);
  for (let i = 0; i < n; i++) out[i] = f(read(i), p0, p1);
}

export function unaryGrad(op: UnaryGradOp, x: TypedArray, gy: TypedArray, gx: TypedArray, n: number, p0: number, p1: number): void {
  const d = unaryDerivs[op];
  for (let i = 0; i < n; i++) gx[i] = gy[i]! * d(x[i]!, p0, p1);
}

export function binary(op: BinaryOp, a: View<TypedArray>, b: View<TypedArray>, out: TypedArray, _outDtype: DType, shape: Shape): void {
  const f = binaryFns[op];
  const ra = reader(a);
  const rb = reader(b);
  const n = numel(shape);
  for (let i = 0; i < n; i++) out[i] = f(ra(i), rb(i));
}

export function where(cond: View<TypedArray>, a: View<TypedArray>, b: View<TypedArray>, out: TypedArray, shape: Shape): void {
  const rc = reader(cond);
  const ra = reader(a);
  const rb = reader(b);
  const n = numel(shape);
  for (let i = 0; i < n; i++) out[i] = rc(i) !== 0 ? ra(i) : rb(i);
}

