// Host buffer pool: the storage of the CPU backends, and staging memory for data on its way into
// a tensor (the loader's batches). Freshly allocated typed arrays are zero-filled by V8 (a full
// pass over memory) and their release waits on the garbage collector; reusing freed buffers of
// the same dtype and size avoids both in a training loop, where every step allocates the same
// shapes.
//
// The pool holds at most MAX_POOLED_BYTES: a quarter of the machine's memory, between 1 and 8 GiB
// (GRAFT_POOL_MB sets it). A training step's working set must fit, or every step allocates (and
// page-faults in) fresh memory for the buffers that did not. Size classes are kept in
// least-recently-used order: when a freed buffer would overflow the pool, buffers of the classes used longest ago make room,
// so a new phase (evaluation after training, another batch size) gets its own shapes pooled
// instead of allocating afresh for every op and leaving the old phase's buffers unused.
import { totalmem } from 'node:os';
import { dtypeArray, dtypeOf, type DType, type TypedArray } from './dtype.js';

function defaultLimit(): number {
  const env = process.env['GRAFT_POOL_MB'];
  if (env !== undefined && env !== '') {
    const mb = Number(env);
    if (!Number.isFinite(mb) || mb < 0) throw new Error(`GRAFT_POOL_MB must be a number of megabytes ≥ 0; got '${env}'`);
    return mb * 2 ** 20;
  }
  return Math.min(8 * 2 ** 30, Math.max(2 ** 30, totalmem() / 4));
}

let MAX_POOLED_BYTES = defaultLimit();
/** dtype + length → free buffers; Map order is the classes' last use, oldest first. */
const free = new Map<string, TypedArray[]>();
let pooledBytes = 0;

function touch(key: string): TypedArray[] {
  let list = free.get(key);
  if (list) free.delete(key);
  else list = [];
  free.set(key, list);
  return list;
}

/** Where in a fresh ArrayBuffer a buffer should start (the native backend: a 64-byte boundary). */
let aligner: ((buffer: ArrayBuffer) => number) | null = null;
const ALIGN_SLACK = 64;
const ALIGN_MIN_BYTES = 4096;

/** Places large fresh buffers at `offsetOf(arrayBuffer)` bytes into a slightly larger ArrayBuffer. */
export function setPoolAligner(offsetOf: ((buffer: ArrayBuffer) => number) | null): void {
  aligner = offsetOf;
}

export function poolAlloc(dtype: DType, size: number, zero: boolean): TypedArray {
  const key = dtype + size;
  const reused = free.has(key) ? touch(key).pop() : undefined;
  if (reused) {
    pooledBytes -= reused.byteLength;
    if (zero) reused.fill(0);
    return reused;
  }
  const Ctor = dtypeArray[dtype];
  const bytes = size * Ctor.BYTES_PER_ELEMENT;
  if (aligner && bytes >= ALIGN_MIN_BYTES) {
    const ab = new ArrayBuffer(bytes + ALIGN_SLACK);
    const offset = aligner(ab);
    if (offset % Ctor.BYTES_PER_ELEMENT === 0 && offset + bytes <= ab.byteLength) return new Ctor(ab, offset, size);
  }
  return new Ctor(size);
}

/** A pooled copy of host data: the copy's later free() takes the place of the buffer it came from. */
export function poolUpload(data: TypedArray): TypedArray {
  const out = poolAlloc(dtypeOf(data), data.length, false);
  out.set(data as never);
  return out;
}

export function poolFree(buf: TypedArray, dtype: DType): void {
  if (buf.byteLength > MAX_POOLED_BYTES / 4) return; // one huge buffer would flush the pool
  const key = dtype + buf.length;
  const list = touch(key);
  // Evict from the least recently used classes (never the one being filled) until it fits.
  for (const [k, l] of free) {
    if (pooledBytes + buf.byteLength <= MAX_POOLED_BYTES) break;
    if (k === key) continue;
    while (l.length && pooledBytes + buf.byteLength > MAX_POOLED_BYTES) pooledBytes -= l.pop()!.byteLength;
    if (l.length === 0) free.delete(k);
  }
  if (pooledBytes + buf.byteLength > MAX_POOLED_BYTES) return;
  list.push(buf);
  pooledBytes += buf.byteLength;
}

/** Sets the pool's capacity in bytes (default: a quarter of the memory, 1–8 GiB, or GRAFT_POOL_MB) and drops what no longer fits. */
export function setPoolLimit(bytes: number): void {
  MAX_POOLED_BYTES = bytes;
  if (pooledBytes > bytes) clearPool();
}

/** The pool's capacity in bytes. */
export function poolLimit(): number {
  return MAX_POOLED_BYTES;
}

/** Bytes held by the pool now. */
export function pooledByteCount(): number {
  return pooledBytes;
}

/** Drops every pooled buffer (they are then garbage collected). */
export function clearPool(): void {
  free.clear();
  pooledBytes = 0;
}
