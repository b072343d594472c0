// OFT's rotation from its parameters, as huggingface/peft's tuners/oft/layer.py
// (OFTRotationModule) computes it: each stored block's b(b−1)/2 values fill the upper triangle
// of a skew-symmetric Q (row-major, torch.triu_indices order), and the Cayley transform makes it
// orthogonal: exactly, R = (I − Q)(I + Q)⁻¹, or by PEFT's truncated Neumann series
// R = I + 2Q + 2Q² + … + 2Q^(n−2) + Q^(n−1) (at least up to Q³; its default, n = 5).
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { add, affine, div, gt, mul, sub, where } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { assign, concat, expand, permute, reshape, transpose } from '../../ops/layout.js';
import { tensor, zeros } from '../../ops/creation.js';
import { indexSelect } from '../../ops/nn.js';
import { norm } from '../../ops/reduce.js';

/** Index into [v, −v, 0] (length 2n + 1) for each entry of a b×b block: Q[i, j] = v_k (i < j), −v_k (i > j), 0 (i = j). */
function skewIndex(b: number): Int32Array {
  const n = (b * (b - 1)) / 2;
  const upper = new Int32Array(b * b);
  let k = 0;
  for (let i = 0; i < b; i++) for (let j = i + 1; j < b; j++) upper[i * b + j] = k++;
  const idx = new Int32Array(b * b);
  for (let i = 0; i < b; i++)
    for (let j = 0; j < b; j++) idx[i * b + j] = i < j ? upper[i * b + j]! : i > j ? n + upper[j * b + i]! : 2 * n;
  return idx;
}

const indexCache = new Map<number, Int32Array>();

/** The skew-symmetric blocks Q (D, b, b) of parameters v (D, b(b−1)/2). */
export function skewSymmetric(v: Tensor, b: number): Tensor {
  let idx = indexCache.get(b);
  if (!idx) indexCache.set(b, (idx = skewIndex(b)));
  const D = v.shape[0]!;
  const table = concat([v, affine(v, -1), zeros([D, 1], { dtype: v.dtype, backend: v.backend })], 1);
  return reshape(indexSelect(table, 1, tensor(idx, [b * b], { backend: v.backend })), [D, b, b]);
}

function identity(b: number, like: Tensor): Tensor {
  const eye = new Float32Array(b * b);
  for (let i = 0; i < b; i++) eye[i * b + i] = 1;
  return tensor(eye, [b, b], { dtype: like.dtype, backend: like.backend });
}

/** PEFT's Cayley–Neumann series with `terms` terms (OFTRotationModule._cayley_batch). */
export function cayleyNeumann(q: Tensor, terms: number): Tensor {
  const [D, b] = q.shape as [number, number];
  const eye = identity(b, q);
  if (terms <= 1) return expand(eye, [D, b, b]);
  let r = add(eye, affine(q, 2));
  if (terms <= 2) return r;
  let power = matmul(q, q);
  r = add(r, affine(power, 2));
  for (let i = 3; i < terms - 1; i++) {
    power = matmul(power, q);
    r = add(r, affine(power, 2));
  }
  return add(r, matmul(power, q));
}

/**
 * The exact Cayley transform R = (I − Q)(I + Q)⁻¹ = 2M − I with M = (I + Q)⁻¹, inverted on the
 * host in float64 (blocks are small). Its gradient enters through R₀ − 2 M₀ (Q − sg(Q)) M₀,
 * which has R's value (the difference is exactly zero) and R's derivative, dR = −2 M dQ M.
 */
export function cayleyExact(q: Tensor): Tensor {
  const [D, b] = q.shape as [number, number];
  const qv = q.toArray();
  const onePlusQ = new Float64Array(D * b * b);
  for (let i = 0; i < onePlusQ.length; i++) onePlusQ[i] = qv[i]! + ((i % (b * b)) % (b + 1) === 0 ? 1 : 0);
  const m = invertBlocks(onePlusQ, D, b);
  const r0 = new Float32Array(D * b * b);
  for (let i = 0; i < r0.length; i++) r0[i] = 2 * m[i]! - ((i % (b * b)) % (b + 1) === 0 ? 1 : 0);
  const opts = { dtype: q.dtype, backend: q.backend };
  const M = tensor(Float32Array.from(m), [D, b, b], opts);
  const R = tensor(r0, [D, b, b], opts);
  return sub(R, affine(matmul(matmul(M, sub(q, q.detach())), M), 2));
}

/** Inverts each b×b block of `a` (D blocks, row-major) by Gauss–Jordan elimination with partial pivoting, in float64. */
export function invertBlocks(a: ArrayLike<number>, D: number, b: number): Float64Array {
  const out = new Float64Array(D * b * b);
  const w = new Float64Array(b * 2 * b);
  for (let d = 0; d < D; d++) {
    for (let i = 0; i < b; i++) {
      for (let j = 0; j < b; j++) {
        w[i * 2 * b + j] = a[d * b * b + i * b + j]!;
        w[i * 2 * b + b + j] = i === j ? 1 : 0;
      }
    }
    for (let c = 0; c < b; c++) {
      let p = c;
      for (let i = c + 1; i < b; i++) if (Math.abs(w[i * 2 * b + c]!) > Math.abs(w[p * 2 * b + c]!)) p = i;
      const pivot = w[p * 2 * b + c]!;
      if (Math.abs(pivot) < 1e-12) throw new Error(`OFT: block ${d} of the rotation is singular, so it cannot be inverted (its parameters have diverged)`);
      if (p !== c) for (let j = 0; j < 2 * b; j++) [w[p * 2 * b + j], w[c * 2 * b + j]] = [w[c * 2 * b + j]!, w[p * 2 * b + j]!];
      for (let j = 0; j < 2 * b; j++) w[c * 2 * b + j]! /= pivot;
      for (let i = 0; i < b; i++) {
        if (i === c) continue;
        const f = w[i * 2 * b + c]!;
        if (f !== 0) for (let j = 0; j < 2 * b; j++) w[i * 2 * b + j]! -= f * w[c * 2 * b + j]!;
      }
    }
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) out[d * b * b + i * b + j] = w[i * 2 * b + b + j]!;
  }
  return out;
}

/**
 * COFT's projection (PEFT's _project_batch), in place: a block whose skew-symmetric matrix has
 * Frobenius norm above eps/√D is scaled onto that radius (‖Q‖_F = √2 ‖v‖ for its D·n values).
 */
export function projectCoft(v: Tensor, eps: number): void {
  noGrad(() => {
    const radius = eps / Math.sqrt(v.shape[0]!);
    const frob = affine(norm(v, 1, { keepDims: true }), Math.SQRT2);
    const outside = gt(frob, radius);
    assign(v, mul(v, where(outside, div(radius, where(outside, frob, 1)), 1)));
  });
}

/** W Rᵀ applied blockwise to the flattened fan-in of W (out, F = blocks·b): W'[o, k, i] = Σ_j W[o, k, j] R[k, i, j]; R (blocks or 1, b, b). */
export function rotateWeight(w: Tensor, r: Tensor, blocks: number): Tensor {
  const out = w.shape[0]!;
  const b = r.shape[1]!;
  const perBlock = permute(reshape(w, [out, blocks, b]), [1, 0, 2]);
  return reshape(permute(matmul(perBlock, transpose(r, 1, 2)), [1, 0, 2]), w.shape);
}

/** PEFT's adjust_oft_parameters: the divisor of `features` nearest to `wanted` (the lower one on a tie). */
export function adjustToDivisor(features: number, wanted: number): number {
  if (wanted >= features) return features;
  let higher = wanted;
  while (higher <= features && features % higher !== 0) higher++;
  let lower = wanted;
  while (lower > 1 && features % lower !== 0) lower--;
  return wanted - lower <= higher - wanted ? lower : higher;
}

export function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}
