// Creating tensors: from host data, constants, ranges and random draws.
import { currentBackend } from '../backends/registry.js';
import type { Backend } from '../backends/backend.js';
import { dtypeArray, dtypeOf, type DType, type TypedArray } from '../tensor/dtype.js';
import { defaultGenerator, type Generator } from '../tensor/random.js';
import { fmt, numel, type Shape } from '../tensor/shape.js';
import { emptyTensor, tensorFromBuffer, type Tensor } from '../tensor/tensor.js';

export interface CreateOptions {
  dtype?: DType;
  backend?: Backend<any>;
  requiresGrad?: boolean;
}

function finish(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

type Nested = number | readonly Nested[];

function flattenNested(data: Nested, shape: number[], out: number[], depth = 0): void {
  if (typeof data === 'number') {
    if (depth !== shape.length && shape.length > 0) throw new Error('tensor(): ragged nested array');
    out.push(data);
    return;
  }
  if (shape.length === depth) shape.push(data.length);
  else if (shape[depth] !== data.length) throw new Error(`tensor(): ragged nested array at depth ${depth}: ${data.length} vs ${shape[depth]}`);
  for (const d of data) flattenNested(d, shape, out, depth + 1);
}

/**
 * A tensor from host data (copied). `tensor([[1, 2], [3, 4]])`, or a typed array with a shape:
 * `tensor(new Float32Array(6), [2, 3])`.
 */
export function tensor(data: Nested | TypedArray, shape?: Shape, opts: CreateOptions = {}): Tensor {
  const backend = opts.backend ?? currentBackend();
  let flat: TypedArray;
  let finalShape: Shape;
  if (ArrayBuffer.isView(data)) {
    const dtype = opts.dtype ?? dtypeOf(data as TypedArray);
    flat = dtype === dtypeOf(data as TypedArray) ? (data as TypedArray) : dtypeArray[dtype].from(data as ArrayLike<number>);
    finalShape = shape ?? [flat.length];
  } else {
    const s: number[] = [];
    const out: number[] = [];
    flattenNested(data, s, out);
    flat = dtypeArray[opts.dtype ?? 'float32'].from(out);
    finalShape = shape ?? s;
  }
  if (numel(finalShape) !== flat.length) throw new Error(`tensor(): ${flat.length} values do not fill shape ${fmt(finalShape)}`);
  return finish(tensorFromBuffer(backend.upload(flat), finalShape, dtypeOf(flat), backend), opts);
}

export function full(shape: Shape, value: number, opts: CreateOptions = {}): Tensor {
  const t = emptyTensor(shape, opts.dtype ?? 'float32', opts.backend ?? currentBackend(), value === 0);
  if (value !== 0) t.backend.fill(t.view(), value);
  return finish(t, opts);
}

export const zeros = (shape: Shape, opts: CreateOptions = {}): Tensor => full(shape, 0, opts);
export const ones = (shape: Shape, opts: CreateOptions = {}): Tensor => full(shape, 1, opts);
export const zerosLike = (t: Tensor): Tensor => full(t.shape, 0, { dtype: t.dtype, backend: t.backend });
export const onesLike = (t: Tensor): Tensor => full(t.shape, 1, { dtype: t.dtype, backend: t.backend });

/** [start, start + step, …) below `end`, like torch.arange. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  const n = Math.max(0, Math.ceil((end - start) / step));
  const data = new dtypeArray[opts.dtype ?? 'float32'](n);
  for (let i = 0; i < n; i++) data[i] = start + i * step;
  return tensor(data, [n], opts);
}

function random(shape: Shape, draw: () => number, opts: CreateOptions): Tensor {
  const data = new dtypeArray[opts.dtype ?? 'float32'](numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = draw();
  return tensor(data, shape, opts);
}

/** Uniform in [low, high). */
export function rand(shape: Shape, opts: CreateOptions & { low?: number; high?: number; generator?: Generator } = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const lo = opts.low ?? 0;
  const hi = opts.high ?? 1;
  return random(shape, () => lo + (hi - lo) * g.uniform(), opts);
}

/** Normal with mean and std (default standard normal). */
export function randn(shape: Shape, opts: CreateOptions & { mean?: number; std?: number; generator?: Generator } = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const mean = opts.mean ?? 0;
  const std = opts.std ?? 1;
  return random(shape, () => mean + std * g.normal(), opts);
}

/** Integers uniform in [low, high), int32 by default. */
export function randint(low: number, high: number, shape: Shape, opts: CreateOptions & { generator?: Generator } = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  return random(shape, () => low + g.int(high - low), { dtype: 'int32', ...opts });
}
