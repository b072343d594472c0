/** Element types a tensor can hold. float64 exists for gradient checks on the reference backend. */
export type DType = 'float32' | 'float64' | 'int32' | 'uint8';

export type TypedArray = Float32Array | Float64Array | Int32Array | Uint8Array;

export const dtypeArray = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  uint8: Uint8Array,
} as const;

export function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  return 'uint8';
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

export function bytesPerElement(dtype: DType): number {
  return dtypeArray[dtype].BYTES_PER_ELEMENT;
}
