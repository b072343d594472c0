// Centered kernel alignment (Kornblith et al., ICML 2019) with the linear kernel, in feature
// space, on row-major (n examples × C features) matrices in float64:
//   CKA(X, Y) = ‖Yᵀ X‖_F² / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F)        (X, Y column-centred)
// and the debiased form, which replaces each HSIC term by its U-statistic (Song et al. 2007):
//   hsic_u(A, B) = ‖Bᵀ A‖_F² − n/(n−2) · Σ_i ‖a_i‖²‖b_i‖² + ‖A‖_F²‖B‖_F² / ((n−1)(n−2))
// (a_i, b_i the rows of the centred matrices), in the numerator and both normalisers. The biased estimate of two unrelated
// representations grows with C/n; the debiased one stays near 0, so it is used when n < 4·C.
// Layer features are pooled per example first (`poolFeatures`: the mean over spatial positions
// or tokens), as graft compares layers.

/** An (n × c) matrix, row-major. */
export interface FeatureMatrix {
  n: number;
  c: number;
  data: Float64Array;
}

export type CkaEstimator = 'biased' | 'debiased';

export function featureMatrix(data: ArrayLike<number>, n: number, c: number): FeatureMatrix {
  if (!Number.isInteger(n) || !Number.isInteger(c) || n < 1 || c < 1) throw new Error(`CKA: a feature matrix needs n ≥ 1 examples and c ≥ 1 features; got ${n} × ${c}`);
  if (data.length !== n * c) throw new Error(`CKA: ${data.length} values do not make a ${n} × ${c} matrix`);
  return { n, c, data: Float64Array.from(data) };
}

/** graft's rule: the debiased estimator when n < 4·C (C the wider of the two), else the biased one. */
export function defaultEstimator(n: number, cx: number, cy: number = cx): CkaEstimator {
  return n < 4 * Math.max(cx, cy) ? 'debiased' : 'biased';
}

function centred(m: FeatureMatrix): Float64Array {
  const { n, c, data } = m;
  const out = new Float64Array(n * c);
  for (let j = 0; j < c; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += data[i * c + j]!;
    const mean = s / n;
    for (let i = 0; i < n; i++) out[i * c + j] = data[i * c + j]! - mean;
  }
  return out;
}

/** ⟨vec(X Xᵀ), vec(Y Yᵀ)⟩ = ‖Yᵀ X‖_F², by whichever product is cheaper. */
function crossDot(x: Float64Array, cx: number, y: Float64Array, cy: number, n: number): number {
  if (n * n * (cx + cy) < n * cx * cy) {
    const gx = gram(x, n, cx);
    const gy = gram(y, n, cy);
    let s = 0;
    for (let i = 0; i < n * n; i++) s += gx[i]! * gy[i]!;
    return s;
  }
  let s = 0;
  const col = new Float64Array(cx);
  for (let b = 0; b < cy; b++) {
    col.fill(0);
    for (let i = 0; i < n; i++) {
      const v = y[i * cy + b]!;
      if (v === 0) continue;
      const row = i * cx;
      for (let a = 0; a < cx; a++) col[a]! += x[row + a]! * v;
    }
    for (let a = 0; a < cx; a++) s += col[a]! * col[a]!;
  }
  return s;
}

function gram(x: Float64Array, n: number, c: number): Float64Array {
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < c; k++) s += x[i * c + k]! * x[j * c + k]!;
      g[i * n + j] = s;
      g[j * n + i] = s;
    }
  }
  return g;
}

function rowNorms(x: Float64Array, n: number, c: number): Float64Array {
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < c; k++) s += x[i * c + k]! * x[i * c + k]!;
    r[i] = s;
  }
  return r;
}

/**
 * Linear CKA of two representations of the same n examples. `estimator` defaults to graft's rule
 * (debiased when n < 4·C). The debiased form needs n ≥ 4. A constant representation has no
 * similarity to anything: the result is then NaN, which callers must handle.
 */
export function linearCka(X: FeatureMatrix, Y: FeatureMatrix, estimator: CkaEstimator = defaultEstimator(X.n, X.c, Y.c)): number {
  if (X.n !== Y.n) throw new Error(`CKA: the two representations must be of the same examples; got ${X.n} and ${Y.n} rows`);
  const n = X.n;
  if (n < 2) throw new Error('CKA needs at least 2 examples');
  if (estimator === 'debiased' && n < 4) throw new Error(`the debiased CKA estimator needs at least 4 examples; got ${n}`);
  const x = centred(X);
  const y = centred(Y);
  let xy = crossDot(x, X.c, y, Y.c, n);
  let xx = crossDot(x, X.c, x, X.c, n);
  let yy = crossDot(y, Y.c, y, Y.c, n);
  if (estimator === 'debiased') {
    const rx = rowNorms(x, n, X.c);
    const ry = rowNorms(y, n, Y.c);
    let sx = 0;
    let sy = 0;
    for (let i = 0; i < n; i++) {
      sx += rx[i]!;
      sy += ry[i]!;
    }
    const u = (t: number, a: Float64Array, b: Float64Array, na: number, nb: number) => {
      let d = 0;
      for (let i = 0; i < n; i++) d += a[i]! * b[i]!;
      return t - (n / (n - 2)) * d + (na * nb) / ((n - 1) * (n - 2));
    };
    xy = u(xy, rx, ry, sx, sy);
    xx = u(xx, rx, rx, sx, sx);
    yy = u(yy, ry, ry, sy, sy);
  }
  return xy / Math.sqrt(xx * yy);
}

/**
 * The centred Gram matrix (n × n) of a representation for Gram-form CKA: H (X Xᵀ) H for the
 * biased estimator; for the debiased one the U-centring (diagonal zeroed, row means over n − 2
 * corrected by the grand mean over 2(n − 1), diagonal zeroed again). CKA of two layers is then the
 * cosine of their centred Grams (`ckaOfGrams`), which is how a whole similarity matrix is
 * computed: one Gram per layer, one n² dot product per pair.
 */
export function centredGram(m: FeatureMatrix, estimator: CkaEstimator): Float64Array {
  const { n } = m;
  if (estimator === 'debiased' && n < 4) throw new Error(`the debiased CKA estimator needs at least 4 examples; got ${n}`);
  const g = gram(estimator === 'biased' ? centred(m) : m.data, n, m.c);
  if (estimator === 'biased') return g;
  for (let i = 0; i < n; i++) g[i * n + i] = 0;
  const means = new Float64Array(n);
  let total = 0;
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += g[i * n + j]!;
    means[j] = s / (n - 2);
    total += means[j]!;
  }
  const shift = total / (2 * (n - 1));
  for (let j = 0; j < n; j++) means[j]! -= shift;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i * n + j] = i === j ? 0 : g[i * n + j]! - means[i]! - means[j]!;
  return g;
}

/** CKA from two centred Grams of the same estimator (centredGram). */
export function ckaOfGrams(a: Float64Array, b: Float64Array): number {
  if (a.length !== b.length) throw new Error('CKA: the two Gram matrices are of different example counts');
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

/**
 * Per-example features of a layer output: the mean over every axis but the batch and the channel
 * axis. `channelAxis` 1 for NCHW convolution outputs, -1 (the last) for Linear outputs ((N, T, D)
 * tokens, (N, H, W, C) channels-last maps, or plain (N, D)).
 */
export function poolFeatures(values: ArrayLike<number>, shape: readonly number[], channelAxis: 1 | -1): FeatureMatrix {
  if (shape.length < 2) throw new Error(`poolFeatures: a layer output needs a batch and a feature axis; got shape [${shape.join(', ')}]`);
  const n = shape[0]!;
  const axis = channelAxis === 1 ? 1 : shape.length - 1;
  const c = shape[axis]!;
  const out = new Float64Array(n * c);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const mid = shape.slice(1, axis).reduce((a, b) => a * b, 1);
  const per = mid * inner;
  for (let i = 0; i < n; i++) {
    const base = i * c * per;
    for (let m = 0; m < mid; m++) {
      for (let ch = 0; ch < c; ch++) {
        const off = base + (m * c + ch) * inner;
        let s = 0;
        for (let k = 0; k < inner; k++) s += values[off + k]!;
        out[i * c + ch]! += s;
      }
    }
  }
  for (let i = 0; i < out.length; i++) out[i]! /= per;
  return { n, c, data: out };
}

/** Stacks feature matrices of successive batches (same width) into one. */
export function concatRows(parts: readonly FeatureMatrix[]): FeatureMatrix {
  if (parts.length === 0) throw new Error('concatRows: no feature batches');
  const c = parts[0]!.c;
  if (parts.some((p) => p.c !== c)) throw new Error('concatRows: feature batches differ in width');
  const n = parts.reduce((a, p) => a + p.n, 0);
  const data = new Float64Array(n * c);
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return { n, c, data };
}
