// Gather/scatter and image resampling kernels of the reference backend.
import type { InterpParams } from '../backend.js';
import type { TypedArray } from '../../tensor/dtype.js';

export function indexSelect(x: TypedArray, idx: TypedArray, out: TypedArray, outer: number, len: number, inner: number, count: number): void {
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < count; c++) {
      const src = (o * len + idx[c]!) * inner;
      const dst = (o * count + c) * inner;
      for (let i = 0; i < inner; i++) out[dst + i] = x[src + i]!;
    }
}

export function indexAdd(gy: TypedArray, idx: TypedArray, gx: TypedArray, outer: number, len: number, inner: number, count: number): void {
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < count; c++) {
      const dst = (o * len + idx[c]!) * inner;
      const src = (o * count + c) * inner;
      for (let i = 0; i < inner; i++) gx[dst + i] = gx[dst + i]! + gy[src + i]!;
    }
}

// Bicubic convolution kernel with A = -0.75, as PyTorch and OpenCV use.
const A = -0.75;
const cubic1 = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
const cubic2 = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;

/** Taps (input indices, clamped) and weights of one output coordinate, following PyTorch's upsample kernels. */
export function interpTaps(outIdx: number, inSize: number, outSize: number, p: InterpParams, scaleOverride: number | undefined): { idx: number[]; wt: number[] } {
  let src: number;
  if (p.alignCorners) {
    src = outSize > 1 ? (outIdx * (inSize - 1)) / (outSize - 1) : 0;
  } else {
    const scale = scaleOverride ?? inSize / outSize;
    src = scale * (outIdx + 0.5) - 0.5;
    if (p.mode === 'bilinear' && src < 0) src = 0;
  }
  const clampI = (i: number) => Math.min(Math.max(i, 0), inSize - 1);
  const i0 = Math.floor(src);
  const t = src - i0;
  if (p.mode === 'bilinear') {
    const lo = Math.min(i0, inSize - 1);
    const hi = Math.min(lo + 1, inSize - 1);
    return { idx: [lo, hi], wt: [1 - t, t] };
  }
  return { idx: [clampI(i0 - 1), clampI(i0), clampI(i0 + 1), clampI(i0 + 2)], wt: [cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)] };
}

function forEachTap(p: InterpParams, visit: (yi: number, xi: number, w: number) => void): void {
  const rows = Array.from({ length: p.outH }, (_, i) => interpTaps(i, p.h, p.outH, p, p.scaleH));
  const cols = Array.from({ length: p.outW }, (_, j) => interpTaps(j, p.w, p.outW, p, p.scaleW));
  for (let pl = 0; pl < p.n * p.c; pl++)
    for (let oh = 0; oh < p.outH; oh++)
      for (let ow = 0; ow < p.outW; ow++) {
        const r = rows[oh]!;
        const c = cols[ow]!;
        const yi = (pl * p.outH + oh) * p.outW + ow;
        for (let a = 0; a < r.idx.length; a++)
          for (let b = 0; b < c.idx.length; b++) visit(yi, (pl * p.h + r.idx[a]!) * p.w + c.idx[b]!, r.wt[a]! * c.wt[b]!);
      }
}

export function interpolate(x: TypedArray, y: TypedArray, p: InterpParams): void {
  y.fill(0, 0, p.n * p.c * p.outH * p.outW);
  forEachTap(p, (yi, xi, w) => {
    y[yi] = y[yi]! + w * x[xi]!;
  });
}

export function interpolateBackward(gy: TypedArray, gx: TypedArray, p: InterpParams): void {
  gx.fill(0, 0, p.n * p.c * p.h * p.w);
  forEachTap(p, (yi, xi, w) => {
    gx[xi] = gx[xi]! + w * gy[yi]!;
  });
}
