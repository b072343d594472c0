// Matrix products: matmul with batch broadcasting, and linear (x Wᵀ + b) fused.
import type { ComputePrecision, FusedActivation, MatmulParams } from '../backends/backend.js';
import { bf16Active } from './precision.js';
import { gelu, relu, silu } from './elementwise.js';
import { broadcastShapes, contiguousStrides, fmt, numel, ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { denseData, expand, reshape, sumTo, transpose, sumAxes } from './layout.js';
import { record } from './table.js';
import { needsGrad } from '../tensor/autograd.js';
import { alloc, backendOf, expectFloat, expectSameDtype, packedCopy, packingEnabled, type WeightPacks } from './util.js';

interface MatOperand {
  t: Tensor; // dense tensor whose buffer is passed
  trans: boolean; // stored as the transpose of the logical matrix
  stride: number; // elements between batch matrices (0: one matrix for every batch)
}

/** True when x is a dense tensor seen with its last two axes swapped. */
function isTransposedDense(x: Tensor): boolean {
  if (x.rank < 2 || x.offset !== 0 || x.size !== x.storage.size) return false;
  const swapped = [...x.shape];
  const r = x.rank;
  [swapped[r - 2], swapped[r - 1]] = [swapped[r - 1]!, swapped[r - 2]!];
  const st = contiguousStrides(swapped);
  [st[r - 2], st[r - 1]] = [st[r - 1]!, st[r - 2]!];
  return x.strides.every((s, i) => s === st[i] || x.shape[i] === 1);
}

/** Prepares a (…, rows, cols) operand for the batched kernel; copies only when the layout demands it. */
function operand(x: Tensor, batchShape: readonly number[]): MatOperand {
  const rows = x.shape[x.rank - 2]!;
  const cols = x.shape[x.rank - 1]!;
  const xBatch = numel(x.shape.slice(0, -2));
  const single = xBatch === 1;
  if (single || batchShape.length === x.rank - 2 && batchShape.every((d, i) => d === x.shape[i])) {
    const stride = single ? 0 : rows * cols;
    if (x.isDense()) return { t: x, trans: false, stride };
    if (isTransposedDense(x)) return { t: x, trans: true, stride };
    return { t: denseData(x), trans: false, stride };
  }
  const full = denseData(expand(x, [...batchShape, rows, cols]));
  return { t: full, trans: false, stride: rows * cols };
}

/**
 * Matrix product with NumPy semantics: 1-D operands are promoted, batch axes broadcast.
 * (…, M, K) @ (…, K, N) → (…, M, N).
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  expectFloat('matmul', a, 0);
  expectSameDtype('matmul', a, b);
  if (a.rank === 0 || b.rank === 0) throw new ShapeError(`matmul: arguments must have rank ≥ 1; got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  if (a.rank === 1) return reshape(matmul(reshape(a, [1, a.shape[0]!]), b), b.rank === 1 ? [] : [...b.shape.slice(0, -2), b.shape[b.rank - 1]!]);
  if (b.rank === 1) return reshape(matmul(a, reshape(b, [b.shape[0]!, 1])), a.shape.slice(0, -1));
  const k = a.shape[a.rank - 1]!;
  if (b.shape[b.rank - 2] !== k) {
    throw new ShapeError(`matmul: inner dimensions differ: argument 0 ${fmt(a.shape)} has K=${k}, argument 1 ${fmt(b.shape)} has K=${b.shape[b.rank - 2]}`);
  }
  // (…, M, K) @ (K, N) with a row-major: one GEMM over all rows.
  if (b.rank === 2 && a.rank > 2 && a.isContiguous()) {
    const rows = reshape(a, [-1, k]);
    return reshape(matmul(rows, b), [...a.shape.slice(0, -1), b.shape[1]!]);
  }
  const batchShape = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const m = a.shape[a.rank - 2]!;
  const n = b.shape[b.rank - 1]!;
  const backend = backendOf('matmul', a, b);
  const out = alloc(backend, [...batchShape, m, n], a.dtype);
  const A = operand(a, batchShape);
  const B = operand(b, batchShape);
  const p: MatmulParams = {
    batch: numel(batchShape), m, n, k, transA: A.trans, transB: B.trans,
    strideA: A.stride, strideB: B.stride, strideC: m * n, beta: 0,
  };
  backend.matmul(A.t.buf(), B.t.buf(), out.buf(), a.dtype, p);
  if (A.t !== a) A.t.dispose();
  if (B.t !== b) B.t.dispose();
  return record(out, 'matmul', [a, b], [a, b], (gy, [as, bs]) => [
    a.requiresGrad ? sumTo(matmul(gy, transpose(bs!)), a.shape) : null,
    b.requiresGrad ? sumTo(matmul(transpose(as!), gy), b.shape) : null,
  ]);
}

/**
 * y = x Wᵀ + b, x (…, K), W (N, K), b (N) — PyTorch's nn.functional.linear, one GEMM that adds
 * the bias itself (the backend's matmul takes it).
 */
export interface LinearOptions {
  /**
   * Inference only: where the weight's packed copy (Backend.matmulPack) is kept between calls,
   * made on first use (Conv2dOptions.packs says the same for convolutions).
   */
  packs?: WeightPacks;
  /** act(x Wᵀ + b): fused into the product on the packed path without a graph, else applied after it. */
  act?: FusedActivation;
  /**
   * 'bf16' (with `packs`, a frozen weight, and bf16 active: src/ops/precision.ts): the product and
   * the gradient to x on bf16 copies of the weight, x and the output gradient rounded to bf16.
   */
  precision?: ComputePrecision;
}

export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: LinearOptions = {}): Tensor {
  expectFloat('linear', x, 'x');
  expectSameDtype('linear', x, weight);
  if (weight.rank !== 2) throw new ShapeError(`linear: weight must be (out_features, in_features); got ${fmt(weight.shape)}`);
  const k = x.shape[x.rank - 1]!;
  const n = weight.shape[0]!;
  if (weight.shape[1] !== k) throw new ShapeError(`linear: x ${fmt(x.shape)} has ${k} features but weight ${fmt(weight.shape)} expects ${weight.shape[1]}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== n)) throw new ShapeError(`linear: bias must have shape [${n}]; got ${fmt(bias.shape)}`);
  const backend = backendOf('linear', x, weight, bias);
  const rows = x.size / k;
  const xd = denseData(x);
  // Without a graph, a weight stored (in, out) (a transposed view of a dense tensor, as inference
  // caches keep it) is read in place: the product's B operand then needs no transposition.
  const stored = n > 1 && k > 1 && !weight.isDense() && weight.isDensePermuted() && weight.strides[0] === 1 && !needsGrad([x, weight, bias]);
  const wd = stored ? weight : denseData(weight);
  const bd = bias ? denseData(bias) : null;
  const out = alloc(backend, [...x.shape.slice(0, -1), n], x.dtype);
  const graph = needsGrad([x, weight, bias]);
  const bf16 = opts.precision === 'bf16' && !weight.requiresGrad && bf16Active(backend);
  const packs = packingEnabled && opts.packs && backend.matmulPacked && (bf16 || !graph) ? opts.packs : null;
  const precision: ComputePrecision = bf16 ? 'bf16' : 'fp32';
  const packed = packs ? packedOperand(packs, wd, n, k, !stored, bias != null, precision) : null;
  if (packed) {
    const act = graph ? null : opts.act ?? null;
    backend.matmulPacked!(xd.buf(), wd.buf(), packed.buf(), out.buf(), x.dtype, rows, n, k, !stored, bd?.buf() ?? null, act);
    if (graph) {
      // A frozen weight: the gradient to x is g · W on W packed once more, (out, in) as (K, N).
      record(out, 'linear', bias ? [x, weight, bias] : [x, weight], [wd], (gy, [ws]) => {
        const g = denseData(gy);
        let gx: Tensor | null = null;
        if (x.requiresGrad) {
          gx = alloc(backend, x.shape, x.dtype);
          const back = packedOperand(packs!, ws!, k, n, false, false, precision);
          if (back) backend.matmulPacked!(g.buf(), ws!.buf(), back.buf(), gx.buf(), x.dtype, rows, k, n, false, null, null);
          else backend.matmul(g.buf(), ws!.buf(), gx.buf(), x.dtype, { batch: 1, m: rows, n: k, k: n, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, beta: 0 });
        }
        const gb = bias?.requiresGrad ? sumAxes(reshape(g, [rows, n]), [0]) : null;
        return bias ? [gx, null, gb] : [gx, null];
      });
    }
    for (const [d, o] of [[xd, x], [wd, weight], [bd, bias]] as const) if (d && d !== o) d.dispose();
    return graph && opts.act ? activation(out, opts.act) : out;
  } else {
    backend.matmul(xd.buf(), wd.buf(), out.buf(), x.dtype, {
      batch: 1, m: rows, n, k, transA: false, transB: !stored, strideA: 0, strideB: 0, strideC: 0, beta: 0,
    }, bd?.buf() ?? null);
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  record(out, 'linear', inputs, [xd, wd], (gy, [xs, ws]) => {
    const g = denseData(gy);
    let gx: Tensor | null = null;
    let gw: Tensor | null = null;
    if (x.requiresGrad) {
      gx = alloc(backend, x.shape, x.dtype);
      backend.matmul(g.buf(), ws!.buf(), gx.buf(), x.dtype, { batch: 1, m: rows, n: k, k: n, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, beta: 0 });
    }
    if (weight.requiresGrad) {
      gw = alloc(backend, weight.shape, x.dtype);
      backend.matmul(g.buf(), xs!.buf(), gw.buf(), x.dtype, { batch: 1, m: n, n: k, k: rows, transA: true, transB: false, strideA: 0, strideB: 0, strideC: 0, beta: 0 });
    }
    const gb = bias?.requiresGrad ? sumAxes(reshape(g, [rows, n]), [0]) : null;
    return bias ? [gx, gw, gb] : [gx, gw];
  });
  if (xd !== x) xd.dispose();
  if (wd !== weight) wd.dispose();
  if (bd && bd !== bias) bd.dispose();
  return opts.act ? activation(out, opts.act) : out;
}

function activation(x: Tensor, act: FusedActivation): Tensor {
  return act === 'relu' ? relu(x) : act === 'silu' ? silu(x) : gelu(x, act === 'gelu_tanh' ? 'tanh' : 'none');
}

/** The packed copy of B (K, N), stored as `w` ((N, K) when transB), made and kept in `packs` on first use; null where the backend has none. */
function packedOperand(packs: WeightPacks, w: Tensor, n: number, k: number, transB: boolean, hasBias: boolean, precision: ComputePrecision): Tensor | null {
  return packedCopy(packs, `${n},${k},${transB},${hasBias},${precision}`, w, () => w.backend.matmulPackedLength?.(w.dtype, n, k, hasBias, precision) ?? 0,
    (src, t) => w.backend.matmulPack!(src.buf(), t.buf(), w.dtype, n, k, transB, hasBias, precision));
}
