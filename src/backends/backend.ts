// The narrow kernel interface every backend implements.
//
// Kernels see buffers, shapes and strides, never Tensors or autograd. `B` is the backend's buffer
// type: a TypedArray for the CPU backends (reference, native); a device-resident handle for a
// future GPU backend, which would also make `read` the only synchronisation point, so kernels
// may run asynchronously. Ops (src/ops) choose kernels; backends only compute.
//
// Shape vocabulary: B batch, N tokens, C channels, H/W spatial, K kernel, D head dim.
// All sizes and strides are in elements. "contiguous" means row-major with offset 0.
import type { DType, TypedArray } from '../tensor/dtype.js';
import type { Shape } from '../tensor/shape.js';

/** A strided window onto a buffer. */
export interface View<B = TypedArray> {
  buf: B;
  dtype: DType;
  shape: Shape;
  strides: readonly number[];
  offset: number;
}

export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'sign' | 'square' | 'reciprocal'
  | 'relu' | 'relu6' | 'sigmoid' | 'tanh' | 'gelu' | 'gelu_tanh' | 'silu' | 'hardswish' | 'erf'
  | 'pow_scalar' // x ** p0
  | 'clamp' // min(max(x, p0), p1)
  | 'affine'; // x * p0 + p1

/** Unary ops whose gradient kernel `unaryGrad` computes gx = gy · f'(x) in one pass. */
export type UnaryGradOp = Exclude<UnaryOp, 'sign'>;

export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'maximum' | 'minimum' | 'pow' | 'eq' | 'lt' | 'gt' | 'le' | 'ge';

export type ReduceOp = 'sum' | 'max' | 'min';

/** C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]; op = transpose when trans*. All three contiguous per batch. */
export interface MatmulParams {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean; // A stored (k, m) when true, else (m, k)
  transB: boolean; // B stored (n, k) when true, else (k, n)
  strideA: number; // elements between batches; 0 broadcasts one matrix
  strideB: number;
  strideC: number;
  beta: 0 | 1; // 1 accumulates into C (gradient accumulation)
}

/**
 * A frozen 4-bit weight in bitsandbytes' layout (src/tensor/quant4.ts): `packed` holds two codes
 * per byte (Uint8Array on the CPU backends, the first element in the high nibble), `scales` one
 * float32 absmax per block of `blocksize` elements of the flattened weight, `code` the 16 float32
 * code values. Kernels dequantise it a chunk at a time and never hold the whole float weight.
 */
export interface Q4Weight<B> {
  packed: B;
  scales: B;
  code: B;
  blocksize: number;
}

/** W (rows, cols) 4-bit; trans = false: y (m, rows) = x (m, cols) · Wᵀ; true: y (m, cols) = x (m, rows) · W. */
export interface Q4LinearParams {
  m: number;
  rows: number;
  cols: number;
  trans: boolean;
  /** Dequantise W straight to bf16 and round x to bf16 (float32 accumulation), where the backend can. */
  bf16?: boolean;
}

/** The arithmetic of products with frozen weights: float32, or bf16 operands with float32 accumulation. */
export type ComputePrecision = 'fp32' | 'bf16';

/** NCHW convolution geometry; weight (Cout, Cin/groups, KH, KW). */
export interface ConvParams {
  n: number; cIn: number; h: number; w: number;
  cOut: number; kh: number; kw: number;
  outH: number; outW: number;
  strideH: number; strideW: number;
  padH: number; padW: number;
  dilH: number; dilW: number;
  groups: number;
  /**
   * Channels-last memory (N, H, W, C) for x and for y, forward passes only (conv2d, conv2dClip);
   * absent or false: NCHW. Backward passes and 4-bit convolutions are always NCHW.
   */
  srcNhwc?: boolean;
  dstNhwc?: boolean;
  /**
   * conv2d, conv2dClip and conv2dBackwardData on bf16 operands (x or gy, and w, rounded to
   * nearest even), with float32 accumulation and outputs: a frozen convolution under
   * `--precision bf16`. Only set for groups = 1, NCHW, on a backend whose bf16Supported() is true.
   */
  bf16?: boolean;
}

/** The activations a product on packed weights can apply as it stores its outputs. */
export type FusedActivation = 'gelu' | 'gelu_tanh' | 'silu' | 'relu';

/** The clamp [lo, hi] a convolution applies to its outputs (a fused ReLU / ReLU6), or null. */
export type ConvClip = readonly [number, number] | null;

/** NCHW pooling geometry. `countIncludePad` is for average pooling (PyTorch's default true). */
export interface PoolParams {
  n: number; c: number; h: number; w: number;
  outH: number; outW: number;
  kh: number; kw: number;
  strideH: number; strideW: number;
  padH: number; padW: number;
  countIncludePad: boolean;
  /** maxPool2d only, forward without a graph: x and y channels-last (N, H, W, C), arg left unwritten. */
  nhwc?: boolean;
}

/** Scaled-dot-product attention geometry: q (B, N, D), k/v (B, M, D), B = batch·heads. */
export interface AttentionParams {
  batch: number; n: number; m: number; d: number;
  scale: number;
  causal: boolean;
}

export type InterpMode = 'bilinear' | 'bicubic';

export interface InterpParams {
  n: number; c: number; h: number; w: number; outH: number; outW: number;
  mode: InterpMode;
  alignCorners: boolean;
  /** Source-index scale (input/output) when a scale factor was given, as PyTorch uses it; default in/out. */
  scaleH?: number;
  scaleW?: number;
}

export interface Backend<B = TypedArray> {
  readonly name: string;

  // ---- memory -------------------------------------------------------------------------------
  /** A buffer of `size` elements; contents are unspecified unless `zero`. */
  alloc(dtype: DType, size: number, zero: boolean): B;
  /** Gives a buffer back; the backend may reuse it for a later alloc of the same size. */
  free(buf: B, dtype: DType): void;
  /** A copy of host data as a buffer (CPU: a pooled one, so tensors made from fresh arrays and
   *  disposed do not grow the pool). */
  upload(data: TypedArray): B;
  /** Host copy or view of `size` elements from `offset`; the one synchronisation point. */
  read(buf: B, dtype: DType, offset: number, size: number): TypedArray;

  // ---- layout ---------------------------------------------------------------------------------
  /** dst[i] = src[i] over the shared shape, both strided; casts when dtypes differ. */
  copy(src: View<B>, dst: View<B>): void;
  fill(dst: View<B>, value: number): void;

  // ---- elementwise ----------------------------------------------------------------------------
  /** out (contiguous, x.shape) = f(x). */
  unary(op: UnaryOp, x: View<B>, out: B, p0: number, p1: number): void;
  /** gx = gy · f'(x), all contiguous with n elements. */
  unaryGrad(op: UnaryGradOp, x: B, gy: B, gx: B, n: number, p0: number, p1: number): void;
  /** out (contiguous, shape) = a ∘ b; a and b are views already broadcast to `shape`. Comparisons give 0/1 in out's dtype. */
  binary(op: BinaryOp, a: View<B>, b: View<B>, out: B, outDtype: DType, shape: Shape): void;
  /** out = cond ≠ 0 ? a : b, all views broadcast to shape. */
  where(cond: View<B>, a: View<B>, b: View<B>, out: B, shape: Shape): void;

  // ---- reductions -----------------------------------------------------------------------------
  /** x contiguous viewed as (outer, len, inner) → out (outer, inner); `arg` receives int32 argmax/argmin for max/min. */
  reduce(op: ReduceOp, x: B, dtype: DType, outer: number, len: number, inner: number, out: B, arg: B | null): void;

  // ---- linear algebra -------------------------------------------------------------------------
  /** C = op(A) op(B) (+ C when p.beta), plus `bias` (N) on every row of every batch when given. */
  matmul(a: B, b: B, c: B, dtype: DType, p: MatmulParams, bias?: B | null): void;
  /**
   * Optional: B of c (M, N) = a (M, K) · B (+ bias) packed once into the layout this backend's
   * product kernel reads, for weights that many calls use and none changes (a Linear layer's
   * under inference, a frozen one's in training); the layout does not depend on M.
   * matmulPackedLength gives the buffer's length (0: none for these sizes, or no such precision);
   * matmulPack fills it from b stored (K, N), or (N, K) with transB; matmulPacked is that product
   * on it, `b` being the same operand unpacked. With precision 'bf16', B is packed as bf16 and the
   * product rounds a to bf16 as well, accumulating and writing float32.
   */
  matmulPackedLength?(dtype: DType, n: number, k: number, hasBias: boolean, precision?: ComputePrecision): number;
  matmulPack?(b: B, packed: B, dtype: DType, n: number, k: number, transB: boolean, hasBias: boolean, precision?: ComputePrecision): void;
  /** Optional: whether bf16 products run in this backend's own kernels on this machine (matmulPack's 'bf16'). */
  bf16Supported?(): boolean;
  /** `act`: an activation applied to each output as it is stored (the backend's unary op of that name), or null. */
  matmulPacked?(a: B, b: B, packed: B, c: B, dtype: DType, m: number, n: number, k: number, transB: boolean, bias: B | null, act: FusedActivation | null): void;

  // ---- convolution and pooling (NCHW, contiguous) --------------------------------------------
  conv2d(x: B, w: B, bias: B | null, y: B, dtype: DType, p: ConvParams): void;
  /** conv2d with each output clamped to [lo, hi] as it is stored (a convolution fused with its ReLU / ReLU6). */
  conv2dClip(x: B, w: B, bias: B | null, y: B, dtype: DType, p: ConvParams, lo: number, hi: number): void;
  /**
   * Optional, inference only: a convolution's weights rearranged once into the layout this
   * backend's forward kernel for `p` reads, for weights that many calls use. p.dstNhwc must be
   * set; the batch and plane size do not matter. conv2dPackedLength gives the buffer's length (0:
   * no such layout for p); conv2dPack fills it from `w`; conv2dPacked is conv2d (clip null) or
   * conv2dClip on it, `w` being the same weights unpacked.
   */
  conv2dPackedLength?(dtype: DType, p: ConvParams, hasBias: boolean, clip: ConvClip): number;
  conv2dPack?(w: B, packed: B, dtype: DType, p: ConvParams, hasBias: boolean, clip: ConvClip): void;
  conv2dPacked?(x: B, w: B, packed: B, bias: B | null, y: B, dtype: DType, p: ConvParams, clip: ConvClip): void;
  conv2dBackwardData(gy: B, w: B, gx: B, dtype: DType, p: ConvParams): void;
  /** Products with a 4-bit weight (Q4Weight), dequantised chunk by chunk; y is overwritten; `bias` (rows) only with trans = false. */
  q4Linear(x: B, w: Q4Weight<B>, bias: B | null, y: B, dtype: DType, p: Q4LinearParams): void;
  /** conv2d with a 4-bit weight of groups = 1 (p.groups must be 1). */
  q4Conv2d(x: B, w: Q4Weight<B>, bias: B | null, y: B, dtype: DType, p: ConvParams): void;
  q4Conv2dBackwardData(gy: B, w: Q4Weight<B>, gx: B, dtype: DType, p: ConvParams): void;
  /** gw (and gb when given) are overwritten. */
  conv2dBackwardWeight(x: B, gy: B, gw: B, gb: B | null, dtype: DType, p: ConvParams): void;
  /** `arg` receives the flat input index (h·W + w within its plane) of each max. */
  maxPool2d(x: B, y: B, arg: B, dtype: DType, p: PoolParams): void;
  maxPool2dBackward(gy: B, arg: B, gx: B, dtype: DType, p: PoolParams): void;
  avgPool2d(x: B, y: B, dtype: DType, p: PoolParams): void;
  avgPool2dBackward(gy: B, gx: B, dtype: DType, p: PoolParams): void;
  /** Adaptive average pooling, PyTorch's bin rule: start = floor(i·H/outH), end = ceil((i+1)·H/outH). */
  adaptiveAvgPool2d(x: B, y: B, dtype: DType, n: number, c: number, h: number, w: number, outH: number, outW: number): void;
  adaptiveAvgPool2dBackward(gy: B, gx: B, dtype: DType, n: number, c: number, h: number, w: number, outH: number, outW: number): void;

  // ---- normalisation and softmax (contiguous) -------------------------------------------------
  /** x (rows, n): y = (x - mean) · rstd · gamma + beta; saves mean and rstd per row. gamma/beta may be null. */
  layerNorm(x: B, gamma: B | null, beta: B | null, y: B, mean: B, rstd: B, dtype: DType, rows: number, n: number, eps: number): void;
  /** gx overwritten; ggamma/gbeta overwritten when non-null. */
  layerNormBackward(x: B, gy: B, gamma: B | null, mean: B, rstd: B, gx: B, ggamma: B | null, gbeta: B | null, dtype: DType, rows: number, n: number): void;
  /**
   * x (B, C, S) with S = H·W. training: batch statistics are computed into mean/rstd (biased variance for
   * normalising) and runningMean/runningVar (unbiased variance) are updated with `momentum`.
   * eval: mean/rstd are derived from the running statistics.
   */
  batchNorm(x: B, gamma: B | null, beta: B | null, runningMean: B | null, runningVar: B | null, y: B, mean: B, rstd: B,
    dtype: DType, n: number, c: number, s: number, training: boolean, momentum: number, eps: number): void;
  /** Backward of batchNorm; `training` selects whether mean/rstd depend on x. */
  batchNormBackward(x: B, gy: B, gamma: B | null, mean: B, rstd: B, gx: B, ggamma: B | null, gbeta: B | null,
    dtype: DType, n: number, c: number, s: number, training: boolean): void;
  /** Softmax (or log-softmax) over the last axis of x (rows, n). */
  softmax(x: B, y: B, dtype: DType, rows: number, n: number, log: boolean): void;
  /** From the forward output y: softmax gx = y·(gy − Σ gy·y); log-softmax gx = gy − exp(y)·Σ gy. */
  softmaxBackward(y: B, gy: B, gx: B, dtype: DType, rows: number, n: number, log: boolean): void;

  // ---- attention --------------------------------------------------------------------------------
  /**
   * out = softmax(scale · q kᵀ) v; lse (B, N) keeps the row log-sum-exp for backward; `probs`
   * (B, N, M), when given, receives the probabilities, and the backward call gets it back (a
   * backend may read them there instead of recomputing them).
   */
  attention(q: B, k: B, v: B, out: B, lse: B, probs: B | null, dtype: DType, p: AttentionParams): void;
  attentionBackward(q: B, k: B, v: B, out: B, lse: B, probs: B | null, gout: B, gq: B, gk: B, gv: B, dtype: DType, p: AttentionParams): void;
  /**
   * Optional, inference only: attention on 4-D (B, H, rows, D) views with unit stride along D
   * (the heads of a qkv projection's output read in place, the output written wherever `out`
   * points); p.batch is B·H. Nothing is saved for a backward pass.
   */
  attentionStrided?(q: View<B>, k: View<B>, v: View<B>, out: View<B>, dtype: DType, p: AttentionParams & { heads: number }): void;

  // ---- indexing ---------------------------------------------------------------------------------
  /** x (outer, len, inner), idx int32 (count) → out (outer, count, inner). */
  indexSelect(x: B, idx: B, out: B, dtype: DType, outer: number, len: number, inner: number, count: number): void;
  /** gx (outer, len, inner) += scatter of gy (outer, count, inner) at idx. */
  indexAdd(gy: B, idx: B, gx: B, dtype: DType, outer: number, len: number, inner: number, count: number): void;

  // ---- resampling ---------------------------------------------------------------------------------
  interpolate(x: B, y: B, dtype: DType, p: InterpParams): void;
  /** gx overwritten. */
  interpolateBackward(gy: B, gx: B, dtype: DType, p: InterpParams): void;
}
