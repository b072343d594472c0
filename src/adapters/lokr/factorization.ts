// LoKr's split of a dimension into two factors (PEFT's lokr/layer.py `factorization`, from
// KohakuBlueleaf/LyCORIS), which sets the shapes of the Kronecker factors.

/**
 * (m, n) with m · n = dimension. A positive `factor` that divides the dimension gives
 * (factor, dimension / factor) as it is (even when factor > dimension / factor). Otherwise m walks
 * up the divisors of the dimension while m < n and m ≤ factor (any divisor when factor is −1),
 * so −1 gives the divisor pair closest to √dimension; the pair is returned smaller first.
 * factorization(768) = (24, 32), factorization(127) = (1, 127), factorization(128, 4) = (4, 32).
 */
export function factorization(dimension: number, factor = -1): [number, number] {
  if (!Number.isInteger(dimension) || dimension <= 0) throw new Error(`factorization: dimension must be a positive integer; got ${dimension}`);
  if (factor > 0 && dimension % factor === 0) return [factor, dimension / factor];
  const limit = factor === -1 ? dimension : factor;
  let m = 1;
  let n = dimension;
  // PEFT also stops when m + n would exceed 1 + dimension, which no divisor pair does.
  while (m < n) {
    let next = m + 1;
    while (dimension % next !== 0) next++;
    if (next > limit) break;
    m = next;
    n = dimension / next;
  }
  return m > n ? [n, m] : [m, n];
}
