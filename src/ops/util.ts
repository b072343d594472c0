// Shared checks and allocation helpers for ops.
import type { Backend } from '../backends/backend.js';
import type { DType } from '../tensor/dtype.js';
import { emptyTensor, type Tensor } from '../tensor/tensor.js';
import { fmt, type Shape } from '../tensor/shape.js';
import { keep } from '../tensor/memory.js';

export class DTypeError extends Error {
  override name = 'DTypeError';
}

/** The backend all `inputs` share; names the op and argument when they differ. */
export function backendOf(op: string, ...inputs: (Tensor | null | undefined)[]): Backend<any> {
  let b: Backend<any> | null = null;
  inputs.forEach((t, i) => {
    if (!t) return;
    if (b && t.backend !== b) throw new Error(`${op}: argument ${i} is on backend '${t.backend.name}' but argument 0 is on '${b.name}'; move it with .to()`);
    b ??= t.backend;
  });
  if (!b) throw new Error(`${op}: needs at least one tensor argument`);
  return b;
}

export function expectFloat(op: string, t: Tensor, arg: string | number): void {
  if (t.dtype !== 'float32' && t.dtype !== 'float64') {
    throw new DTypeError(`${op}: argument ${arg} must be float32 or float64; got ${t.describe()}`);
  }
}

export function expectSameDtype(op: string, a: Tensor, b: Tensor): void {
  if (a.dtype !== b.dtype) throw new DTypeError(`${op}: dtypes differ: argument 0 is ${a.describe()}, argument 1 is ${b.describe()}`);
}

export function expectRank(op: string, t: Tensor, rank: number, arg: string | number, layout = ''): void {
  if (t.rank !== rank) {
    throw new Error(`${op}: argument ${arg} must have rank ${rank}${layout ? ` (${layout})` : ''}; got shape ${fmt(t.shape)}`);
  }
}

/** A fresh output tensor on `backend`. */
export function alloc(backend: Backend<any>, shape: Shape, dtype: DType, zero = false, strides?: readonly number[]): Tensor {
  return emptyTensor(shape, dtype, backend, zero, strides);
}

/**
 * Packed copies of one weight (Backend.conv2dPack, Backend.matmulPack), by the geometry each was
 * made for; null: the backend has none for it. Their owner (an inference cache) disposes them.
 */
export type WeightPacks = Map<string, Tensor | null>;

/**
 * fn(), then done() once it has finished: at once when fn returns a value or throws, when its
 * promise settles when it returns one. For scopes whose body may be sync or async.
 */
export function thenFinally<T>(fn: () => T, done: () => void): T {
  let result: T;
  try {
    result = fn();
  } catch (e) {
    done();
    throw e;
  }
  if (result instanceof Promise) return result.finally(done) as T;
  done();
  return result;
}

/** GRAFT_PACKED_WEIGHTS=0 runs every layer on its plain weights (for comparison and debugging). */
export const packingEnabled = process.env['GRAFT_PACKED_WEIGHTS'] !== '0';

/**
 * The packed copy of `w` stored under `key` in `packs`, made on first use: a buffer of `length()`
 * elements (0: the backend has none, remembered as null) filled by `fill(source, packed)`.
 */
export function packedCopy(packs: WeightPacks, key: string, w: Tensor, length: () => number, fill: (w: Tensor, packed: Tensor) => void): Tensor | null {
  let t = packs.get(key);
  if (t === undefined) {
    const n = length();
    t = n > 0 ? keep(alloc(w.backend, [n], w.dtype)) : null;
    if (t) fill(w, t);
    packs.set(key, t);
  }
  return t;
}
