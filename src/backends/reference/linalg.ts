// Reductions and matrix products of the reference backend.
import type { MatmulParams, ReduceOp } from '../backend.js';
import type { TypedArray } from '../../tensor/dtype.js';

/** x (outer, len, inner) → out (outer, inner); arg gets the first index of the max/min. */
export function reduce(op: ReduceOp, x: TypedArray, outer: number, len: number, inner: number, out: TypedArray, arg: TypedArray | null): void {
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * len * inner + i;
      if (op === 'sum') {
        let acc = 0;
        for (let l = 0; l < len; l++) acc += x[base + l * inner]!;
        out[o * inner + i] = acc;
      } else {
        let best = x[base]!;
        let at = 0;
        for (let l = 1; l < len; l++) {
          const v = x[base + l * inner]!;
          // NaN propagates, as in PyTorch.
          if ((op === 'max' ? v > best : v < best) || (v !== v && best === best)) {
            best = v;
            at = l;
          }
        }
        out[o * inner + i] = best;
        if (arg) arg[o * inner + i] = at;
      }
    }
  }
}

/** C[b] = op(A[b]) op(B[b]) (+ C[b] when beta = 1) (+ bias[j] in column j when given). */
export function matmul(a: TypedArray, b: TypedArray, c: TypedArray, p: MatmulParams, bias: TypedArray | null = null): void {
  const { m, n, k } = p;
  for (let bi = 0; bi < p.batch; bi++) {
    const oa = bi * p.strideA;
    const ob = bi * p.strideB;
    const oc = bi * p.strideC;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let l = 0; l < k; l++) {
          const av = p.transA ? a[oa + l * m + i]! : a[oa + i * k + l]!;
          const bv = p.transB ? b[ob + j * k + l]! : b[ob + l * n + j]!;
          acc += av * bv;
        }
        if (bias) acc += bias[j]!;
        c[oc + i * n + j] = p.beta ? c[oc + i * n + j]! + acc : acc;
      }
    }
  }
}
