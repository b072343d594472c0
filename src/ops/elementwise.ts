// Elementwise ops with broadcasting; each defines its forward and backward together.
import type { BinaryOp, UnaryGradOp, UnaryOp } from '../backends/backend.js';
import { isFloat, type DType } from '../tensor/dtype.js';
import { broadcastShapes, broadcastStrides } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { full } from './creation.js';
import { denseData, sumTo } from './layout.js';
import { record, type RecordingOp } from './table.js';
import { alloc, backendOf, DTypeError, expectFloat } from './util.js';

function unaryForward(op: UnaryOp, x: Tensor, p0: number, p1: number): Tensor {
  expectFloat(op, x, 0);
  if (!x.isDense() && x.isDensePermuted()) {
    // A permuted dense input (a channels-last map): flat over its buffer, the result laid out the same.
    const out = alloc(x.backend, x.shape, x.dtype, false, x.strides);
    x.backend.unary(op, { ...x.view(), shape: [x.size], strides: [1] }, out.buf(), p0, p1);
    return out;
  }
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.unary(op, x.view(), out.buf(), p0, p1);
  return out;
}

/** Applies a unary kernel and records `name` with gx = gy · f'(x) through the fused unaryGrad kernel. */
function unaryOp(op: UnaryGradOp, name: RecordingOp, x: Tensor, p0 = 0, p1 = 0): Tensor {
  const out = unaryForward(op, x, p0, p1);
  return record(out, name, [x], [x], (gy, [xs]) => {
    const xd = denseData(xs!);
    const gyd = denseData(gy);
    const gx = alloc(gy.backend, xs!.shape, gy.dtype);
    gy.backend.unaryGrad(op, xd.buf(), gyd.buf(), gx.buf(), gx.size, p0, p1);
    if (xd !== xs) xd.dispose();
    if (gyd !== gy) gyd.dispose();
    return [gx];
  });
}

export const neg = (x: Tensor): Tensor => unaryOp('neg', 'neg', x);
export const exp = (x: Tensor): Tensor => unaryOp('exp', 'exp', x);
export const log = (x: Tensor): Tensor => unaryOp('log', 'log', x);
export const sqrt = (x: Tensor): Tensor => unaryOp('sqrt', 'sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unaryOp('rsqrt', 'rsqrt', x);
export const abs = (x: Tensor): Tensor => unaryOp('abs', 'abs', x);
/** −1, 0 or 1; no gradient (zero almost everywhere). */
export const sign = (x: Tensor): Tensor => unaryForward('sign', x, 0, 0);
export const square = (x: Tensor): Tensor => unaryOp('square', 'square', x);
export const reciprocal = (x: Tensor): Tensor => unaryOp('reciprocal', 'reciprocal', x);
/** The error function; gradient 2/√π · exp(−x²). */
export const erfOp = (x: Tensor): Tensor => unaryOp('erf', 'erfOp', x);
export const relu = (x: Tensor): Tensor => unaryOp('relu', 'relu', x);
export const relu6 = (x: Tensor): Tensor => unaryOp('relu6', 'relu6', x);
export const sigmoid = (x: Tensor): Tensor => unaryOp('sigmoid', 'sigmoid', x);
export const tanh = (x: Tensor): Tensor => unaryOp('tanh', 'tanh', x);
/** GELU; `approximate: 'tanh'` is the tanh approximation (PyTorch's gelu(approximate='tanh')). */
export const gelu = (x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor => unaryOp(approximate === 'tanh' ? 'gelu_tanh' : 'gelu', 'gelu', x);
export const silu = (x: Tensor): Tensor => unaryOp('silu', 'silu', x);
export const hardswish = (x: Tensor): Tensor => unaryOp('hardswish', 'hardswish', x);
/** min(max(x, lo), hi); the gradient passes where lo ≤ x ≤ hi. */
export const clamp = (x: Tensor, lo = -Infinity, hi = Infinity): Tensor => unaryOp('clamp', 'clamp', x, lo, hi);
/** x · a + b in one pass. */
export const affine = (x: Tensor, a: number, b = 0): Tensor => unaryOp('affine', 'affine', x, a, b);

function resultDtype(op: string, a: Tensor, b: Tensor): DType {
  if (a.dtype !== b.dtype) throw new DTypeError(`${op}: dtypes differ: argument 0 is ${a.describe()}, argument 1 is ${b.describe()}; cast one first`);
  return a.dtype;
}

function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor, outDtype?: DType): Tensor {
  const backend = backendOf(op, a, b);
  const dtype = resultDtype(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  if (!a.isDense() && sameLayout(a, b)) {
    // Operands laid out alike (two channels-last maps): flat over the buffers, the result laid out the same.
    const out = alloc(backend, shape, outDtype ?? dtype, false, a.strides);
    const flat = [a.size];
    backend.binary(op, { ...a.view(), shape: flat, strides: [1] }, { ...b.view(), shape: flat, strides: [1] }, out.buf(), out.dtype, flat);
    return out;
  }
  const out = alloc(backend, shape, outDtype ?? dtype);
  const av = a.view();
  const bv = b.view();
  backend.binary(op, { ...av, shape, strides: broadcastStrides(a.shape, a.strides, shape) },
    { ...bv, shape, strides: broadcastStrides(b.shape, b.strides, shape) }, out.buf(), out.dtype, shape);
  return out;
}

/** Same shape and strides, each filling its storage in that order. */
function sameLayout(a: Tensor, b: Tensor): boolean {
  return a.rank === b.rank && a.shape.every((d, i) => d === b.shape[i] && a.strides[i] === b.strides[i]) && a.isDensePermuted() && b.isDensePermuted();
}

type Operand = Tensor | number;

function asTensor(v: Operand, like: Tensor): Tensor {
  return typeof v === 'number' ? full([], v, { dtype: like.dtype, backend: like.backend }) : v;
}

/** a + b with broadcasting; either side may be a number. */
export function add(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return affine(a as Tensor, 1, b);
  if (typeof a === 'number') return affine(b, 1, a);
  const out = binaryRaw('add', a, b);
  return record(out, 'add', [a, b], [], (gy) => [sumTo(gy, a.shape), sumTo(gy, b.shape)]);
}

export function sub(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return affine(a as Tensor, 1, -b);
  if (typeof a === 'number') return affine(b, -1, a);
  const out = binaryRaw('sub', a, b);
  return record(out, 'sub', [a, b], [], (gy) => [sumTo(gy, a.shape), b.requiresGrad ? sumTo(neg(gy), b.shape) : null]);
}

export function mul(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return affine(a as Tensor, b, 0);
  if (typeof a === 'number') return affine(b, a, 0);
  const out = binaryRaw('mul', a, b);
  return record(out, 'mul', [a, b], [a, b], (gy, [as, bs]) => [
    a.requiresGrad ? sumTo(mul(gy, bs!), a.shape) : null,
    b.requiresGrad ? sumTo(mul(gy, as!), b.shape) : null,
  ]);
}

export function div(a: Operand, b: Operand): Tensor {
  if (typeof b === 'number') return affine(a as Tensor, 1 / b, 0);
  const at = asTensor(a, b);
  const out = binaryRaw('div', at, b);
  return record(out, 'div', [at, b], [b, out], (gy, [bs, os]) => [
    at.requiresGrad ? sumTo(div(gy, bs!), at.shape) : null,
    b.requiresGrad ? sumTo(neg(div(mul(gy, os!), bs!)), b.shape) : null,
  ]);
}

/** Elementwise max; ties send half the gradient to each side (as PyTorch). */
export function maximum(a: Tensor, b: Operand): Tensor {
  return minmax('maximum', a, asTensor(b, a));
}

export function minimum(a: Tensor, b: Operand): Tensor {
  return minmax('minimum', a, asTensor(b, a));
}

function minmax(op: 'maximum' | 'minimum', a: Tensor, b: Tensor): Tensor {
  const out = binaryRaw(op, a, b);
  return record(out, op, [a, b], [a, b], (gy, [as, bs]) => {
    const wins = binaryRaw(op === 'maximum' ? 'gt' : 'lt', as!, bs!);
    const ties = binaryRaw('eq', as!, bs!);
    const wa = add(wins, mul(ties, 0.5));
    const ga = a.requiresGrad ? sumTo(mul(gy, wa), a.shape) : null;
    const gb = b.requiresGrad ? sumTo(mul(gy, sub(1, wa)), b.shape) : null;
    return [ga, gb];
  });
}

/** a ** b; a number exponent uses the fused scalar kernel. */
export function pow(a: Tensor, b: Operand): Tensor {
  if (typeof b === 'number') return unaryOp('pow_scalar', 'pow', a, b);
  const out = binaryRaw('pow', a, b);
  return record(out, 'pow', [a, b], [a, b, out], (gy, [as, bs, os]) => [
    a.requiresGrad ? sumTo(mul(gy, mul(bs!, pow(as!, sub(bs!, 1)))), a.shape) : null,
    b.requiresGrad ? sumTo(mul(gy, mul(os!, log(as!))), b.shape) : null,
  ]);
}

/** Comparisons give 0/1 in the inputs' dtype and carry no gradient. */
export const eq = (a: Tensor, b: Operand): Tensor => binaryRaw('eq', a, asTensor(b, a));
export const lt = (a: Tensor, b: Operand): Tensor => binaryRaw('lt', a, asTensor(b, a));
export const gt = (a: Tensor, b: Operand): Tensor => binaryRaw('gt', a, asTensor(b, a));
export const le = (a: Tensor, b: Operand): Tensor => binaryRaw('le', a, asTensor(b, a));
export const ge = (a: Tensor, b: Operand): Tensor => binaryRaw('ge', a, asTensor(b, a));

/** cond ≠ 0 ? a : b, all broadcast together. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const like = typeof a !== 'number' ? a : typeof b !== 'number' ? b : null;
  const at = asTensor(a, like ?? cond);
  const bt = asTensor(b, like ?? cond);
  if (!isFloat(at.dtype) && at.dtype !== bt.dtype) throw new DTypeError(`where: branch dtypes differ: ${at.describe()} and ${bt.describe()}`);
  resultDtype('where', at, bt);
  const backend = backendOf('where', cond, at, bt);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, at.shape), bt.shape);
  const out = alloc(backend, shape, at.dtype);
  const v = (t: Tensor) => ({ ...t.view(), shape, strides: broadcastStrides(t.shape, t.strides, shape) });
  backend.where(v(cond), v(at), v(bt), out.buf(), shape);
  return record(out, 'where', [at, bt], [cond], (gy, [cs]) => {
    const zero = full([], 0, { dtype: gy.dtype, backend: gy.backend });
    return [
      at.requiresGrad ? sumTo(where(cs!, gy, zero), at.shape) : null,
      bt.requiresGrad ? sumTo(where(cs!, zero, gy), bt.shape) : null,
    ];
  });
}

/** Converts dtype (no gradient across int types). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const out = alloc(x.backend, x.shape, dtype);
  x.backend.copy(x.view(), out.view());
  if (isFloat(dtype) && isFloat(x.dtype)) return record(out, 'cast', [x], [], (gy) => [cast(gy, x.dtype)]);
  return out;
}
