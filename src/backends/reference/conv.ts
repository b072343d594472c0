// Convolution and pooling of the reference backend, NCHW: direct loops, the definition.
import type { ConvParams, PoolParams } from '../backend.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { roundBf16Array } from '../../tensor/bf16.js';

/** The operands of a convolution as it computes them: under p.bf16, copies rounded to bf16 (the arithmetic stays float32/64). */
export function bf16Operands(p: ConvParams, a: TypedArray, w: TypedArray): [TypedArray, TypedArray] {
  if (!p.bf16) return [a, w];
  if (!(a instanceof Float32Array || a instanceof Float64Array) || !(w instanceof Float32Array || w instanceof Float64Array)) throw new Error('a bf16 convolution takes float operands');
  return [roundBf16Array(a), roundBf16Array(w)];
}

/** (N, C, H, W) ↔ (N, H, W, C): `toNhwc` reads NCHW `src` into NHWC `dst`, else the reverse. */
function relayout(src: TypedArray, dst: TypedArray, n: number, c: number, hw: number, toNhwc: boolean): void {
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let i = 0; i < hw; i++) {
        const nchw = (b * c + ch) * hw + i, nhwc = (b * hw + i) * c + ch;
        if (toNhwc) dst[nhwc] = src[nchw]!;
        else dst[nchw] = src[nhwc]!;
      }
}

/** A zeroed array of `like`'s type and `n` elements. */
const arrayLike = (like: TypedArray, n: number) => new (like.constructor as new (n: number) => TypedArray)(n);

/** conv2d with x and y in the layouts p.srcNhwc / p.dstNhwc name: the NCHW definition between two relayouts. */
export function conv2dLayouts(x: TypedArray, w: TypedArray, bias: TypedArray | null, y: TypedArray, p: ConvParams): void {
  if (!p.srcNhwc && !p.dstNhwc) return conv2d(x, w, bias, y, p);
  let xs = x;
  if (p.srcNhwc) {
    xs = arrayLike(x, x.length);
    relayout(x, xs, p.n, p.cIn, p.h * p.w, false);
  }
  const ys = p.dstNhwc ? arrayLike(y, y.length) : y;
  conv2d(xs, w, bias, ys, p);
  if (p.dstNhwc) relayout(ys, y, p.n, p.cOut, p.outH * p.outW, true);
}

/** maxPool2d with x and y channels-last when p.nhwc says so (arg then written for the NCHW result, unused). */
export function maxPool2dLayouts(x: TypedArray, y: TypedArray, arg: TypedArray, p: PoolParams): void {
  if (!p.nhwc) return maxPool2d(x, y, arg, p);
  const xs = arrayLike(x, x.length);
  relayout(x, xs, p.n, p.c, p.h * p.w, false);
  const ys = arrayLike(y, y.length);
  maxPool2d(xs, ys, arg, p);
  relayout(ys, y, p.n, p.c, p.outH * p.outW, true);
}

// x (N, Cin, H, W), w (Cout, Cin/G, KH, KW), y (N, Cout, OH, OW)
export function conv2d(x: TypedArray, w: TypedArray, bias: TypedArray | null, y: TypedArray, p: ConvParams): void {
  const cinG = p.cIn / p.groups;
  const coutG = p.cOut / p.groups;
  for (let b = 0; b < p.n; b++) {
    for (let co = 0; co < p.cOut; co++) {
      const g = Math.floor(co / coutG);
      for (let oh = 0; oh < p.outH; oh++) {
        for (let ow = 0; ow < p.outW; ow++) {
          let acc = bias ? bias[co]! : 0;
          for (let ci = 0; ci < cinG; ci++) {
            const xc = g * cinG + ci;
            for (let i = 0; i < p.kh; i++) {
              const ih = oh * p.strideH - p.padH + i * p.dilH;
              if (ih < 0 || ih >= p.h) continue;
              for (let j = 0; j < p.kw; j++) {
                const iw = ow * p.strideW - p.padW + j * p.dilW;
                if (iw < 0 || iw >= p.w) continue;
                acc += x[((b * p.cIn + xc) * p.h + ih) * p.w + iw]! * w[((co * cinG + ci) * p.kh + i) * p.kw + j]!;
              }
            }
          }
          y[((b * p.cOut + co) * p.outH + oh) * p.outW + ow] = acc;
        }
      }
    }
  }
}

/** Visits every (output, weight, input) triple of the convolution: the shared skeleton of both backward passes. */
function forEachTap(p: ConvParams, visit: (yi: number, wi: number, xi: number) => void): void {
  const cinG = p.cIn / p.groups;
  const coutG = p.cOut / p.groups;
  for (let b = 0; b < p.n; b++)
    for (let co = 0; co < p.cOut; co++) {
      const g = Math.floor(co / coutG);
      for (let oh = 0; oh < p.outH; oh++)
        for (let ow = 0; ow < p.outW; ow++) {
          const yi = ((b * p.cOut + co) * p.outH + oh) * p.outW + ow;
          for (let ci = 0; ci < cinG; ci++)
            for (let i = 0; i < p.kh; i++) {
              const ih = oh * p.strideH - p.padH + i * p.dilH;
              if (ih < 0 || ih >= p.h) continue;
              for (let j = 0; j < p.kw; j++) {
                const iw = ow * p.strideW - p.padW + j * p.dilW;
                if (iw < 0 || iw >= p.w) continue;
                visit(yi, ((co * cinG + ci) * p.kh + i) * p.kw + j, ((b * p.cIn + g * cinG + ci) * p.h + ih) * p.w + iw);
              }
            }
        }
    }
}

export function conv2dBackwardData(gy: TypedArray, w: TypedArray, gx: TypedArray, p: ConvParams): void {
  gx.fill(0, 0, p.n * p.cIn * p.h * p.w);
  forEachTap(p, (yi, wi, xi) => {
    gx[xi] = gx[xi]! + gy[yi]! * w[wi]!;
  });
}

export function conv2dBackwardWeight(x: TypedArray, gy: TypedArray, gw: TypedArray, gb: TypedArray | null, p: ConvParams): void {
  gw.fill(0, 0, (p.cOut * p.cIn * p.kh * p.kw) / p.groups);
  forEachTap(p, (yi, wi, xi) => {
    gw[wi] = gw[wi]! + gy[yi]! * x[xi]!;
  });
  if (gb) {
    const plane = p.outH * p.outW;
    for (let co = 0; co < p.cOut; co++) {
      let acc = 0;
      for (let b = 0; b < p.n; b++) for (let s = 0; s < plane; s++) acc += gy[(b * p.cOut + co) * plane + s]!;
      gb[co] = acc;
    }
  }
}

/** Visits each pooling window: plane index, output index, and the in-bounds input positions. */
function forEachWindow(p: PoolParams, visit: (plane: number, oi: number, taps: number[], padded: number) => void): void {
  const taps: number[] = [];
  for (let pl = 0; pl < p.n * p.c; pl++)
    for (let oh = 0; oh < p.outH; oh++)
      for (let ow = 0; ow < p.outW; ow++) {
        taps.length = 0;
        const h0 = oh * p.strideH - p.padH;
        const w0 = ow * p.strideW - p.padW;
        // PyTorch counts padding inside the window but not past the padded border.
        const padded = (Math.min(h0 + p.kh, p.h + p.padH) - h0) * (Math.min(w0 + p.kw, p.w + p.padW) - w0);
        for (let i = 0; i < p.kh; i++) {
          const ih = h0 + i;
          if (ih < 0 || ih >= p.h) continue;
          for (let j = 0; j < p.kw; j++) {
            const iw = w0 + j;
            if (iw >= 0 && iw < p.w) taps.push(ih * p.w + iw);
          }
        }
        visit(pl, (pl * p.outH + oh) * p.outW + ow, taps, padded);
      }
}

export function maxPool2d(x: TypedArray, y: TypedArray, arg: TypedArray, p: PoolParams): void {
  const hw = p.h * p.w;
  forEachWindow(p, (pl, oi, taps) => {
    let best = -Infinity;
    let at = taps[0] ?? 0;
    for (const t of taps) {
      const v = x[pl * hw + t]!;
      if (v > best || v !== v) {
        best = v;
        at = t;
      }
    }
    y[oi] = best;
    arg[oi] = at;
  });
}

export function maxPool2dBackward(gy: TypedArray, arg: TypedArray, gx: TypedArray, p: PoolParams): void {
  const hw = p.h * p.w;
  gx.fill(0, 0, p.n * p.c * hw);
  const outHW = p.outH * p.outW;
  for (let pl = 0; pl < p.n * p.c; pl++)
    for (let o = 0; o < outHW; o++) {
      const xi = pl * hw + arg[pl * outHW + o]!;
      gx[xi] = gx[xi]! + gy[pl * outHW + o]!;
    }
}

export function avgPool2d(x: TypedArray, y: TypedArray, p: PoolParams): void {
  const hw = p.h * p.w;
  forEachWindow(p, (pl, oi, taps, padded) => {
    let acc = 0;
    for (const t of taps) acc += x[pl * hw + t]!;
    y[oi] = acc / (p.countIncludePad ? padded : taps.length);
  });
}

export function avgPool2dBackward(gy: TypedArray, gx: TypedArray, p: PoolParams): void {
  const hw = p.h * p.w;
  gx.fill(0, 0, p.n * p.c * hw);
  forEachWindow(p, (pl, oi, taps, padded) => {
    const g = gy[oi]! / (p.countIncludePad ? padded : taps.length);
    for (const t of taps) gx[pl * hw + t] = gx[pl * hw + t]! + g;
  });
}

function bins(size: number, out: number): [number, number][] {
  return Array.from({ length: out }, (_, i) => [Math.floor((i * size) / out), Math.ceil(((i + 1) * size) / out)]);
}

export function adaptiveAvgPool2d(x: TypedArray, y: TypedArray, n: number, c: number, h: number, w: number, outH: number, outW: number): void {
  const bh = bins(h, outH);
  const bw = bins(w, outW);
  for (let pl = 0; pl < n * c; pl++)
    for (let oh = 0; oh < outH; oh++)
      for (let ow = 0; ow < outW; ow++) {
        const [h0, h1] = bh[oh]!;
        const [w0, w1] = bw[ow]!;
        let acc = 0;
        for (let i = h0; i < h1; i++) for (let j = w0; j < w1; j++) acc += x[(pl * h + i) * w + j]!;
        y[(pl * outH + oh) * outW + ow] = acc / ((h1 - h0) * (w1 - w0));
      }
}

export function adaptiveAvgPool2dBackward(gy: TypedArray, gx: TypedArray, n: number, c: number, h: number, w: number, outH: number, outW: number): void {
  gx.fill(0, 0, n * c * h * w);
  const bh = bins(h, outH);
  const bw = bins(w, outW);
  for (let pl = 0; pl < n * c; pl++)
    for (let oh = 0; oh < outH; oh++)
      for (let ow = 0; ow < outW; ow++) {
        const [h0, h1] = bh[oh]!;
        const [w0, w1] = bw[ow]!;
        const g = gy[(pl * outH + oh) * outW + ow]! / ((h1 - h0) * (w1 - w0));
        for (let i = h0; i < h1; i++) for (let j = w0; j < w1; j++) gx[(pl * h + i) * w + j] = gx[(pl * h + i) * w + j]! + g;
      }
}
