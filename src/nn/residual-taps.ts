// Residual taps: the points of a block, right after a residual add, where a module may rewrite
// the stream (Mona's insertion points). A block that has them computes its plain forward as its
// tapped forward with the identity tap, so a wrapper (an adapter layer around the block) inserts
// modules there without the block knowing what they are:
//   Swin       after x + attn(norm1 x) and after x + mlp(norm2 x)   stream (B, H, W, C)
//   ViTs       the same two points                                 stream (B, P + h·w, C)
//   ConvNeXt   after the block's residual add                      stream (B, C, H, W)
// The layout says how the stream maps onto the spatial grid, so a tap can run convolutions on it.
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from './module.js';

export type StreamLayout =
  /** (B, H, W, C): a channels-last map (Swin's stages). */
  | { kind: 'channels-last' }
  /** (B, C, H, W): a channels-first map (ConvNeXt's stages). */
  | { kind: 'channels-first' }
  /** (B, prefix + h·w, C): `prefix` leading tokens (class, registers), then the patch tokens row by row. */
  | { kind: 'tokens'; prefix: number; grid: [number, number] };

/** What a tap sees: which point (0-based, in forward order), the stream and its layout. */
export type Tap = (point: number, x: Tensor, layout: StreamLayout) => Tensor;

export const IDENTITY_TAP: Tap = (_point, x) => x;

export interface TappedBlock extends Module {
  /** Names of the points in forward order ('attn', 'mlp'; ConvNeXt: 'block'). */
  readonly tapPoints: readonly string[];
  /** The stream's width C at every point. */
  readonly tapChannels: number;
  /** The block's forward with `tap` applied at each point; `rest` are the block's own extra inputs (DINOv3's RoPE tables). */
  forwardTapped(tap: Tap, x: Tensor, ...rest: Tensor[]): Tensor;
}

export function isTappedBlock(m: Module): m is TappedBlock {
  const b = m as unknown as Partial<TappedBlock>;
  return Array.isArray(b.tapPoints) && typeof b.tapChannels === 'number' && typeof b.forwardTapped === 'function';
}

/**
 * The patch grid of a ViT's current input, shared by the model (which sets it before its blocks
 * run) and its blocks (which report it in their layout): the token count alone does not give the
 * grid of a non-square input.
 */
export class TokenGrid {
  grid: [number, number];
  constructor(readonly prefix: number, grid: [number, number]) {
    this.grid = grid;
  }
  layout(): StreamLayout {
    return { kind: 'tokens', prefix: this.prefix, grid: this.grid };
  }
}
