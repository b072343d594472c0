// Normalisation, softmax and attention kernels of the reference backend.
import type { AttentionParams } from '../backend.js';
import type { TypedArray } from '../../tensor/dtype.js';

// x (rows, n)
export function layerNorm(x: TypedArray, gamma: TypedArray | null, beta: TypedArray | null, y: TypedArray, mean: TypedArray, rstd: TypedArray, rows: number, n: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let mu = 0;
    for (let i = 0; i < n; i++) mu += x[o + i]!;
    mu /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[o + i]! - mu) ** 2;
    const rs = 1 / Math.sqrt(v / n + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let i = 0; i < n; i++) y[o + i] = (x[o + i]! - mu) * rs * (gamma ? gamma[i]! : 1) + (beta ? beta[i]! : 0);
  }
}

export function layerNormBackward(x: TypedArray, gy: TypedArray, gamma: TypedArray | null, mean: TypedArray, rstd: TypedArray, gx: TypedArray, ggamma: TypedArray | null, gbeta: TypedArray | null, rows: number, n: number): void {
  if (ggamma) ggamma.fill(0, 0, n);
  if (gbeta) gbeta.fill(0, 0, n);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    const mu = mean[r]!;
    const rs = rstd[r]!;
    let sumG = 0;
    let sumGX = 0;
    for (let i = 0; i < n; i++) {
      const xh = (x[o + i]! - mu) * rs;
      const g = gy[o + i]! * (gamma ? gamma[i]! : 1);
      sumG += g;
      sumGX += g * xh;
      if (ggamma) ggamma[i] = ggamma[i]! + gy[o + i]! * xh;
      if (gbeta) gbeta[i] = gbeta[i]! + gy[o + i]!;
    }
    for (let i = 0; i < n; i++) {
      const xh = (x[o + i]! - mu) * rs;
      const g = gy[o + i]! * (gamma ? gamma[i]! : 1);
      gx[o + i] = rs * (g - sumG / n - (xh * sumGX) / n);
    }
  }
}

// x (N, C, S)
export function batchNorm(x: TypedArray, gamma: TypedArray | null, beta: TypedArray | null, runningMean: TypedArray | null, runningVar: TypedArray | null,
  y: TypedArray, mean: TypedArray, rstd: TypedArray, n: number, c: number, s: number, training: boolean, momentum: number, eps: number): void {
  const count = n * s;
  for (let ch = 0; ch < c; ch++) {
    let mu: number;
    let varB: number;
    if (training) {
      mu = 0;
      for (let b = 0; b < n; b++) for (let i = 0; i < s; i++) mu += x[(b * c + ch) * s + i]!;
      mu /= count;
      varB = 0;
      for (let b = 0; b < n; b++) for (let i = 0; i < s; i++) varB += (x[(b * c + ch) * s + i]! - mu) ** 2;
      varB /= count;
      if (runningMean) runningMean[ch] = (1 - momentum) * runningMean[ch]! + momentum * mu;
      if (runningVar) runningVar[ch] = (1 - momentum) * runningVar[ch]! + momentum * (count > 1 ? (varB * count) / (count - 1) : varB);
    } else {
      if (!runningMean || !runningVar) throw new Error('batchNorm in eval mode needs running statistics');
      mu = runningMean[ch]!;
      varB = runningVar[ch]!;
    }
    const rs = 1 / Math.sqrt(varB + eps);
    mean[ch] = mu;
    rstd[ch] = rs;
    const gm = gamma ? gamma[ch]! : 1;
    const bt = beta ? beta[ch]! : 0;
    for (let b = 0; b < n; b++) for (let i = 0; i < s; i++) {
      const k = (b * c + ch) * s + i;
      y[k] = (x[k]! - mu) * rs * gm + bt;
    }
  }
}

export function batchNormBackward(x: TypedArray, gy: TypedArray, gamma: TypedArray | null, mean: TypedArray, rstd: TypedArray, gx: TypedArray, ggamma: TypedArray | null, gbeta: TypedArray | null,
  n: number, c: number, s: number, training: boolean): void {
  const count = n * s;
  for (let ch = 0; ch < c; ch++) {
    const mu = mean[ch]!;
    const rs = rstd[ch]!;
    let sumG = 0;
    let sumGX = 0;
    for (let b = 0; b < n; b++) for (let i = 0; i < s; i++) {
      const k = (b * c + ch) * s + i;
      sumG += gy[k]!;
      sumGX += gy[k]! * (x[k]! - mu) * rs;
    }
    if (ggamma) ggamma[ch] = sumGX;
    if (gbeta) gbeta[ch] = sumG;
    const gm = gamma ? gamma[ch]! : 1;
    for (let b = 0; b < n; b++) for (let i = 0; i < s; i++) {
      const k = (b * c + ch) * s + i;
      gx[k] = training ? gm * rs * (gy[k]! - sumG / count - ((x[k]! - mu) * rs * sumGX) / count) : gy[k]! * gm * rs;
    }
  }
}

export function softmax(x: TypedArray, y: TypedArray, rows: number, n: number, log: boolean): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let mx = -Infinity;
    for (let i = 0; i < n; i++) mx = Math.max(mx, x[o + i]!);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(x[o + i]! - mx);
    const lse = mx + Math.log(sum);
    for (let i = 0; i < n; i++) y[o + i] = log ? x[o + i]! - lse : Math.exp(x[o + i]! - lse);
  }
}

export function softmaxBackward(y: TypedArray, gy: TypedArray, gx: TypedArray, rows: number, n: number, log: boolean): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let dot = 0;
    for (let i = 0; i < n; i++) dot += log ? gy[o + i]! : gy[o + i]! * y[o + i]!;
    for (let i = 0; i < n; i++) gx[o + i] = log ? gy[o + i]! - Math.exp(y[o + i]!) * dot : y[o + i]! * (gy[o + i]! - dot);
  }
}

/** Row i of softmax(scale · q kᵀ) for batch b, into `prob`; returns the log-sum-exp. */
function attentionRow(q: TypedArray, k: TypedArray, b: number, i: number, p: AttentionParams, prob: Float64Array): number {
  const { n, m, d, scale } = p;
  let mx = -Infinity;
  for (let j = 0; j < m; j++) {
    if (p.causal && j > i) {
      prob[j] = -Infinity;
      continue;
    }
    let s = 0;
    for (let t = 0; t < d; t++) s += q[(b * n + i) * d + t]! * k[(b * m + j) * d + t]!;
    prob[j] = s * scale;
    mx = Math.max(mx, prob[j]!);
  }
  let sum = 0;
  for (let j = 0; j < m; j++) sum += Math.exp(prob[j]! - mx);
  const lse = mx + Math.log(sum);
  for (let j = 0; j < m; j++) prob[j] = Math.exp(prob[j]! - lse);
  return lse;
}

// q (B, N, D), k/v (B, M, D), out (B, N, D), lse (B, N), probs (B, N, M) when not null
export function attention(q: TypedArray, k: TypedArray, v: TypedArray, out: TypedArray, lse: TypedArray, probs: TypedArray | null, p: AttentionParams): void {
  const { batch, n, m, d } = p;
  const prob = new Float64Array(m);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < n; i++) {
      lse[b * n + i] = attentionRow(q, k, b, i, p, prob);
      if (probs) for (let j = 0; j < m; j++) probs[(b * n + i) * m + j] = prob[j]!;
      for (let t = 0; t < d; t++) {
        let acc = 0;
        for (let j = 0; j < m; j++) acc += prob[j]! * v[(b * m + j) * d + t]!;
        out[(b * n + i) * d + t] = acc;
      }
    }
}

// The probabilities are recomputed here whether or not the forward saved them (the same values).
export function attentionBackward(q: TypedArray, k: TypedArray, v: TypedArray, out: TypedArray, _lse: TypedArray, gout: TypedArray,
  gq: TypedArray, gk: TypedArray, gv: TypedArray, p: AttentionParams): void {
  const { batch, n, m, d, scale } = p;
  gq.fill(0, 0, batch * n * d);
  gk.fill(0, 0, batch * m * d);
  gv.fill(0, 0, batch * m * d);
  const prob = new Float64Array(m);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < n; i++) {
      attentionRow(q, k, b, i, p, prob);
      const row = (b * n + i) * d;
      let dOut = 0; // D_i = gout_i · out_i = Σ_j p_ij dP_ij
      for (let t = 0; t < d; t++) dOut += gout[row + t]! * out[row + t]!;
      for (let j = 0; j < m; j++) {
        const pj = prob[j]!;
        if (pj === 0) continue;
        const col = (b * m + j) * d;
        let dP = 0;
        for (let t = 0; t < d; t++) {
          dP += gout[row + t]! * v[col + t]!;
          gv[col + t] = gv[col + t]! + pj * gout[row + t]!;
        }
        const dS = pj * (dP - dOut) * scale;
        for (let t = 0; t < d; t++) {
          gq[row + t] = gq[row + t]! + dS * k[col + t]!;
          gk[col + t] = gk[col + t]! + dS * q[row + t]!;
        }
      }
    }
}
