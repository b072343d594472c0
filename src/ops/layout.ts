// Views and layout: reshape, permute, expand, slice, concat, pad — and the contiguous copies
// kernels need. View ops share storage with their input; their gradients are views or copies of gy.
import type { View } from '../backends/backend.js';
import { broadcastStrides, contiguousStrides, fmt, normAxis, numel, ShapeError, shapeEq, type Shape } from '../tensor/shape.js';
import { Tensor } from '../tensor/tensor.js';
import { record } from './table.js';
import { alloc, backendOf } from './util.js';

/** Overwrites `target`'s elements with `value`'s (same shape), outside autograd. */
export function assign(target: Tensor, value: Tensor): void {
  if (!shapeEq(target.shape, value.shape)) throw new ShapeError(`assign: value ${fmt(value.shape)} does not match target ${fmt(target.shape)}`);
  target.backend.copy(value.view(), target.view());
}

/** A dense copy of `x` outside autograd (for kernels that need dense buffers). Returns x if already dense. */
export function denseData(x: Tensor): Tensor {
  if (x.isDense()) return x;
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.copy(x.view(), out.view());
  return out;
}

/** A row-major tensor with x's values (x itself when already dense). */
export function contiguous(x: Tensor): Tensor {
  if (x.isDense()) return x;
  const out = denseData(x);
  return record(out, 'contiguous', [x], [], (gy) => [gy]);
}

function viewOf(x: Tensor, shape: Shape, strides: readonly number[], offset: number): Tensor {
  return new Tensor(x.storage, shape, strides, offset);
}

function resolveShape(op: string, size: number, shape: readonly number[]): number[] {
  const out = [...shape];
  const infer = out.indexOf(-1);
  if (infer >= 0) {
    const rest = numel(out.filter((_, i) => i !== infer));
    if (rest === 0 || size % rest !== 0) throw new ShapeError(`${op}: cannot infer -1 in ${fmt(shape)} for ${size} elements`);
    out[infer] = size / rest;
  }
  if (numel(out) !== size) throw new ShapeError(`${op}: shape ${fmt(shape)} has ${numel(out)} elements but the input has ${size}`);
  return out;
}

/** Same data, new shape (one dim may be -1). A view when x is contiguous, else a copy. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape('reshape', x.size, shape);
  if (shapeEq(target, x.shape)) return x;
  const src = x.isContiguous() ? x : denseData(x);
  const out = viewOf(src, target, contiguousStrides(target), src.offset);
  if (src !== x) src.dispose();
  return record(out, 'reshape', [x], [], (gy) => [reshape(gy, x.shape)]);
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  const s = normAxis('flatten', startDim, x.rank);
  const e = normAxis('flatten', endDim, x.rank);
  return reshape(x, [...x.shape.slice(0, s), numel(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)]);
}

export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normAxis('unsqueeze', axis, x.rank + 1);
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
}

/** Drops size-1 axes (all of them, or `axis` if it has size 1): always a view, whatever the strides. */
export function squeeze(x: Tensor, axis?: number): Tensor {
  const a = axis === undefined ? -1 : normAxis('squeeze', axis, x.rank);
  const drop = (i: number) => x.shape[i] === 1 && (a < 0 || i === a);
  if (!x.shape.some((_, i) => drop(i))) return x;
  const out = viewOf(x, x.shape.filter((_, i) => !drop(i)), x.strides.filter((_, i) => !drop(i)), x.offset);
  return record(out, 'squeeze', [x], [], (gy) => [reshape(gy, x.shape)]);
}

/** Reorders axes: out.shape[i] = x.shape[dims[i]]. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((a) => normAxis('permute', a, x.rank));
  if (d.length !== x.rank || new Set(d).size !== x.rank) throw new ShapeError(`permute: ${fmt(dims)} is not a permutation of ${x.rank} axes`);
  if (d.every((a, i) => a === i)) return x;
  const out = viewOf(x, d.map((a) => x.shape[a]!), d.map((a) => x.strides[a]!), x.offset);
  const inverse = new Array<number>(d.length);
  d.forEach((a, i) => (inverse[a] = i));
  return record(out, 'permute', [x], [], (gy) => [permute(gy, inverse)]);
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const dims = Array.from({ length: x.rank }, (_, i) => i);
  const i = normAxis('transpose', a, x.rank);
  const j = normAxis('transpose', b, x.rank);
  [dims[i], dims[j]] = [dims[j]!, dims[i]!];
  return permute(x, dims);
}

/** Broadcasts x to `shape` without copying (stride 0 on stretched axes). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const target = shape.map((d, i) => (d === -1 ? x.shape[i - (shape.length - x.rank)]! : d));
  if (shapeEq(target, x.shape)) return x;
  const off = target.length - x.rank;
  if (off < 0 || x.shape.some((d, i) => d !== 1 && d !== target[i + off])) {
    throw new ShapeError(`expand: cannot broadcast ${fmt(x.shape)} to ${fmt(target)}`);
  }
  const out = viewOf(x, target, broadcastStrides(x.shape, x.strides, target), x.offset);
  return record(out, 'expand', [x], [], (gy) => [sumTo(gy, x.shape)]);
}

/** Sums `g` over broadcast axes so that it has `shape` (the gradient of a broadcast). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (shapeEq(g.shape, shape)) return g;
  const off = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < off || (shape[i - off] === 1 && g.shape[i] !== 1)) axes.push(i);
  return reshape(sumAxes(g, axes), shape);
}

/** Sum over `axes` (sorted, unique) without autograd; the kernel-level core of sum(). */
export function sumAxes(x: Tensor, axes: readonly number[]): Tensor {
  if (axes.length === 0) return copyTensor(x);
  let cur = denseData(x);
  let shape = [...cur.shape];
  // Reduce runs of adjacent axes in one kernel call, last run first so earlier indices stay valid.
  const runs: [number, number][] = [];
  for (const a of axes) {
    const last = runs[runs.length - 1];
    if (last && last[1] === a) last[1] = a + 1;
    else runs.push([a, a + 1]);
  }
  for (const [s, e] of runs.reverse()) {
    const outer = numel(shape.slice(0, s));
    const len = numel(shape.slice(s, e));
    const inner = numel(shape.slice(e));
    const next = alloc(cur.backend, [...shape.slice(0, s), ...shape.slice(e)], cur.dtype);
    cur.backend.reduce('sum', cur.buf(), cur.dtype, outer, len, inner, next.buf(), null);
    if (cur !== x) cur.dispose();
    cur = next;
    shape = [...next.shape];
  }
  return cur;
}

function copyTensor(x: Tensor): Tensor {
  const out = alloc(x.backend, x.shape, x.dtype);
  x.backend.copy(x.view(), out.view());
  return out;
}

export interface SliceSpec {
  start?: number;
  end?: number;
  step?: number;
}

/** x[start:end:step] along `axis` (negative indices count from the end), as a view. */
export function slice(x: Tensor, axis: number, start = 0, end?: number, step = 1): Tensor {
  const a = normAxis('slice', axis, x.rank);
  const size = x.shape[a]!;
  if (step <= 0) throw new ShapeError(`slice: step must be positive; got ${step}`);
  const clampIdx = (i: number) => Math.min(Math.max(i < 0 ? i + size : i, 0), size);
  const s = clampIdx(start);
  const e = Math.max(s, clampIdx(end ?? size));
  const len = Math.ceil((e - s) / step);
  const shape = [...x.shape];
  shape[a] = len;
  const strides = [...x.strides];
  strides[a] = x.strides[a]! * step;
  const out = viewOf(x, shape, strides, x.offset + s * x.strides[a]!);
  return record(out, 'slice', [x], [], (gy) => {
    const gx = alloc(gy.backend, x.shape, gy.dtype, true);
    const gxStrides = contiguousStrides(x.shape);
    const dst: View<any> = {
      buf: gx.buf(), dtype: gx.dtype, shape, offset: s * gxStrides[a]!,
      strides: gxStrides.map((st, i) => (i === a ? st * step : st)),
    };
    gy.backend.copy(gy.view(), dst);
    return [gx];
  });
}

/** x[i] along `axis`, dropping that axis. */
export function select(x: Tensor, axis: number, index: number): Tensor {
  const a = normAxis('select', axis, x.rank);
  const i = index < 0 ? index + x.shape[a]! : index;
  if (i < 0 || i >= x.shape[a]!) throw new ShapeError(`select: index ${index} is out of range for axis ${axis} of size ${x.shape[a]}`);
  return squeeze(slice(x, a, i, i + 1), a);
}

/** Splits x along `axis` into pieces of the given sizes (views). */
export function split(x: Tensor, sizes: readonly number[], axis = 0): Tensor[] {
  const a = normAxis('split', axis, x.rank);
  const total = sizes.reduce((p, c) => p + c, 0);
  if (total !== x.shape[a]) throw new ShapeError(`split: sizes ${fmt(sizes)} sum to ${total} but axis ${axis} has ${x.shape[a]}`);
  let at = 0;
  return sizes.map((s) => {
    const piece = slice(x, a, at, at + s);
    at += s;
    return piece;
  });
}

/** Joins tensors along an existing axis. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('concat: needs at least one tensor');
  const first = xs[0]!;
  const a = normAxis('concat', axis, first.rank);
  xs.forEach((t, i) => {
    if (t.rank !== first.rank || t.shape.some((d, j) => j !== a && d !== first.shape[j]) || t.dtype !== first.dtype) {
      throw new ShapeError(`concat: argument ${i} ${t.describe()} does not match argument 0 ${first.describe()} outside axis ${a}`);
    }
  });
  const backend = backendOf('concat', ...xs);
  const shape = [...first.shape];
  shape[a] = xs.reduce((p, t) => p + t.shape[a]!, 0);
  const out = alloc(backend, shape, first.dtype);
  const strides = contiguousStrides(shape);
  let at = 0;
  for (const t of xs) {
    backend.copy(t.view(), { buf: out.buf(), dtype: out.dtype, shape: t.shape, strides, offset: at * strides[a]! });
    at += t.shape[a]!;
  }
  return record(out, 'concat', xs, [], (gy) => split(gy, xs.map((t) => t.shape[a]!), a));
}

/** Joins tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('stack: needs at least one tensor');
  const a = normAxis('stack', axis, xs[0]!.rank + 1);
  return concat(xs.map((t) => unsqueeze(t, a)), a);
}

/** Dense strides for `shape` with the axes in the order `like`'s strides give them (largest first). */
function permutedStrides(shape: Shape, like: readonly number[]): number[] {
  const order = shape.map((_, i) => i).sort((a, b) => like[b]! - like[a]! || a - b);
  const strides = new Array<number>(shape.length);
  let step = 1;
  for (let k = order.length - 1; k >= 0; k--) {
    strides[order[k]!] = step;
    step *= shape[order[k]!]!;
  }
  return strides;
}

/**
 * Constant padding in PyTorch's order: pads = [left, right] for the last axis, then
 * [top, bottom] for the one before, and so on.
 */
export function pad(x: Tensor, pads: readonly number[], value = 0): Tensor {
  if (pads.length % 2 !== 0 || pads.length / 2 > x.rank) throw new ShapeError(`pad: needs pairs for at most ${x.rank} axes; got ${fmt(pads)}`);
  if (pads.some((p) => p < 0)) throw new ShapeError(`pad: negative padding ${fmt(pads)} is not supported; use slice`);
  const shape = [...x.shape];
  const before = new Array<number>(x.rank).fill(0);
  for (let i = 0; i < pads.length / 2; i++) {
    const a = x.rank - 1 - i;
    before[a] = pads[2 * i]!;
    shape[a] = shape[a]! + pads[2 * i]! + pads[2 * i + 1]!;
  }
  // A permuted dense input (a channels-last map) gives a result laid out in the same axis order.
  const strides = !x.isDense() && x.isDensePermuted() ? permutedStrides(shape, x.strides) : contiguousStrides(shape);
  const out = alloc(x.backend, shape, x.dtype, value === 0, strides);
  if (value !== 0) x.backend.fill(out.view(), value);
  const offset = before.reduce((p, b, i) => p + b * strides[i]!, 0);
  x.backend.copy(x.view(), { buf: out.buf(), dtype: out.dtype, shape: x.shape, strides, offset });
  return record(out, 'pad', [x], [], (gy) => {
    let g = gy;
    before.forEach((b, i) => {
      if (b !== 0 || shape[i] !== x.shape[i]) g = slice(g, i, b, b + x.shape[i]!);
    });
    return [g];
  });
}
