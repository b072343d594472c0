// graft's one memory rule (docs/memory.md):
//
//   Every tensor belongs to the innermost `tidy` scope that was open when it was created, or to
//   the caller when none was open. When a scope ends it disposes every tensor it owns except the
//   ones the scope's function returns (those move to the enclosing scope) and the ones passed to
//   `keep`. Gradients written to `.grad` belong to their leaf tensor. `dispose()` frees earlier.
//
// Buffers are counted here, so `memory().liveBuffers` returning to its baseline after a training
// step is a testable property.
import type { Tensor } from './tensor.js';

export interface MemoryInfo {
  liveBuffers: number;
  liveBytes: number;
  peakBytes: number;
}

const counters = { liveBuffers: 0, liveBytes: 0, peakBytes: 0 };

export function trackAlloc(bytes: number): void {
  counters.liveBuffers++;
  counters.liveBytes += bytes;
  if (counters.liveBytes > counters.peakBytes) counters.peakBytes = counters.liveBytes;
}

export function trackFree(bytes: number): void {
  counters.liveBuffers--;
  counters.liveBytes -= bytes;
}

export function memory(): MemoryInfo {
  return { ...counters };
}

export function resetPeakMemory(): void {
  counters.peakBytes = counters.liveBytes;
}

const scopes: Set<Tensor>[] = [];

/** Called by the Tensor constructor. */
export function adopt(t: Tensor): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

/** Removes `t` from whatever scope owns it, so no scope will dispose it. Returns `t`. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if ((value as { isTensor?: boolean }).isTensor === true) {
    out.add(value as Tensor);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, seen);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, seen);
}

/**
 * Runs `fn` in a memory scope: tensors it creates are disposed when it returns, except those in
 * its result (a tensor, or arrays / plain objects / Maps of them) and those passed to `keep`.
 * Example: `const loss = tidy(() => crossEntropy(model.forward(x), y))`.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  const returned = new Set<Tensor>();
  collect(result, returned, new Set());
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}
