// Multi-head self-attention over tokens x (B, N, C) with H heads of width D = C/H, on the fused
// scaledDotProductAttention op. Two layouts of the projections, named like their checkpoints:
//   FusedQkvAttention  qkv (3C, C) rows [q; k; v], proj      (timm Attention; torchvision's
//                      MultiheadAttention in_proj_weight / out_proj after renaming)
//   QkvProjAttention   q_proj, k_proj, v_proj, o_proj        (transformers DINOv3ViTAttention)
// transformers' Dinov2 nesting (attention.attention.query/key/value, attention.output.dense)
// lives with the DINOv2 model and uses multiHeadAttention below.
import { Module } from './module.js';
import { Linear } from './layers.js';
import { scaledDotProductAttention } from '../ops/attention.js';
import { permute, reshape, select } from '../ops/layout.js';
import { applyRope } from './rope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Generator } from '../tensor/random.js';

/** (B, N, H·D) → (B, H, N, D). */
export function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, n, c] = x.shape as [number, number, number];
  return permute(reshape(x, [b, n, heads, c / heads]), [0, 2, 1, 3]);
}

/** (B, H, N, D) → (B, N, H·D). */
export function mergeHeads(x: Tensor): Tensor {
  const [b, h, n, d] = x.shape as [number, number, number, number];
  return reshape(permute(x, [0, 2, 1, 3]), [b, n, h * d]);
}

/** Rotary tables (P, D) for the last P tokens (see rope.ts). */
export interface RopeTables {
  cos: Tensor;
  sin: Tensor;
}

/**
 * softmax(q kᵀ / √D) v per head for projected q, k, v (B, N, C) → (B, N, C); with `rope`, the
 * per-head q and k of the last P tokens are rotated first.
 */
export function multiHeadAttention(q: Tensor, k: Tensor, v: Tensor, heads: number, rope?: RopeTables): Tensor {
  let qh = splitHeads(q, heads);
  let kh = splitHeads(k, heads);
  if (rope) {
    qh = applyRope(qh, rope.cos, rope.sin);
    kh = applyRope(kh, rope.cos, rope.sin);
  }
  return mergeHeads(scaledDotProductAttention(qh, kh, splitHeads(v, heads)));
}

function checkHeads(dim: number, heads: number): void {
  if (!Number.isInteger(heads) || heads <= 0 || dim % heads !== 0) throw new Error(`attention: width ${dim} is not divisible by ${heads} heads`);
}

/** timm's Attention: one qkv projection whose output rows are [q; k; v], then proj. */
export class FusedQkvAttention extends Module {
  qkv: Linear;
  proj: Linear;
  constructor(readonly dim: number, readonly numHeads: number, opts: { qkvBias?: boolean; projBias?: boolean; generator?: Generator } = {}) {
    super();
    checkHeads(dim, numHeads);
    this.qkv = this.module('qkv', new Linear(dim, 3 * dim, { bias: opts.qkvBias ?? true, generator: opts.generator }));
    this.proj = this.module('proj', new Linear(dim, dim, { bias: opts.projBias ?? true, generator: opts.generator }));
  }
  /** x (B, N, C) → (B, N, C). */
  forward(x: Tensor): Tensor {
    const [b, n] = x.shape as [number, number];
    const d = this.dim / this.numHeads;
    // (B, N, 3C) → (3, B, H, N, D), as timm's reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4).
    const qkv = permute(reshape(this.qkv.forward(x), [b, n, 3, this.numHeads, d]), [2, 0, 3, 1, 4]);
    const out = scaledDotProductAttention(select(qkv, 0, 0), select(qkv, 0, 1), select(qkv, 0, 2));
    return this.proj.forward(mergeHeads(out));
  }
}

export interface QkvProjBias {
  query?: boolean;
  key?: boolean;
  value?: boolean;
  proj?: boolean;
}

/** Separate q_proj / k_proj / v_proj and an output o_proj, each with its own bias switch. */
export class QkvProjAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  constructor(readonly dim: number, readonly numHeads: number, bias: QkvProjBias = {}, generator?: Generator) {
    super();
    checkHeads(dim, numHeads);
    const lin = (on: boolean | undefined) => new Linear(dim, dim, { bias: on ?? true, generator });
    this.q_proj = this.module('q_proj', lin(bias.query));
    this.k_proj = this.module('k_proj', lin(bias.key));
    this.v_proj = this.module('v_proj', lin(bias.value));
    this.o_proj = this.module('o_proj', lin(bias.proj));
  }
  /** x (B, N, C) → (B, N, C); with RoPE tables (P, D), q and k of the last P tokens are rotated. */
  forward(x: Tensor, ropeCos?: Tensor, ropeSin?: Tensor): Tensor {
    const rope = ropeCos && ropeSin ? { cos: ropeCos, sin: ropeSin } : undefined;
    return this.o_proj.forward(multiHeadAttention(this.q_proj.forward(x), this.k_proj.forward(x), this.v_proj.forward(x), this.numHeads, rope));
  }
}
