// The arithmetic of products with frozen weights (`--precision`): float32, or bf16 operands with
// float32 accumulation and outputs. Under bf16 a frozen Linear weight is packed once as bf16 for
// the forward product and once more for the gradient to the input; trainable parameters, their
// gradients and optimizer state stay float32, and so do products of two activations (attention)
// and of trainable weights. A 4-bit weight is dequantised straight to bf16. Where the backend has
// no bf16 kernels on this CPU (no AVX512_BF16), products stay float32 (bf16Unavailable says so).
//
// The bf16 copies are made on first use inside withComputePrecision and freed when it ends; a
// frozen weight must not be changed in place inside it (training and evaluating a run do not).
import type { Backend, ComputePrecision } from '../backends/backend.js';
import { currentBackend } from '../tensor/device.js';
import type { Tensor } from '../tensor/tensor.js';
import { thenFinally, type WeightPacks } from './util.js';

let precision: ComputePrecision = 'fp32';
let frozen: Map<Tensor, WeightPacks> | null = null;

export function computePrecision(): ComputePrecision {
  return precision;
}

/** Whether products with frozen weights on `backend` run in bf16 now. */
export function bf16Active(backend: Backend<any>): boolean {
  return precision === 'bf16' && backend.bf16Supported?.() === true;
}

/** Why bf16 would compute in float32 on `backend` (null: it runs in bf16). */
export function bf16Unavailable(backend: Backend<any> = currentBackend()): string | null {
  if (typeof backend.bf16Supported !== 'function') return `the ${backend.name} backend has no bf16 kernels; products run in fp32`;
  if (!backend.bf16Supported()) return 'this CPU has no AVX512_BF16 instructions; products run in fp32';
  return null;
}

/**
 * Where the bf16 copies of frozen weight `w` are kept in the current scope, or null: not under
 * bf16, a trainable weight, or one the backend does not pack.
 */
export function frozenWeightPacks(w: Tensor): WeightPacks | null {
  if (!frozen || w.requiresGrad || w.rank !== 2 || !w.isDense() || !bf16Active(w.backend) || typeof w.backend.matmulPack !== 'function') return null;
  let packs = frozen.get(w);
  if (!packs) frozen.set(w, (packs = new Map()));
  return packs;
}

/**
 * Runs `fn` (or the promise it returns) with products of frozen weights in `p`, then frees the
 * copies made for it. Nested scopes take the outer one's cache and their own precision.
 */
export function withComputePrecision<T>(p: ComputePrecision, fn: () => T): T {
  const before = precision;
  const owner = frozen === null;
  if (owner) frozen = new Map();
  precision = p;
  const done = () => {
    precision = before;
    if (owner && frozen) {
      for (const packs of frozen.values()) for (const t of packs.values()) t?.dispose();
      frozen = null;
    }
  };
  return thenFinally(fn, done);
}
