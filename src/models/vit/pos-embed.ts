// Resampling learned position embeddings to another patch grid, in each family's own way:
//   'bicubic-antialias'      timm resample_abs_pos_embed (F.interpolate(size=, bicubic,
//                            antialias=True)) and transformers Dinov2WithRegisters
//   'bicubic'                transformers Dinov2 interpolate_pos_encoding (size=, bicubic,
//                            align_corners=False, no antialias; the stored commit 015e6876 passes
//                            size=, not the older scale_factor with the +0.1 offset)
//   'bicubic-align-corners'  torchvision interpolate_embeddings (size=, bicubic, align_corners=True)
// Grids are row-major (h, w) patch tokens after the prefix tokens (CLS), as all three store them.
import { tensor } from '../../ops/creation.js';
import { concat, permute, reshape, slice } from '../../ops/layout.js';
import { matmul } from '../../ops/matmul.js';
import { interpolate } from '../../ops/nn.js';
import type { Tensor } from '../../tensor/tensor.js';

export type PosEmbedResize = 'bicubic' | 'bicubic-antialias' | 'bicubic-align-corners';

// PIL's bicubic filter (a = −0.5), which PyTorch's antialiased kernels use
// (aten/src/ATen/native/cpu/UpSampleKernel.cpp, HelperInterpCubic::aa_filter).
function cubicFilterA05(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/**
 * The (out, in) matrix of PyTorch's antialiased bicubic resize along one axis
 * (_upsample_bicubic2d_aa, align_corners=False): for output i, centre c = s·(i + 0.5) with
 * s = in/out, support 2·max(s, 1), taps j ∈ [⌊c − support + 0.5⌋, ⌊c + support + 0.5⌋) ∩ [0, in),
 * weight filter((j − c + 0.5)/max(s, 1)), normalised to sum 1.
 */
export function antialiasBicubicMatrix(inSize: number, outSize: number): Float32Array {
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1);
  const invScale = scale >= 1 ? 1 / scale : 1;
  const m = new Float32Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w: number[] = [];
    for (let j = lo; j < hi; j++) w.push(cubicFilterA05((j - center + 0.5) * invScale));
    const total = w.reduce((p, c) => p + c, 0);
    w.forEach((v, k) => (m[i * inSize + lo + k] = total !== 0 ? v / total : v));
  }
  return m;
}

/** Resizes a grid of tokens (G_h, G_w, C) to (H, W, C) with the given method. */
export function resizeTokenGrid(grid: Tensor, size: readonly [number, number], method: PosEmbedResize): Tensor {
  const [gh, gw, c] = grid.shape as [number, number, number];
  const [h, w] = size;
  if (gh === h && gw === w) return grid;
  if (method === 'bicubic-antialias') {
    // Separable: rows then columns, each a matrix product (so the gradient is the transpose).
    const rows = tensor(antialiasBicubicMatrix(gh, h), [h, gh], { dtype: grid.dtype, backend: grid.backend });
    const cols = tensor(antialiasBicubicMatrix(gw, w), [w, gw], { dtype: grid.dtype, backend: grid.backend });
    const byRows = reshape(matmul(rows, reshape(grid, [gh, gw * c])), [h, gw, c]);
    return matmul(cols, byRows);
  }
  const nchw = permute(reshape(grid, [1, gh, gw, c]), [0, 3, 1, 2]);
  const out = interpolate(nchw, { size: [h, w], mode: 'bicubic', alignCorners: method === 'bicubic-align-corners' });
  return permute(reshape(out, [c, h, w]), [1, 2, 0]);
}

/**
 * Position embeddings (1, P + G_h·G_w, C) with P prefix tokens → (1, P + H·W, C) for an (H, W)
 * patch grid; the prefix rows are kept.
 */
export function resamplePosEmbed(posEmbed: Tensor, prefixTokens: number, from: readonly [number, number], to: readonly [number, number], method: PosEmbedResize): Tensor {
  const [one, n, c] = posEmbed.shape as [number, number, number];
  if (one !== 1 || n !== prefixTokens + from[0] * from[1]) {
    throw new Error(`position embeddings ${posEmbed.describe()} do not hold ${prefixTokens} prefix tokens and a ${from[0]}×${from[1]} grid`);
  }
  if (from[0] === to[0] && from[1] === to[1]) return posEmbed;
  const grid = reshape(slice(posEmbed, 1, prefixTokens, n), [from[0], from[1], c]);
  const resized = reshape(resizeTokenGrid(grid, to, method), [1, to[0] * to[1], c]);
  return prefixTokens ? concat([slice(posEmbed, 1, 0, prefixTokens), resized], 1) : resized;
}

/** The side of a square grid of `count` tokens (checkpoints store square grids). */
export function squareGrid(count: number, what: string): [number, number] {
  const side = Math.round(Math.sqrt(count));
  if (side * side !== count) throw new Error(`${what}: ${count} patch positions are not a square grid`);
  return [side, side];
}
