// The tensor algebra LoHa and LoKr rebuild ΔW with (KohakuBlueleaf/LyCORIS, as PEFT's
// loha/layer.py and lokr/layer.py use it), written with differentiable ops so autograd gives the
// factors' gradients.
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import { rand } from '../../ops/creation.js';
import { mul } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { permute, reshape, transpose } from '../../ops/layout.js';

/**
 * torch.nn.init.kaiming_uniform_(w, a=√5), PEFT's init for LyCORIS factors: U(−1/√fan_in, 1/√fan_in)
 * with fan_in = shape[1] · (product of the remaining dims).
 */
export function kaimingUniform(shape: number[], generator: Generator): Tensor {
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  const bound = 1 / Math.sqrt(fanIn);
  return rand(shape, { low: -bound, high: bound, generator });
}

/**
 * The CP ("Tucker") rebuild of a conv kernel, einsum("i j k l, i p, j r -> p r k l", t, wa, wb):
 * t (r, r, kh, kw), wa (r, out), wb (r, in) → (out, in, kh, kw).
 */
export function cpWeight(t: Tensor, wa: Tensor, wb: Tensor): Tensor {
  const [ri, rj, kh, kw] = t.shape as [number, number, number, number];
  const q = wb.shape[1]!;
  const p = wa.shape[1]!;
  // Σ_j t[i, j, k, l] wb[j, q] as one GEMM over (i, k, l) rows, then Σ_i wa[i, p] · (that).
  const tj = matmul(reshape(permute(t, [0, 2, 3, 1]), [ri * kh * kw, rj]), wb);
  const pi = matmul(transpose(wa), reshape(tj, [ri, kh * kw * q]));
  return permute(reshape(pi, [p, kh, kw, q]), [0, 3, 1, 2]);
}

/**
 * torch.kron of w1 (a, c) and w2 (b, d, …) as PEFT's make_kron uses it, flattened to
 * (a·b, c·(d·…)): element [i·b + j, ci·D + dj] = w1[i, ci] · w2flat[j, dj] with D = w2's row length.
 * For a conv kernel w2 (b, d, kh, kw) this is kron(w1[:, :, None, None], w2) reshaped to
 * (a·b, c·d·kh·kw), so reshaping it to the base weight's shape gives the kernel.
 */
export function kron(w1: Tensor, w2: Tensor): Tensor {
  const [a, c] = w1.shape as [number, number];
  const b = w2.shape[0]!;
  const d = w2.size / b;
  const outer = mul(reshape(w1, [a, 1, c, 1]), reshape(w2, [1, b, 1, d]));
  return reshape(outer, [a * b, c * d]);
}
