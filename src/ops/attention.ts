// Scaled-dot-product attention: one fused kernel forward and backward (the native backend's is
// flash-style; the reference backend's is the plain definition).
import { inferenceKernels, needsGrad } from '../tensor/autograd.js';
import { fmt, numel, ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { denseData, permute } from './layout.js';
import { record } from './table.js';
import { alloc, backendOf, expectFloat } from './util.js';

export interface AttentionOptions {
  /** Defaults to 1/sqrt(D). */
  scale?: number;
  causal?: boolean;
  /**
   * Keep the (B, N, M) probabilities for the backward pass instead of recomputing them there:
   * faster backward, more memory held until it runs. Default: kept when a gradient will be
   * needed and they take at most SAVED_PROBS_BYTES (ViT-B/16 at 224² holds 15 MB per layer at batch 8).
   */
  saveProbs?: boolean;
}

/** Largest probability tensor kept for the backward pass by default (bytes). */
export const SAVED_PROBS_BYTES = 32 << 20;

/**
 * softmax(q kᵀ · scale) v over the last two axes: q (…, N, D), k and v (…, M, D), leading axes
 * (batch, heads) equal. Like torch.nn.functional.scaled_dot_product_attention without a mask.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  expectFloat('attention', q, 'q');
  if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank) throw new ShapeError(`attention: q, k, v must have the same rank ≥ 2; got ${fmt(q.shape)}, ${fmt(k.shape)}, ${fmt(v.shape)}`);
  const lead = q.shape.slice(0, -2);
  const [n, d] = q.shape.slice(-2) as [number, number];
  const [m, dk] = k.shape.slice(-2) as [number, number];
  if (dk !== d || v.shape[v.rank - 2] !== m || v.shape[v.rank - 1] !== d || k.shape.slice(0, -2).some((x, i) => x !== lead[i]) || v.shape.slice(0, -2).some((x, i) => x !== lead[i])) {
    throw new ShapeError(`attention: expected q (…, N, D), k (…, M, D), v (…, M, D) with equal leading axes; got q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`);
  }
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new ShapeError(`attention: q, k, v dtypes differ: ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  const backend = backendOf('attention', q, k, v);
  const p = { batch: numel(lead), n, m, d, scale: opts.scale ?? 1 / Math.sqrt(d), causal: opts.causal ?? false };
  if (q.rank === 4 && q.dtype === 'float32' && backend.attentionStrided && inferenceKernels() && [q, k, v].every((t) => t.strides[3] === 1)) {
    // Inference on the views as they are (a qkv projection's heads), the output written (B, N, H, D)
    // and returned as its (B, H, N, D) view, so merging the heads back needs no copy either.
    const [b, h] = lead as [number, number];
    const merged = alloc(backend, [b, n, h, d], q.dtype);
    const out = permute(merged, [0, 2, 1, 3]);
    merged.dispose();
    backend.attentionStrided(q.view(), k.view(), v.view(), out.view(), q.dtype, { ...p, heads: h });
    return out;
  }
  const [qd, kd, vd] = [denseData(q), denseData(k), denseData(v)];
  const out = alloc(backend, q.shape, q.dtype);
  const lse = alloc(backend, [p.batch, n], q.dtype);
  const grad = needsGrad([q, k, v]);
  const keep = grad && (opts.saveProbs ?? p.batch * n * m * 4 <= SAVED_PROBS_BYTES);
  const probs = keep ? alloc(backend, [p.batch, n, m], q.dtype) : null;
  backend.attention(qd.buf(), kd.buf(), vd.buf(), out.buf(), lse.buf(), probs?.buf() ?? null, q.dtype, p);
  record(out, 'scaledDotProductAttention', [q, k, v], [qd, kd, vd, out, lse, ...(probs ? [probs] : [])], (gy, [qs, ks, vs, os, ls, ps]) => {
    const g = denseData(gy);
    const gq = alloc(backend, q.shape, q.dtype);
    const gk = alloc(backend, k.shape, q.dtype);
    const gv = alloc(backend, v.shape, q.dtype);
    backend.attentionBackward(qs!.buf(), ks!.buf(), vs!.buf(), os!.buf(), ls!.buf(), ps?.buf() ?? null, g.buf(), gq.buf(), gk.buf(), gv.buf(), q.dtype, p);
    return [gq, gk, gv];
  });
  for (const [dd, o] of [[qd, q], [kd, k], [vd, v]] as const) if (dd !== o) dd.dispose();
  lse.dispose();
  probs?.dispose();
  return out;
}
