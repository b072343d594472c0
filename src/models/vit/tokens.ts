// Pieces every ViT here shares: image → patch tokens, pooling tokens for the head, and a
// numbered list of blocks with PyTorch's ModuleList names (`blocks.0`, `layer.0`, …).
import { Module } from '../../nn/module.js';
import { ModuleDict, type Conv2d } from '../../nn/layers.js';
import { concat, reshape, select, slice, transpose } from '../../ops/layout.js';
import { mean } from '../../ops/reduce.js';
import type { Tensor } from '../../tensor/tensor.js';
import { ShapeError } from '../../tensor/shape.js';
import type { TokenPool } from './configs.js';

/** x (B, C_in, H, W) → patch tokens (B, h·w, C) with the (h, w) grid, h = ⌊H/p⌋, w = ⌊W/p⌋. */
export function patchTokens(proj: Conv2d, x: Tensor): { tokens: Tensor; grid: [number, number] } {
  if (x.rank !== 4) throw new ShapeError(`ViT input must be images (B, C, H, W); got ${x.describe()}`);
  const [p] = proj.kernelSize;
  if (x.shape[1] !== proj.inChannels || x.shape[2]! < p || x.shape[3]! < p) {
    throw new ShapeError(`ViT input ${x.describe()} needs ${proj.inChannels} channels and sides of at least the patch size ${p}`);
  }
  const fmap = proj.forward(x);
  const [b, c, h, w] = fmap.shape as [number, number, number, number];
  return { tokens: transpose(reshape(fmap, [b, c, h * w]), 1, 2), grid: [h, w] };
}

/** Tokens (B, N, C) with `prefix` leading tokens (CLS, registers) → pooled (B, C) or (B, 2C) for 'cls+mean'. */
export function poolTokens(tokens: Tensor, pool: TokenPool, prefix: number): Tensor {
  const cls = () => select(tokens, 1, 0);
  const patchMean = () => mean(slice(tokens, 1, prefix), 1);
  if (pool === 'cls') return cls();
  if (pool === 'mean') return patchMean();
  return concat([cls(), patchMean()], 1);
}

/**
 * The blocks whose outputs dense heads read: the last for 1 level; for 4, the blocks ending each
 * quarter of the depth (2, 5, 8, 11 of 12, as mmsegmentation's ViT out_indices).
 */
export function featureBlocks(depth: number, levels: 1 | 4): number[] {
  if (levels === 1) return [depth - 1];
  return [1, 2, 3, 4].map((k) => Math.max(0, Math.round((k * depth) / 4) - 1));
}

/** Tokens (B, prefix + h·w, C) → the patch tokens as a map (B, C, h, w). */
export function tokensToMap(tokens: Tensor, prefix: number, grid: [number, number]): Tensor {
  const [b, , c] = tokens.shape as [number, number, number];
  return reshape(transpose(slice(tokens, 1, prefix), 1, 2), [b, c, grid[0], grid[1]]);
}

/** Blocks registered as `0`, `1`, … under one parent, like torch.nn.ModuleList. */
export function blockList<M extends Module>(blocks: M[]): ModuleDict<M> {
  return new ModuleDict(Object.fromEntries(blocks.map((b, i) => [String(i), b])));
}

/** The blocks in order, read from the registered children (so setModule replacements are seen). */
export function blocksOf<M extends Module>(list: ModuleDict<M>): M[] {
  return list.children().map(([, m]) => m as M);
}

