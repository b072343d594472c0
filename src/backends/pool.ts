// Host buffer pool shared by the CPU backends. Freshly allocated typed arrays are zero-filled
// by V8 (a full pass over memory) and their release waits on the garbage collector; reusing
// freed buffers of the same dtype and size avoids both in a training loop, where every step
// allocates the same shapes.
import { dtypeArray, type DType, type TypedArray } from '../tensor/dtype.js';

const MAX_POOLED_BYTES = 1 << 30;
const free = new Map<string, TypedArray[]>();
let pooledBytes = 0;

export function poolAlloc(dtype: DType, size: number, zero: boolean): TypedArray {
  const list = free.get(dtype + size);
  const reused = list?.pop();
  if (reused) {
    pooledBytes -= reused.byteLength;
    if (zero) reused.fill(0);
    return reused;
  }
  return new dtypeArray[dtype](size);
}

export function poolFree(buf: TypedArray, dtype: DType): void {
  if (pooledBytes + buf.byteLength > MAX_POOLED_BYTES) return; // left to the garbage collector
  const key = dtype + buf.length;
  let list = free.get(key);
  if (!list) free.set(key, (list = []));
  list.push(buf);
  pooledBytes += buf.byteLength;
}

/** Drops every pooled buffer (they are then garbage collected). */
export function clearPool(): void {
  free.clear();
  pooledBytes = 0;
}
