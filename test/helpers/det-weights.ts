// Deterministic weights from a parameter's name and shape, computed identically by
// fixtures/models/det_weights.py, so model parity fixtures need no committed weight files.
//   s_i = sin(phase(name) + 0.61803·i), phase = 2π·(fnv1a32(name) mod 10007)/10007
//   rank ≥ 2: s_i / sqrt(fan_in), fan_in = numel / shape[0]
//   *running_var: 1 + 0.5·s_i²;  *num_batches_tracked: 0
//   rank 1 or 0 named *.weight (norm scales): 1 + 0.1·s_i;  other rank ≤ 1: 0.05·s_i
import { tensor } from '../../src/ops/creation.js';
import type { Tensor } from '../../src/tensor/tensor.js';

export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(s, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function detValues(name: string, shape: readonly number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const phase = (2 * Math.PI * (fnv1a32(name) % 10007)) / 10007;
  const out = new Float32Array(n);
  const fanIn = shape.length >= 2 ? n / shape[0]! : 1;
  for (let i = 0; i < n; i++) {
    const s = Math.sin(phase + 0.61803 * i);
    let v: number;
    if (name.endsWith('num_batches_tracked')) v = 0;
    else if (name.endsWith('running_var')) v = 1 + 0.5 * s * s;
    else if (shape.length >= 2) v = s / Math.sqrt(fanIn);
    else if (name.endsWith('.weight') || name === 'weight') v = 1 + 0.1 * s;
    else v = 0.05 * s;
    out[i] = v;
  }
  return out;
}

/** A state dict of deterministic tensors for the given (name, shape) list. */
export function detStateDict(keys: readonly (readonly [string, readonly number[]])[]): Map<string, Tensor> {
  return new Map(keys.map(([name, shape]) => [name, tensor(detValues(name, shape), shape)]));
}
