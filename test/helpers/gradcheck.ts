// Finite-difference gradient checks in float64 on the reference backend.
import { randn, sum, mul, noGrad, type Tensor } from '../../src/index.js';
import { Generator } from '../../src/tensor/random.js';

export interface GradCheckResult {
  maxErr: number;
  where: string;
}

/** Mutable host view of a dense CPU tensor's elements. */
function hostData(t: Tensor): Float64Array {
  return t.backend.read(t.buf(), t.dtype, t.offset, t.size) as Float64Array;
}

/**
 * Compares autograd gradients of L = Σ fn(inputs) ⊙ w (w random) with central differences.
 * Checks up to `maxPerInput` elements per input. Returns the worst scaled error.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: { h?: number; maxPerInput?: number; seed?: number } = {}): GradCheckResult {
  const h = opts.h ?? 1e-6;
  const gen = new Generator(opts.seed ?? 7);
  for (const x of inputs) if (x.dtype === 'float64') x.requiresGrad_(true);
  const out0 = fn(...inputs);
  const w = randn(out0.shape, { dtype: 'float64', generator: gen });
  const loss = sum(mul(out0, w));
  loss.backward();
  const objective = () => noGrad(() => sum(mul(fn(...inputs), w)).item());
  let worst: GradCheckResult = { maxErr: 0, where: '' };
  inputs.forEach((x, xi) => {
    if (x.dtype !== 'float64') return;
    const data = hostData(x);
    const analytic = x.grad ? x.grad.toArray() : new Float64Array(x.size);
    const count = Math.min(x.size, opts.maxPerInput ?? 40);
    for (let c = 0; c < count; c++) {
      const i = count === x.size ? c : gen.int(x.size);
      const orig = data[i]!;
      data[i] = orig + h;
      const up = objective();
      data[i] = orig - h;
      const down = objective();
      data[i] = orig;
      const numeric = (up - down) / (2 * h);
      const err = Math.abs(numeric - analytic[i]!) / (1e-4 + Math.abs(numeric));
      if (err > worst.maxErr) worst = { maxErr: err, where: `input ${xi} element ${i}: numeric ${numeric}, autograd ${analytic[i]}` };
    }
  });
  return worst;
}

