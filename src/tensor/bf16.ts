// bfloat16: the upper 16 bits of a float32 (8 exponent bits, 7 mantissa bits), which products
// with frozen weights use under `--precision bf16`. Rounding is to nearest, ties to even, as
// oneDNN's and PyTorch's float32 → bf16 conversions; a NaN stays a NaN.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** x rounded to the nearest bf16 value, as a number. */
export function roundBf16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return x;
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return f32[0]!;
}

/** A copy of `a` with every element rounded to bf16. */
export function roundBf16Array<T extends Float32Array | Float64Array>(a: T): T {
  const out = a.slice() as T;
  for (let i = 0; i < out.length; i++) out[i] = roundBf16(out[i]!);
  return out;
}
