// Products with a frozen 4-bit weight (bitsandbytes' NF4/FP4 layout, src/tensor/quant4.ts): the
// kernels dequantise the weight a chunk at a time, so its float form never exists whole. The
// weight takes no gradient (it is frozen, as bitsandbytes' Params4bit); x and a trainable bias do.
import type { ComputePrecision, ConvParams, Q4Weight } from '../backends/backend.js';
import { bf16Active } from './precision.js';
import { fmt, ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { denseData, reshape, sumAxes } from './layout.js';
import { record } from './table.js';
import { alloc, backendOf, expectFloat } from './util.js';
import type { Conv2dOptions } from './conv.js';

const pair = (v: number | readonly [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);
function outSize(op: string, size: number, k: number, stride: number, padding: number, dilation: number): number {
  const o = Math.floor((size + 2 * padding - dilation * (k - 1) - 1) / stride) + 1;
  if (o < 1) throw new ShapeError(`${op}: input size ${size} is too small for kernel ${k} (dilation ${dilation}, padding ${padding})`);
  return o;
}

/** A 4-bit weight as tensors: packed codes (uint8), one float32 scale per block, the 16 code values. */
export interface Q4Tensors {
  packed: Tensor;
  scales: Tensor;
  code: Tensor;
  blocksize: number;
  /** The float weight's shape: (out, in) or (Cout, Cin, KH, KW). */
  shape: readonly number[];
}

function q4Of(op: string, w: Q4Tensors): Q4Weight<unknown> {
  const n = w.shape.reduce((a, b) => a * b, 1);
  if (w.packed.dtype !== 'uint8' || w.packed.size !== Math.ceil(n / 2)) throw new ShapeError(`${op}: packed codes must be ${Math.ceil(n / 2)} uint8 values for a weight ${fmt(w.shape)}; got ${w.packed.size} ${w.packed.dtype}`);
  if (w.scales.dtype !== 'float32' || w.scales.size !== Math.ceil(n / w.blocksize)) throw new ShapeError(`${op}: ${Math.ceil(n / w.blocksize)} float32 block scales expected for blocksize ${w.blocksize}; got ${w.scales.size} ${w.scales.dtype}`);
  if (w.code.dtype !== 'float32' || w.code.size !== 16) throw new ShapeError(`${op}: the code must be 16 float32 values`);
  for (const t of [w.packed, w.scales, w.code]) if (!t.isDense()) throw new ShapeError(`${op}: the 4-bit weight's tensors must be dense`);
  return { packed: w.packed.buf(), scales: w.scales.buf(), code: w.code.buf(), blocksize: w.blocksize };
}

/**
 * x Wᵀ + b with W (out, in) 4-bit, the bias added in the kernel. With precision 'bf16' (and bf16
 * active, src/ops/precision.ts) W is dequantised straight to bf16 and x, and the output gradient
 * in backward, rounded to bf16.
 */
export function linear4bit(x: Tensor, weight: Q4Tensors, bias?: Tensor | null, opts: { precision?: ComputePrecision } = {}): Tensor {
  expectFloat('linear4bit', x, 'x');
  if (weight.shape.length !== 2) throw new ShapeError(`linear4bit: weight must be (out_features, in_features); got ${fmt(weight.shape)}`);
  const [n, k] = weight.shape as [number, number];
  if (x.shape[x.rank - 1] !== k) throw new ShapeError(`linear4bit: x ${fmt(x.shape)} has ${x.shape[x.rank - 1]} features but weight ${fmt(weight.shape)} expects ${k}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== n)) throw new ShapeError(`linear4bit: bias must have shape [${n}]; got ${fmt(bias.shape)}`);
  const backend = backendOf('linear4bit', x, bias);
  const w = q4Of('linear4bit', weight);
  const rows = x.size / k;
  const xd = denseData(x);
  const bd = bias ? denseData(bias) : null;
  const out = alloc(backend, [...x.shape.slice(0, -1), n], x.dtype);
  const bf16 = opts.precision === 'bf16' && bf16Active(backend);
  backend.q4Linear(xd.buf(), w, bd?.buf() ?? null, out.buf(), x.dtype, { m: rows, rows: n, cols: k, trans: false, bf16 });
  if (xd !== x) xd.dispose();
  if (bd && bd !== bias) bd.dispose();
  // The weight's tensors are saved, so they outlive the caller's handles (decoded scales) until backward.
  const inputs = bias ? [x, bias] : [x];
  record(out, 'linear4bit', inputs, [weight.packed, weight.scales, weight.code], (gy, [packed, scales, code]) => {
    const g = denseData(gy);
    let gx: Tensor | null = null;
    if (x.requiresGrad) {
      gx = alloc(backend, x.shape, x.dtype);
      backend.q4Linear(g.buf(), { packed: packed!.buf(), scales: scales!.buf(), code: code!.buf(), blocksize: w.blocksize }, null, gx.buf(), x.dtype, { m: rows, rows: n, cols: k, trans: true, bf16 });
    }
    const gb = bias?.requiresGrad ? sumAxes(reshape(g, [rows, n]), [0]) : null;
    return bias ? [gx, gb] : [gx];
  });
  return out;
}

/** conv2d with a 4-bit weight (Cout, Cin, KH, KW), groups = 1; on bf16 operands while bf16 is active (src/ops/precision.ts). */
export function conv2d4bit(x: Tensor, weight: Q4Tensors, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  expectFloat('conv2d4bit', x, 'x');
  if ((opts.groups ?? 1) !== 1) throw new ShapeError(`conv2d4bit: 4-bit convolutions take groups = 1; got groups = ${opts.groups}`);
  if (opts.paddingEnd !== undefined) throw new ShapeError('conv2d4bit: 4-bit convolutions take symmetric padding only (no paddingEnd); pad the input instead');
  if (x.rank !== 4 || weight.shape.length !== 4) throw new ShapeError(`conv2d4bit: x must be (B, C, H, W) and weight (Cout, Cin, KH, KW); got ${fmt(x.shape)} and ${fmt(weight.shape)}`);
  const [strideH, strideW] = pair(opts.stride ?? 1);
  const [padH, padW] = pair(opts.padding ?? 0);
  const [dilH, dilW] = pair(opts.dilation ?? 1);
  const [n, cIn, h, wd] = x.shape as [number, number, number, number];
  const [cOut, cInW, kh, kw] = weight.shape as [number, number, number, number];
  if (cInW !== cIn) throw new ShapeError(`conv2d4bit: x has ${cIn} channels but weight ${fmt(weight.shape)} expects ${cInW}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== cOut)) throw new ShapeError(`conv2d4bit: bias must have shape [${cOut}]; got ${fmt(bias.shape)}`);
  const p: ConvParams = {
    n, cIn, h, w: wd, cOut, kh, kw, strideH, strideW, padH, padW, dilH, dilW, groups: 1,
    outH: outSize('conv2d4bit', h, kh, strideH, padH, dilH), outW: outSize('conv2d4bit', wd, kw, strideW, padW, dilW),
  };
  const backend = backendOf('conv2d4bit', x, bias);
  // Under --precision bf16 each dequantised chunk and x (the output gradient backward) are bf16 operands.
  p.bf16 = x.dtype === 'float32' && bf16Active(backend);
  const w = q4Of('conv2d4bit', weight);
  const xd = denseData(x);
  const bd = bias ? denseData(bias) : null;
  const out = alloc(backend, [n, cOut, p.outH, p.outW], x.dtype);
  backend.q4Conv2d(xd.buf(), w, bd?.buf() ?? null, out.buf(), x.dtype, p);
  if (xd !== x) xd.dispose();
  if (bd && bd !== bias) bd.dispose();
  const inputs = bias ? [x, bias] : [x];
  record(out, 'conv2d4bit', inputs, [weight.packed, weight.scales, weight.code], (gy, [packed, scales, code]) => {
    const g = denseData(gy);
    let gx: Tensor | null = null;
    if (x.requiresGrad) {
      gx = alloc(backend, x.shape, x.dtype);
      backend.q4Conv2dBackwardData(g.buf(), { packed: packed!.buf(), scales: scales!.buf(), code: code!.buf(), blocksize: w.blocksize }, gx.buf(), x.dtype, p);
    }
    const gb = bias?.requiresGrad ? sumAxes(g, [0, 2, 3]) : null;
    return bias ? [gx, gb] : [gx];
  });
  return out;
}
