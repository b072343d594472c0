import type { Backend, View } from '../backends/backend.js';
import { checkBackwardRoot, runBackward, type GradFn } from './autograd.js';
import { currentBackend } from './device.js';
import { bytesPerElement, type DType, type TypedArray } from './dtype.js';
import { adopt, trackAlloc, trackFree } from './memory.js';
import { contiguousStrides, fmt, isContiguous, numel, type Shape } from './shape.js';

/** A backend buffer shared by a tensor and its views; freed when the last of them is disposed. */
export class Storage {
  refs = 0;
  constructor(
    readonly backend: Backend<any>,
    public buf: any,
    readonly dtype: DType,
    readonly size: number,
  ) {
    trackAlloc(size * bytesPerElement(dtype));
  }

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs > 0) return;
    trackFree(this.size * bytesPerElement(this.dtype));
    this.backend.free(this.buf, this.dtype);
    this.buf = null;
  }
}

/** An n-dimensional strided view of a Storage, with optional gradient tracking. */
export class Tensor {
  readonly isTensor = true;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  requiresGrad = false;
  /** Accumulated gradient of a leaf; owned by this tensor. */
  grad: Tensor | null = null;
  /** How this tensor was computed, when it needs a gradient and is not a leaf. */
  gradFn: GradFn | null = null;
  /** Optional name, used by modules and in error messages. */
  name?: string;
  private disposed = false;

  constructor(readonly storage: Storage, shape: Shape, strides?: readonly number[], offset = 0, scoped = true) {
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
    this.offset = offset;
    storage.retain();
    if (scoped) adopt(this);
  }

  get dtype(): DType {
    return this.storage.dtype;
  }

  get backend(): Backend<any> {
    return this.storage.backend;
  }

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return numel(this.shape);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /** The kernel-level view of this tensor. */
  view(): View<any> {
    if (this.disposed) throw new Error(`tensor ${this.describe()} was used after dispose(); keep() it or return it from tidy()`);
    return { buf: this.storage.buf, dtype: this.dtype, shape: this.shape, strides: this.strides, offset: this.offset };
  }

  /** The raw buffer of a contiguous tensor with offset 0 (what most kernels take). */
  buf(): any {
    this.view();
    return this.storage.buf;
  }

  isContiguous(): boolean {
    return isContiguous(this.shape, this.strides);
  }

  /** True when kernels can use `buf()` directly: contiguous, offset 0, spanning its storage. */
  isDense(): boolean {
    return this.offset === 0 && this.isContiguous() && this.size === this.storage.size;
  }

  /**
   * True when the elements fill the storage exactly once from offset 0 in some order of the axes
   * (a permuted dense tensor: channels-last maps, transposed results): elementwise kernels can then
   * run over the buffer flat, for operands that share these strides.
   */
  isDensePermuted(): boolean {
    if (this.offset !== 0 || this.size !== this.storage.size) return false;
    const axes = this.shape.map((d, i) => i).filter((i) => this.shape[i]! > 1).sort((a, b) => this.strides[b]! - this.strides[a]!);
    let expect = 1;
    for (let k = axes.length - 1; k >= 0; k--) {
      if (this.strides[axes[k]!] !== expect) return false;
      expect *= this.shape[axes[k]!]!;
    }
    return true;
  }

  describe(): string {
    return `${this.name ? this.name + ' ' : ''}${this.dtype}${fmt(this.shape)}`;
  }

  /** Marks this tensor as a leaf whose gradient is accumulated in `.grad`. */
  requiresGrad_(flag = true): this {
    if (!this.isLeaf) throw new Error(`requiresGrad_ is for leaf tensors; ${this.describe()} was computed by ${this.gradFn!.name}`);
    this.requiresGrad = flag;
    return this;
  }

  /** A copy of the elements in row-major order, on the host. */
  toArray(): TypedArray {
    const v = this.view();
    if (this.isContiguous()) return this.backend.read(v.buf, this.dtype, this.offset, this.size).slice();
    const b = this.backend;
    const out = b.alloc(this.dtype, this.size, false);
    b.copy(v, { buf: out, dtype: this.dtype, shape: this.shape, strides: contiguousStrides(this.shape), offset: 0 });
    const host = b.read(out, this.dtype, 0, this.size).slice();
    b.free(out, this.dtype);
    return host;
  }

  /** Nested arrays, like torch's tolist(). */
  toList(): unknown {
    const flat = Array.from(this.toArray() as ArrayLike<number>);
    const build = (dim: number, start: number): unknown => {
      if (dim === this.rank) return flat[start];
      const step = numel(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim]! }, (_, i) => build(dim + 1, start + i * step));
    };
    return build(0, 0);
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item() needs a tensor with one element; got ${this.describe()}`);
    return this.backend.read(this.view().buf, this.dtype, this.offset, 1)[0]!;
  }

  /** A dense copy in new storage, outside the autograd graph. */
  clone(): Tensor {
    const out = emptyTensor(this.shape, this.dtype, this.backend);
    this.backend.copy(this.view(), out.view());
    return out;
  }

  /** A tensor sharing this one's storage, outside the autograd graph. */
  detach(): Tensor {
    return new Tensor(this.storage, this.shape, this.strides, this.offset);
  }

  /**
   * A handle on this tensor's data owned by an autograd record rather than by any scope: the
   * data stays readable for backward even after this tensor is disposed.
   */
  saveForBackward(): Tensor {
    this.view();
    return new Tensor(this.storage, this.shape, this.strides, this.offset, false);
  }

  /** Back-propagates from this tensor; a non-scalar needs `gradient` (same shape). */
  backward(gradient?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    checkBackwardRoot(this, gradient);
    // The walk is given its seed, so that autograd.ts never makes tensors and tensor.ts alone
    // imports the other; a seed made here is the walk's to free, a caller's gradient is not.
    if (gradient) return runBackward(this, gradient, false, opts.retainGraph ?? false);
    const ones = emptyTensor(this.shape, this.dtype, this.backend);
    this.backend.fill(ones.view(), 1);
    runBackward(this, ones, true, opts.retainGraph ?? false);
  }

  /**
   * Frees this tensor's hold on its storage (and its gradient). Safe to call twice. The autograd
   * record stays, so a loss computed from disposed intermediates can still back-propagate.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.grad?.dispose();
    this.grad = null;
    this.storage.release();
  }
}

/** A new tensor of `shape` with fresh storage on `backend` (default: the current one). */
export function emptyTensor(shape: Shape, dtype: DType = 'float32', backend: Backend<any> = currentBackend(), zero = false, strides?: readonly number[]): Tensor {
  const size = numel(shape);
  return new Tensor(new Storage(backend, backend.alloc(dtype, size, zero), dtype, size), shape, strides);
}

/** Wraps an existing backend buffer (ownership passes to the tensor). */
export function tensorFromBuffer(buf: unknown, shape: Shape, dtype: DType, backend: Backend<any>): Tensor {
  return new Tensor(new Storage(backend, buf, dtype, numel(shape)), shape);
}
