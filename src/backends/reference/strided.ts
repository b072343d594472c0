// Row-major walks over strided views: the reference backend's one way to read any layout.
import type { View } from '../backend.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { isContiguous, numel, type Shape } from '../../tensor/shape.js';

/** Element offsets of `v` in row-major order of `shape` (v's strides must already match shape's rank). */
export function offsets(shape: Shape, strides: readonly number[], offset: number): Int32Array | null {
  const n = numel(shape);
  if (isContiguous(shape, strides)) return null; // caller uses offset + i
  const out = new Int32Array(n);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let off = offset;
  for (let i = 0; i < n; i++) {
    out[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      off -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** Reads view `v` as a function of the row-major position i. */
export function reader(v: View<TypedArray>): (i: number) => number {
  const data = v.buf;
  const offs = offsets(v.shape, v.strides, v.offset);
  if (!offs) {
    const o = v.offset;
    return (i) => data[o + i]!;
  }
  return (i) => data[offs[i]!]!;
}

/** Maps row-major position i to the element offset of `v`. */
export function indexer(v: View<TypedArray>): (i: number) => number {
  const offs = offsets(v.shape, v.strides, v.offset);
  if (!offs) {
    const o = v.offset;
    return (i) => o + i;
  }
  return (i) => offs[i]!;
}
