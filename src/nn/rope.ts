// 2-D axial rotary position embeddings as transformers' DINOv3ViTRopePositionEmbedding computes
// them (modeling_dinov3_vit.py, commit 015e6876):
//   inv_freq = 1 / θ^(arange(0, 1, 4/D))                           (D/4 frequencies, θ = rope_theta)
//   coords   = 2·(arange(0.5, n)/n) − 1 per axis, "ij" grid, rows (y, x)   (patch centres in [−1, 1])
//   angles   = 2π · coords[:, :, None] · inv_freq → (P, 2, D/4) → flatten (P, D/2) → tile(2) (P, D)
// and rotate-half RoPE on the patch tokens only: x·cos + rotate_half(x)·sin, rotate_half(x) =
// [−x₂, x₁]. The prefix tokens (CLS, registers) pass unchanged. Arithmetic is rounded to float32
// step by step as PyTorch does it.
import { tensor } from '../ops/creation.js';
import { add, mul, neg } from '../ops/elementwise.js';
import { concat, slice } from '../ops/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../backends/backend.js';
import type { DType } from '../tensor/dtype.js';
import { defaultGenerator, type Generator } from '../tensor/random.js';

const f32 = Math.fround;

/** inv_freq: 1 / θ^(i·4/D) for i < D/4, in float32. */
export function ropeInverseFrequencies(headDim: number, theta: number): Float32Array {
  if (headDim % 4 !== 0) throw new Error(`2-D RoPE needs a head width divisible by 4; got ${headDim}`);
  const step = 4 / headDim;
  return Float32Array.from({ length: headDim / 4 }, (_, i) => f32(1 / f32(Math.pow(theta, f32(i * step)))));
}

/** Patch-centre coordinates (h·w, 2) in [−1, 1], rows (y, x) in row-major patch order. */
export function patchCenterCoordinates(h: number, w: number): Float32Array {
  const axis = (n: number) => Float32Array.from({ length: n }, (_, i) => f32(f32(2 * f32((i + 0.5) / n)) - 1));
  const ys = axis(h);
  const xs = axis(w);
  const out = new Float32Array(h * w * 2);
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++) {
      out[2 * (i * w + j)] = ys[i]!;
      out[2 * (i * w + j) + 1] = xs[j]!;
    }
  return out;
}

/**
 * DINOv3's training-time coordinate augmentation: shift by U(−s, s) per axis, multiply by
 * exp(U(−log j, log j)) per axis, then by exp(U(−log r, log r)) for both axes.
 */
export interface RopeAugmentation {
  shift: number | null;
  jitter: number | null;
  rescale: number | null;
}

export function augmentCoordinates(coords: Float32Array, aug: RopeAugmentation, gen: Generator = defaultGenerator): Float32Array {
  const out = Float32Array.from(coords);
  const uniform = (lo: number, hi: number) => lo + (hi - lo) * gen.uniform();
  const apply = (f: (v: number, axis: number) => number) => {
    for (let i = 0; i < out.length; i++) out[i] = f32(f(out[i]!, i % 2));
  };
  if (aug.shift !== null) {
    const s = [uniform(-aug.shift, aug.shift), uniform(-aug.shift, aug.shift)];
    apply((v, a) => v + s[a]!);
  }
  if (aug.jitter !== null) {
    const r = Math.log(aug.jitter);
    const s = [Math.exp(uniform(-r, r)), Math.exp(uniform(-r, r))];
    apply((v, a) => v * s[a]!);
  }
  if (aug.rescale !== null) {
    const r = Math.log(aug.rescale);
    const s = Math.exp(uniform(-r, r));
    apply((v) => v * s);
  }
  return out;
}

/** cos and sin tables (P, D) for P patch coordinates (P, 2) and the given inverse frequencies. */
export function ropeTables(coords: Float32Array, invFreq: Float32Array, like?: { dtype: DType; backend: Backend<any> }): { cos: Tensor; sin: Tensor } {
  const quarter = invFreq.length;
  const d = 4 * quarter;
  const p = coords.length / 2;
  const cos = new Float32Array(p * d);
  const sin = new Float32Array(p * d);
  const twoPi = f32(2 * Math.PI);
  for (let t = 0; t < p; t++)
    for (let axis = 0; axis < 2; axis++) {
      const c = f32(twoPi * coords[2 * t + axis]!);
      for (let i = 0; i < quarter; i++) {
        const angle = f32(c * invFreq[i]!);
        const at = t * d + axis * quarter + i;
        cos[at] = cos[at + d / 2] = Math.cos(angle);
        sin[at] = sin[at + d / 2] = Math.sin(angle);
      }
    }
  const opts = { dtype: like?.dtype, backend: like?.backend };
  return { cos: tensor(cos, [p, d], opts), sin: tensor(sin, [p, d], opts) };
}

/** [x₁, x₂] → [−x₂, x₁] over the last axis. */
export function rotateHalf(x: Tensor): Tensor {
  const d = x.shape[x.rank - 1]!;
  return concat([neg(slice(x, -1, d / 2, d)), slice(x, -1, 0, d / 2)], -1);
}

/** RoPE on the last P tokens of x (B, H, N, D) with tables (P, D); the first N − P tokens are left as they are. */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const n = x.shape[x.rank - 2]!;
  const prefix = n - cos.shape[0]!;
  if (prefix < 0) throw new Error(`applyRope: ${cos.shape[0]} positions for only ${n} tokens`);
  const patches = slice(x, -2, prefix, n);
  const rotated = add(mul(patches, cos), mul(rotateHalf(patches), sin));
  return prefix === 0 ? rotated : concat([slice(x, -2, 0, prefix), rotated], -2);
}
