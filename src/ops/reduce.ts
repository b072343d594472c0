// Reductions over axes: sum, mean, max/min (with argmax), variance, norms.
import { noGrad } from '../tensor/autograd.js';
import { normAxes, normAxis, numel } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { arange } from './creation.js';
import { abs, cast, div, eq, mul, sqrt, square, sub, where } from './elementwise.js';
import { denseData, expand, reshape, sumAxes } from './layout.js';
import { record } from './table.js';
import { alloc, expectFloat } from './util.js';

export interface ReduceOptions {
  keepDims?: boolean;
}

function keptShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function reducedShape(shape: readonly number[], axes: readonly number[], keepDims: boolean): number[] {
  return keepDims ? keptShape(shape, axes) : shape.filter((_, i) => !axes.includes(i));
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  const ax = normAxes('sum', axes, x.rank);
  const raw = sumAxes(x, ax);
  const out = reshape(raw, reducedShape(x.shape, ax, opts.keepDims ?? false));
  if (out !== raw) raw.dispose();
  return record(out, 'sum', [x], [], (gy) => [expand(reshape(gy, keptShape(x.shape, ax)), x.shape)]);
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  const ax = normAxes('mean', axes, x.rank);
  const count = numel(ax.map((a) => x.shape[a]!));
  return mul(sum(x, ax, opts), 1 / count);
}

function extremum(op: 'max' | 'min', x: Tensor, axis: number, keepDims: boolean): { values: Tensor; indices: Tensor } {
  const a = normAxis(op, axis, x.rank);
  const xd = denseData(x);
  const outer = numel(x.shape.slice(0, a));
  const len = x.shape[a]!;
  const inner = numel(x.shape.slice(a + 1));
  const shape = reducedShape(x.shape, [a], keepDims);
  const values = alloc(x.backend, shape, x.dtype);
  const indices = alloc(x.backend, shape, 'int32');
  x.backend.reduce(op, xd.buf(), x.dtype, outer, len, inner, values.buf(), indices.buf());
  if (xd !== x) xd.dispose();
  record(values, op === 'max' ? 'maxAlong' : 'minAlong', [x], [indices], (gy, [idx]) => {
    // Route the gradient to the first extremal element (PyTorch's max(dim) rule): a one-hot
    // mask of the saved indices along the axis.
    const positions = arange(0, len, 1, { dtype: gy.dtype, backend: gy.backend });
    const mask = eq(reshape(positions, [1, len, 1]), reshape(cast(idx!, gy.dtype), [outer, 1, inner]));
    return [reshape(mul(mask, reshape(gy, [outer, 1, inner])), x.shape)];
  });
  return { values, indices };
}

/** Max along one axis: values and int32 indices. */
export function maxAlong(x: Tensor, axis: number, opts: ReduceOptions = {}): { values: Tensor; indices: Tensor } {
  return extremum('max', x, axis, opts.keepDims ?? false);
}

export function minAlong(x: Tensor, axis: number, opts: ReduceOptions = {}): { values: Tensor; indices: Tensor } {
  return extremum('min', x, axis, opts.keepDims ?? false);
}

/** Max over `axes` (all when omitted); the gradient is shared equally among tied maxima. */
export function max(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  return allExtremum('max', x, axes, opts);
}

export function min(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions = {}): Tensor {
  return allExtremum('min', x, axes, opts);
}

function allExtremum(op: 'max' | 'min', x: Tensor, axes: number | readonly number[] | undefined, opts: ReduceOptions): Tensor {
  const ax = normAxes(op, axes, x.rank);
  // Move reduced axes last and flatten them, then reduce that one axis.
  const keep = x.shape.map((_, i) => i).filter((i) => !ax.includes(i));
  const perm = [...keep, ...ax];
  const moved = perm.every((p, i) => p === i) ? x : permuteRaw(x, perm);
  const flat = denseData(moved);
  const rows = numel(keep.map((i) => x.shape[i]!));
  const len = numel(ax.map((i) => x.shape[i]!));
  const values = alloc(x.backend, reducedShape(x.shape, ax, opts.keepDims ?? false), x.dtype);
  const arg = alloc(x.backend, [rows], 'int32');
  x.backend.reduce(op, flat.buf(), x.dtype, rows, len, 1, values.buf(), arg.buf());
  if (flat !== x) flat.dispose();
  arg.dispose();
  return record(values, op, [x], [x, values], (gy, [xs, vs]) => {
    const kept = keptShape(x.shape, ax);
    const mask = eq(xs!, reshape(vs!, kept));
    const count = sum(mask, ax, { keepDims: true });
    return [mul(div(mask, count), reshape(gy, kept))];
  });
}

function permuteRaw(x: Tensor, perm: readonly number[]): Tensor {
  const out = alloc(x.backend, perm.map((p) => x.shape[p]!), x.dtype);
  x.backend.copy({ ...x.view(), shape: out.shape, strides: perm.map((p) => x.strides[p]!) }, out.view());
  return out;
}

/** Indices of the maximum along `axis` (int32). */
export function argmax(x: Tensor, axis: number, opts: ReduceOptions = {}): Tensor {
  const { values, indices } = noGrad(() => extremum('max', x, axis, opts.keepDims ?? false));
  values.dispose();
  return indices;
}

/** Variance over `axes`; `correction` 1 is the unbiased estimator (PyTorch's default), 0 the biased one. */
export function variance(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions & { correction?: number } = {}): Tensor {
  expectFloat('var', x, 0);
  const ax = normAxes('var', axes, x.rank);
  const count = numel(ax.map((a) => x.shape[a]!));
  const centred = sub(x, mean(x, ax, { keepDims: true }));
  return mul(sum(square(centred), ax, opts), 1 / Math.max(count - (opts.correction ?? 1), 0));
}

/** p-norm along axes (p = 2 by default; p = 1 sums absolute values). */
export function norm(x: Tensor, axes?: number | readonly number[], opts: ReduceOptions & { p?: 1 | 2 } = {}): Tensor {
  const p = opts.p ?? 2;
  if (p === 1) return sum(abs(x), axes, opts);
  expectFloat('norm', x, 0);
  const ax = normAxes('norm', axes, x.rank);
  const values = noGrad(() => sqrt(sum(square(x), ax, opts)));
  // d‖x‖/dx = x / ‖x‖, taken as 0 where ‖x‖ = 0 (the subgradient PyTorch uses), never 0·∞ = NaN.
  return record(values, 'norm', [x], [x, values], (gy, [xs, ns]) => {
    const kept = keptShape(x.shape, ax);
    const n = reshape(ns!, kept);
    const zero = eq(n, 0);
    const scale = where(zero, 0, div(reshape(gy, kept), where(zero, 1, n)));
    return [mul(xs!, scale)];
  });
}
