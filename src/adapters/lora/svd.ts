// Top-r singular value decomposition on the host in float64 (PiSSA initialisation): the
// eigen-decomposition of the smaller Gram matrix by cyclic Jacobi rotations.
import type { Tensor } from '../../tensor/tensor.js';
import { tensor } from '../../ops/creation.js';

/** Symmetric eigen-decomposition (cyclic Jacobi): eigenvalues and column eigenvectors, unsorted. */
function jacobiEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i]!;
  return { values, vectors: v };
}

/** W (m, n) ≈ U_r diag(S_r) Vᵀ_r with the r largest singular values. */
export function svdTopR(w: Tensor, r: number): { u: Tensor; s: number[]; vt: Tensor } {
  const [m, n] = w.shape as [number, number];
  if (r > Math.min(m, n)) throw new Error(`svd: rank ${r} exceeds min(${m}, ${n})`);
  const W = Float64Array.from(w.toArray() as ArrayLike<number>);
  const tall = m >= n;
  const k = tall ? n : m;
  // Gram matrix of the smaller side: WᵀW (n×n) when tall, else WWᵀ (m×m).
  const g = new Float64Array(k * k);
  for (let i = 0; i < k; i++)
    for (let j = i; j < k; j++) {
      let acc = 0;
      if (tall) for (let t = 0; t < m; t++) acc += W[t * n + i]! * W[t * n + j]!;
      else for (let t = 0; t < n; t++) acc += W[i * n + t]! * W[j * n + t]!;
      g[i * k + j] = acc;
      g[j * k + i] = acc;
    }
  const { values, vectors } = jacobiEigen(g, k);
  const order = Array.from({ length: k }, (_, i) => i).sort((a, b) => values[b]! - values[a]!).slice(0, r);
  const s = order.map((i) => Math.sqrt(Math.max(values[i]!, 0)));
  const U = new Float32Array(m * r);
  const Vt = new Float32Array(r * n);
  order.forEach((col, j) => {
    const sigma = s[j]!;
    if (tall) {
      // v_j is the eigenvector; u_j = W v_j / σ_j.
      for (let t = 0; t < n; t++) Vt[j * n + t] = vectors[t * k + col]!;
      for (let i = 0; i < m; i++) {
        let acc = 0;
        for (let t = 0; t < n; t++) acc += W[i * n + t]! * vectors[t * k + col]!;
        U[i * r + j] = sigma > 0 ? acc / sigma : 0;
      }
    } else {
      for (let i = 0; i < m; i++) U[i * r + j] = vectors[i * k + col]!;
      for (let t = 0; t < n; t++) {
        let acc = 0;
        for (let i = 0; i < m; i++) acc += W[i * n + t]! * vectors[i * k + col]!;
        Vt[j * n + t] = sigma > 0 ? acc / sigma : 0;
      }
    }
  });
  return { u: tensor(U, [m, r], { backend: w.backend }), s, vt: tensor(Vt, [r, n], { backend: w.backend }) };
}
