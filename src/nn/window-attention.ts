// Swin's (shifted) window multi-head self-attention, torchvision's ShiftedWindowAttention
// (models/swin_transformer.py, v1) with its names: qkv, proj, relative_position_bias_table
// ((2Wh−1)(2Ww−1), heads), relative_position_index (Wh·Ww·Wh·Ww, a buffer in the checkpoint;
// graft recomputes it from the window size, so a checkpoint may leave it out).
//
// x (B, H, W, C): pad H, W up to multiples of the window; roll by −shift; split into windows of
// N = Wh·Ww tokens; per window and head, softmax(q·d^−½ kᵀ + bias + mask) v; merge windows,
// roll back, crop. The mask (−100 between tokens from different regions of the rolled map) is
// torchvision's; the fused attention op has no bias or mask input, so this is written out with
// matmul and softmax.
import { Module } from './module.js';
import { Linear, type DerivedBuffer, type DerivesBuffers } from './layers.js';
import { tensor, zeros } from '../ops/creation.js';
import { add, mul } from '../ops/elementwise.js';
import { concat, pad, permute, reshape, select, slice, transpose, unsqueeze } from '../ops/layout.js';
import { matmul } from '../ops/matmul.js';
import { softmax } from '../ops/norm.js';
import { indexSelect } from '../ops/nn.js';
import { dtypeArray } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';

export type Window = [number, number];

/** For each query/key pair of a window, the row of the bias table for their offset (torchvision's relative_position_index). */
export function relativePositionIndex([wh, ww]: Window): Int32Array {
  const n = wh * ww;
  const out = new Int32Array(n * n);
  for (let p = 0; p < n; p++) {
    for (let q = 0; q < n; q++) {
      const dy = Math.floor(p / ww) - Math.floor(q / ww) + wh - 1;
      const dx = (p % ww) - (q % ww) + ww - 1;
      out[p * n + q] = dy * (2 * ww - 1) + dx;
    }
  }
  return out;
}

/** torch.roll(x, shift, axis): out[i] = x[(i − shift) mod n], as two slices joined. */
export function roll(x: Tensor, shift: number, axis: number): Tensor {
  const n = x.shape[axis]!;
  const s = ((shift % n) + n) % n;
  if (s === 0) return x;
  return concat([slice(x, axis, n - s), slice(x, axis, 0, n - s)], axis);
}

/** Python's a[start:stop] bounds for a length-n axis (negative counts from the end; −0 is 0). */
function pySlice(n: number, start: number, stop: number | null): [number, number] {
  const at = (i: number) => Math.min(Math.max(i < 0 ? n + i : i, 0), n);
  return [at(start), stop === null ? n : at(stop)];
}

/**
 * The additive mask of shifted windows, (nW, N, N): 0 between tokens of the same region of the
 * rolled map, −100 otherwise. Regions are numbered as torchvision's loop over the slices
 * (0, −window), (−window, −shift), (−shift, None) assigns them (later slices overwrite).
 */
export function shiftedWindowMask(padH: number, padW: number, [wh, ww]: Window, [sh, sw]: Window): Float32Array {
  const region = new Int32Array(padH * padW);
  const hSlices = [pySlice(padH, 0, -wh), pySlice(padH, -wh, -sh), pySlice(padH, -sh, null)];
  const wSlices = [pySlice(padW, 0, -ww), pySlice(padW, -ww, -sw), pySlice(padW, -sw, null)];
  let count = 0;
  for (const [h0, h1] of hSlices) {
    for (const [w0, w1] of wSlices) {
      for (let i = h0; i < h1; i++) for (let j = w0; j < w1; j++) region[i * padW + j] = count;
      count++;
    }
  }
  const gridW = padW / ww;
  const numWindows = (padH / wh) * gridW;
  const n = wh * ww;
  const tokenRegion = (win: number, t: number) => region[(Math.floor(win / gridW) * wh + Math.floor(t / ww)) * padW + (win % gridW) * ww + (t % ww)]!;
  const mask = new Float32Array(numWindows * n * n);
  for (let win = 0; win < numWindows; win++) {
    for (let p = 0; p < n; p++) {
      const rp = tokenRegion(win, p);
      for (let q = 0; q < n; q++) mask[(win * n + p) * n + q] = tokenRegion(win, q) === rp ? 0 : -100;
    }
  }
  return mask;
}

export class ShiftedWindowAttention extends Module implements DerivesBuffers {
  readonly derivedBuffers: Readonly<Record<string, DerivedBuffer>> = { relative_position_index: 'recomputed' };
  qkv: Linear;
  proj: Linear;
  relative_position_bias_table: Tensor;
  relative_position_index: Tensor;

  constructor(readonly dim: number, readonly windowSize: Window, readonly shiftSize: Window, readonly numHeads: number, opts: { qkvBias?: boolean; projBias?: boolean } = {}) {
    super();
    if (dim % numHeads !== 0) throw new Error(`ShiftedWindowAttention: dim ${dim} is not divisible by ${numHeads} heads`);
    this.qkv = this.module('qkv', new Linear(dim, 3 * dim, { bias: opts.qkvBias ?? true }));
    this.proj = this.module('proj', new Linear(dim, dim, { bias: opts.projBias ?? true }));
    const [wh, ww] = windowSize;
    this.relative_position_bias_table = this.param('relative_position_bias_table', zeros([(2 * wh - 1) * (2 * ww - 1), numHeads]));
    this.relative_position_index = this.buffer('relative_position_index', tensor(relativePositionIndex(windowSize), [wh * ww * wh * ww]));
  }

  /** (1, heads, N, N): the table's rows picked by the index. */
  relativePositionBias(): Tensor {
    const n = this.windowSize[0] * this.windowSize[1];
    const rows = indexSelect(this.relative_position_bias_table, 0, this.relative_position_index);
    return unsqueeze(permute(reshape(rows, [n, n, this.numHeads]), [2, 0, 1]), 0);
  }

  /** x (B, H, W, C) → (B, H, W, C). */
  forward(x: Tensor): Tensor {
    const [b, h, w, c] = x.shape as [number, number, number, number];
    const [wh, ww] = this.windowSize;
    const padB = (wh - (h % wh)) % wh;
    const padR = (ww - (w % ww)) % ww;
    const [ph, pw] = [h + padB, w + padR];
    // No shift along an axis that one window already covers.
    const sh = wh >= ph ? 0 : this.shiftSize[0];
    const sw = ww >= pw ? 0 : this.shiftSize[1];
    const shifted = sh + sw > 0;
    let t = padB || padR ? pad(x, [0, 0, 0, padR, 0, padB]) : x;
    if (shifted) t = roll(roll(t, -sh, 1), -sw, 2);

    const [gh, gw] = [ph / wh, pw / ww];
    const numWindows = gh * gw;
    const n = wh * ww;
    const heads = this.numHeads;
    const windows = reshape(permute(reshape(t, [b, gh, wh, gw, ww, c]), [0, 1, 3, 2, 4, 5]), [b * numWindows, n, c]);
    const qkv = permute(reshape(this.qkv.forward(windows), [b * numWindows, n, 3, heads, c / heads]), [2, 0, 3, 1, 4]);
    const q = mul(select(qkv, 0, 0), (c / heads) ** -0.5);
    let attn = add(matmul(q, transpose(select(qkv, 0, 1), -2, -1)), this.relativePositionBias());
    if (shifted) {
      const data = shiftedWindowMask(ph, pw, this.windowSize, [sh, sw]);
      const mask = tensor(x.dtype === 'float64' ? dtypeArray.float64.from(data) : data, [1, numWindows, 1, n, n], { backend: x.backend });
      attn = reshape(add(reshape(attn, [b, numWindows, heads, n, n]), mask), [b * numWindows, heads, n, n]);
    }
    const merged = reshape(transpose(matmul(softmax(attn, -1), select(qkv, 0, 2)), 1, 2), [b * numWindows, n, c]);
    const out = reshape(this.proj.forward(merged), [b, gh, gw, wh, ww, c]);
    let y = reshape(permute(out, [0, 1, 3, 2, 4, 5]), [b, ph, pw, c]);
    if (shifted) y = roll(roll(y, sh, 1), sw, 2);
    return padB || padR ? slice(slice(y, 1, 0, h), 2, 0, w) : y;
  }
}
