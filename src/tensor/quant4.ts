// 4-bit block quantisation as bitsandbytes defines it (NF4 and FP4, with optional double
// quantisation of the per-block scales), on plain typed arrays. The layout is bitsandbytes':
// the tensor flattened, blocks of `blocksize` elements (the tail block its own), an fp32 absmax
// per block, values scaled by the reciprocal of their block's absmax and clamped to [−1, 1], the
// code nearest by the midpoints of the sorted code values (an exact tie goes to the lower code,
// as torch.bucketize), two codes per byte with the first element in the high nibble. Double
// quantisation stores absmax − mean(absmax) in 8 bits with the signed dynamic map, blocks of 256.
// Kernels (backends) dequantise from this layout block by block; docs/quantization.md.

export type QuantType = 'nf4' | 'fp4';

/** bitsandbytes' NF4 code (functional.py get_4bit_type('nf4')), float32. */
export const NF4_CODE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
]);

/** bitsandbytes' FP4 code in bit-pattern order (get_4bit_type('fp4')): [0, 0.0625, 8, 12, 4, 6, 2, 3, −0, …] / 12. */
export const FP4_CODE = Float32Array.from([0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3].map((v) => v / 12));

export const DEFAULT_BLOCKSIZE = 64;
export const NESTED_BLOCKSIZE = 256;
export const MIN_BLOCKSIZE = 32;
export const MAX_BLOCKSIZE = 4096;

export function codeOf(type: QuantType): Float32Array {
  return type === 'nf4' ? NF4_CODE : FP4_CODE;
}

/** The code's indices sorted by value (FP4's −0 left out) and the float32 midpoints between neighbours. */
interface Bucketing {
  order: Uint8Array;
  mids: Float32Array;
}
const bucketings = new Map<QuantType, Bucketing>();
function bucketing(type: QuantType): Bucketing {
  let b = bucketings.get(type);
  if (!b) {
    const code = codeOf(type);
    const idx = [...code.keys()].filter((i) => !(type === 'fp4' && i === 8));
    idx.sort((a, c) => code[a]! - code[c]!);
    const mids = new Float32Array(idx.length - 1);
    for (let i = 0; i < mids.length; i++) mids[i] = (code[idx[i]!]! + code[idx[i + 1]!]!) / 2;
    b = { order: Uint8Array.from(idx), mids };
    bucketings.set(type, b);
  }
  return b;
}

/**
 * The signed 8-bit dynamic map of bitsandbytes (functional.py create_dynamic_map(signed=True)):
 * for exponents 10^-6 ... 10^0, the means of neighbouring points of torch.linspace(0.1, 1, 2^i + 1)
 * in float32, both signs, plus 0 and 1, sorted. The values depend on torch's vectorised float32
 * linspace, so they are kept as torch computes them: 256 little-endian float32 (the same map
 * bitsandbytes saves as `nested_quant_map`; fixtures/quant checks it).
 */
const DYNAMIC_MAP_B64 =
  'MzN+v5mZer8AAHe/ZmZzv8zMb78zM2y/mplovwAAZb9mZmG/zMxdvzMzWr+ZmVa/AABTv2ZmT7/MzEu/MzNIv5qZRL8AAEG/' +
  'Z2Y9v83MOb80Mza/mpkyvwAAL79nZiu/zcwnvzMzJL+amSC/AAAdv2ZmGb/NzBW/NDMSv5qZDr8AAAu/ZmYHv83MA78zMwC/' +
  'NDP5vgAA8r7MzOq+mpnjvmZm3L4yM9W+AADOvszMxr6amb++Zma4vjIzsb4AAKq+zMyivpqZm75mZpS+NDONvgAAhr6amX2+' +
  'NDNvvs3MYL5mZlK+AABEvpmZNb4zMye+zcwYvmZmCr4AAPi9NDPbvYXryb31KMS9Z2a+vdejuL1I4bK9uB6tvShcp72amaG9' +
  'CtebvXsUlr3rUZC9XY+Kvc3MhL16FH69XY9yvT0KZ70fhVu9AABQveF6RL3D9Ti9o3AtvYXrIb1nZha9R+EKvVK4/rwTrue8' +
  '16PQvJqZubxcj6K8H4WLvMP1aLxI4Tq8ZDsfvBgEFrzNzAy8gZUDvGq89LvTTeK7O9/Pu6RwvbsNAqu7dJOYu90khruKbGe7' +
  'XI9Cuy2yHbv8qfG6ne+nuv9ld7o+6Fm6gGo8usHsHroBbwG6g+LHuQXnjLkL1yO5Sx+6uLPvirg0gDe4BkKyt/8FAreUGlq2' +
  't6MTtQAAAAC3oxM1lBpaNv8FAjcGQrI3NIA3OLPvijhLH7o4C9cjOQXnjDmD4sc5AW8BOsHsHjqAajw6PuhZOv9ldzqd76c6' +
  '/KnxOi2yHTtcj0I7imxnO90khjt0k5g7DQKrO6RwvTs73887003iO2q89DuBlQM8zcwMPBgEFjxkOx88SOE6PMP1aDwfhYs8' +
  'XI+iPJqZuTzXo9A8E67nPFK4/jxH4Qo9Z2YWPYXrIT2jcC09w/U4PeF6RD0AAFA9H4VbPT0KZz1dj3I9ehR+Pc3MhD1dj4o9' +
  '61GQPXsUlj0K15s9mpmhPShcpz24Hq09SOGyPdejuD1nZr499SjEPYXryT00M9s9AAD4PWZmCj7NzBg+MzMnPpmZNT4AAEQ+' +
  'ZmZSPs3MYD40M28+mpl9PgAAhj40M40+ZmaUPpqZmz7MzKI+AACqPjIzsT5mZrg+mpm/PszMxj4AAM4+MjPVPmZm3D6ameM+' +
  'zMzqPgAA8j40M/k+MzMAP83MAz9mZgc/AAALP5qZDj80MxI/zcwVP2ZmGT8AAB0/mpkgPzMzJD/NzCc/Z2YrPwAALz+amTI/' +
  'NDM2P83MOT9nZj0/AABBP5qZRD8zM0g/zMxLP2ZmTz8AAFM/mZlWPzMzWj/MzF0/ZmZhPwAAZT+amWg/MzNsP8zMbz9mZnM/' +
  'AAB3P5mZej8zM34/AACAPw==';

export function dynamicMap(): Float32Array {
  const bytes = Uint8Array.from(atob(DYNAMIC_MAP_B64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

let dynamic: Float32Array | null = null;
export function dynamicMapCached(): Float32Array {
  return (dynamic ??= dynamicMap());
}

export function checkBlocksize(blocksize: number, what = 'blocksize'): void {
  if (!Number.isInteger(blocksize) || blocksize < MIN_BLOCKSIZE || blocksize > MAX_BLOCKSIZE || (blocksize & (blocksize - 1)) !== 0) {
    throw new RangeError(`${what} must be a power of two from ${MIN_BLOCKSIZE} to ${MAX_BLOCKSIZE} (bitsandbytes' range), got ${blocksize}`);
  }
}

function blockAbsmax(x: ArrayLike<number>, n: number, bs: number): Float32Array {
  const nb = Math.ceil(n / bs);
  const absmax = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    let m = 0;
    const end = Math.min(n, (b + 1) * bs);
    for (let i = b * bs; i < end; i++) {
      const a = Math.abs(x[i]!);
      if (a > m || Number.isNaN(a)) m = a;
    }
    absmax[b] = m;
  }
  return absmax;
}

/** The state bitsandbytes keeps beside the packed codes (its QuantState). */
export interface QuantState4 {
  quantType: QuantType;
  blocksize: number;
  /** The original tensor's shape. */
  shape: number[];
  /** fp32 absmax per block, or with double quantisation the 8-bit codes of absmax − offset. */
  absmax: Float32Array | Uint8Array;
  /** Double quantisation: the nested state (the dynamic map, blocks of 256). */
  nested: { absmax: Float32Array; code: Float32Array; blocksize: number; offset: number } | null;
}

export interface Quantized4 {
  /** ceil(n / 2) bytes, the first element of each pair in the high nibble. */
  packed: Uint8Array;
  state: QuantState4;
}

/** quantize_4bit: codes and per-block absmax of `x` (flattened). */
export function quantize4(x: ArrayLike<number>, shape: readonly number[], opts: { quantType?: QuantType; blocksize?: number; doubleQuant?: boolean } = {}): Quantized4 {
  const type = opts.quantType ?? 'nf4';
  const bs = opts.blocksize ?? DEFAULT_BLOCKSIZE;
  checkBlocksize(bs);
  const n = shape.reduce((a, b) => a * b, 1);
  if (x.length !== n) throw new RangeError(`quantize4: ${x.length} values for shape [${shape.join(', ')}]`);
  const absmax = blockAbsmax(x, n, bs);
  const packed = new Uint8Array(Math.ceil(n / 2));
  const { order, mids } = bucketing(type);
  for (let b = 0; b < absmax.length; b++) {
    const inv = Math.fround(1 / absmax[b]!);
    const end = Math.min(n, (b + 1) * bs);
    for (let i = b * bs; i < end; i++) {
      let s = Math.fround(x[i]! * inv);
      if (s > 1) s = 1;
      else if (s < -1) s = -1;
      // bucketize(right=False): the number of midpoints strictly below s (NaN: all of them)
      let k = 0;
      if (Number.isNaN(s)) k = mids.length;
      else while (k < mids.length && mids[k]! < s) k++;
      const q = order[k]!;
      if (i & 1) packed[i >> 1]! |= q;
      else packed[i >> 1] = q << 4;
    }
  }
  const state: QuantState4 = { quantType: type, blocksize: bs, shape: [...shape], absmax, nested: null };
  if (opts.doubleQuant) {
    const d = quantizeAbsmax(absmax);
    state.absmax = d.q;
    state.nested = d.nested;
  }
  return { packed, state };
}

/** Double quantisation of the absmax: offset = mean, quantize_blockwise(absmax − offset, dynamic map, 256). */
export function quantizeAbsmax(absmax: Float32Array): { q: Uint8Array; nested: NonNullable<QuantState4['nested']> } {
  // the mean in float64, rounded to float32 (torch's float32 mean sums in a vectorised order that
  // can land one ulp away; a loaded checkpoint brings its own offset)
  let sum = 0;
  for (const v of absmax) sum += v;
  const offset = Math.fround(sum / absmax.length);
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = absmax[i]! - offset;
  const code = dynamicMapCached();
  const { q, absmax: nestedAbsmax } = quantizeBlockwise8(centred, code, NESTED_BLOCKSIZE);
  return { q, nested: { absmax: nestedAbsmax, code, blocksize: NESTED_BLOCKSIZE, offset } };
}

/** quantize_blockwise: 8-bit codes by nearest value (argmin of |s − code|, the first on a tie). */
export function quantizeBlockwise8(x: Float32Array, code: Float32Array, bs: number): { q: Uint8Array; absmax: Float32Array } {
  const n = x.length;
  const absmax = blockAbsmax(x, n, bs);
  const q = new Uint8Array(n);
  for (let b = 0; b < absmax.length; b++) {
    const inv = Math.fround(1 / absmax[b]!);
    const end = Math.min(n, (b + 1) * bs);
    for (let i = b * bs; i < end; i++) {
      let s = Math.fround(x[i]! * inv);
      if (s > 1) s = 1;
      else if (s < -1) s = -1;
      q[i] = nearest(code, s);
    }
  }
  return { q, absmax };
}

/** argmin_j fl(|s − code_j|) over an ascending code, the lowest index on ties; NaN → 0 (torch's argmin). */
function nearest(code: Float32Array, s: number): number {
  if (Number.isNaN(s)) return 0;
  let lo = 0;
  let hi = code.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (code[mid]! <= s) lo = mid;
    else hi = mid;
  }
  // distances are monotone away from s, so the minimum is at lo or hi; search left for equal ones
  let best = lo;
  let bestD = Math.fround(Math.abs(Math.fround(s - code[lo]!)));
  const dHi = Math.fround(Math.abs(Math.fround(s - code[hi]!)));
  if (dHi < bestD) {
    best = hi;
    bestD = dHi;
  }
  while (best > 0 && Math.fround(Math.abs(Math.fround(s - code[best - 1]!))) === bestD) best--;
  return best;
}

/** The fp32 absmax per block: as stored, or decoded from the double-quantised state. */
export function blockScales(state: QuantState4): Float32Array {
  if (!state.nested) return state.absmax as Float32Array;
  const { absmax: nestedAbsmax, code, blocksize, offset } = state.nested;
  const q = state.absmax as Uint8Array;
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = Math.fround(Math.fround(code[q[i]!]! * nestedAbsmax[Math.floor(i / blocksize)]!) + offset);
  return out;
}

/** dequantize_4bit of elements [start, start + count) of the flattened tensor into `out` (offset 0). */
export function dequantize4Range(packed: Uint8Array, scales: Float32Array, type: QuantType, blocksize: number, start: number, count: number, out: Float32Array | Float64Array, outOffset = 0): void {
  const code = codeOf(type);
  for (let j = 0; j < count; j++) {
    const i = start + j;
    const byte = packed[i >> 1]!;
    const q = i & 1 ? byte & 15 : byte >> 4;
    out[outOffset + j] = Math.fround(code[q]! * scales[Math.floor(i / blocksize)]!);
  }
}

/** The whole tensor dequantised (for tests, merging and exporting; kernels dequantise by blocks). */
export function dequantize4(q: Quantized4): Float32Array {
  const n = q.state.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  dequantize4Range(q.packed, blockScales(q.state), q.state.quantType, q.state.blocksize, 0, n, out);
  return out;
}

/** Bytes the quantised tensor takes (packed codes, absmax or its codes, nested state). */
export function quantizedBytes(q: Quantized4): number {
  let b = q.packed.byteLength + q.state.absmax.byteLength;
  if (q.state.nested) b += q.state.nested.absmax.byteLength + q.state.nested.code.byteLength + 4;
  return b + codeOf(q.state.quantType).byteLength;
}
