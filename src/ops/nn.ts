// Neural-network ops composed from primitives or with their own kernels: dropout, drop-path,
// cross-entropy, index-select/embedding, interpolation, kron.
import type { InterpMode } from '../backends/backend.js';
import { defaultGenerator, type Generator } from '../tensor/random.js';
import { fmt, normAxis, numel, ShapeError } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { arange, tensor } from './creation.js';
import { affine, cast, eq, mul, neg, add } from './elementwise.js';
import { denseData, reshape } from './layout.js';
import { mean, sum } from './reduce.js';
import { logSoftmax } from './norm.js';
import { record } from './table.js';
import { alloc, backendOf, expectFloat, expectRank } from './util.js';
import { dtypeArray } from '../tensor/dtype.js';
import { enableGrad, isGradEnabled, noGradReplayed, replay } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';

function bernoulliMask(shape: readonly number[], keep: number, like: Tensor, generator: Generator): Tensor {
  const data = new dtypeArray[like.dtype === 'float64' ? 'float64' : 'float32'](numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = generator.uniform() < keep ? 1 / keep : 0;
  return tensor(data, shape, { backend: like.backend });
}

/** Zeroes each element with probability p and scales the rest by 1/(1−p); identity when not training. */
export function dropout(x: Tensor, p: number, training: boolean, generator: Generator = defaultGenerator): Tensor {
  if (p < 0 || p >= 1) throw new RangeError(`dropout: p must be in [0, 1); got ${p}`);
  if (!training || p === 0) return x;
  return mul(x, bernoulliMask(x.shape, 1 - p, x, generator));
}

/** Stochastic depth: drops whole samples (axis 0) with probability p, scaling survivors by 1/(1−p). */
export function dropPath(x: Tensor, p: number, training: boolean, generator: Generator = defaultGenerator): Tensor {
  if (p < 0 || p >= 1) throw new RangeError(`dropPath: p must be in [0, 1); got ${p}`);
  if (!training || p === 0) return x;
  return mul(x, bernoulliMask([x.shape[0]!, ...x.shape.slice(1).map(() => 1)], 1 - p, x, generator));
}

/** One-hot rows (B, C) in `like`'s dtype from int32 labels (B). */
export function oneHot(labels: Tensor, numClasses: number, like: Tensor): Tensor {
  const classes = arange(0, numClasses, 1, { dtype: like.dtype, backend: like.backend });
  return eq(reshape(classes, [1, numClasses]), reshape(cast(labels, like.dtype), [-1, 1]));
}

export interface CrossEntropyOptions {
  labelSmoothing?: number;
  reduction?: 'mean' | 'sum' | 'none';
  /** Labels equal to this value add nothing to the loss and are left out of the mean (PyTorch's ignore_index; segmentation uses 255). */
  ignoreIndex?: number;
}

/**
 * Cross-entropy of logits (B, C) against int32 labels (B), or per pixel of logits (B, C, d…)
 * against labels (B, d…) (a segmentation map), PyTorch's definition with label smoothing ε:
 * loss = −(1−ε)·log p[y] − ε/C · Σ_c log p[c]. Labels equal to `ignoreIndex` give 0 and the
 * mean is over the others; when every label is ignored the mean is 0 (PyTorch gives NaN), so a
 * crop holding only ignored pixels does not stop training.
 */
export function crossEntropy(logits: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  expectFloat('crossEntropy', logits, 'logits');
  if (logits.rank < 2) throw new ShapeError(`crossEntropy: logits must be (B, C) or (B, C, d…); got ${logits.describe()}`);
  const spatial = logits.shape.slice(2);
  const want = [logits.shape[0]!, ...spatial];
  if (labels.dtype !== 'int32' || labels.rank !== want.length || labels.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(`crossEntropy: labels must be int32 of shape ${fmt(want)}; got ${labels.describe()}`);
  }
  const c = logits.shape[1]!;
  const ignore = opts.ignoreIndex;
  const labelArr = labels.toArray();
  let valid = 0;
  for (const y of labelArr) {
    if (y === ignore) continue;
    if (y < 0 || y >= c) throw new RangeError(`crossEntropy: label ${y} is outside [0, ${c})${ignore === undefined ? '' : ` and is not the ignore index ${ignore}`}`);
    valid++;
  }
  const eps = opts.labelSmoothing ?? 0;
  const logp = logSoftmax(logits, 1);
  // One-hot along the class axis; an ignored label matches no class, so its row is zero.
  const hot = spatial.length === 0
    ? oneHot(labels, c, logits)
    : eq(reshape(arange(0, c, 1, { dtype: logits.dtype, backend: logits.backend }), [1, c, ...spatial.map(() => 1)]), reshape(cast(labels, logits.dtype), [want[0]!, 1, ...spatial]));
  let perSample = neg(sum(mul(logp, hot), 1));
  if (eps > 0) {
    const smooth = mul(sum(logp, 1), -eps / c);
    perSample = add(mul(perSample, 1 - eps), ignore === undefined ? smooth : mul(smooth, sum(hot, 1)));
  }
  const reduction = opts.reduction ?? 'mean';
  if (reduction === 'none') return perSample;
  if (reduction === 'sum') return sum(perSample);
  return ignore === undefined ? mean(perSample) : affine(sum(perSample), 1 / Math.max(valid, 1));
}

/** Rows of x along `axis` picked by int32 `index` (torch.index_select). */
export function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  const a = normAxis('indexSelect', axis, x.rank);
  if (index.dtype !== 'int32' || index.rank !== 1) throw new ShapeError(`indexSelect: index must be a 1-D int32 tensor; got ${index.describe()}`);
  const len = x.shape[a]!;
  for (const i of index.toArray()) if (i < 0 || i >= len) throw new RangeError(`indexSelect: index ${i} is out of range for axis ${axis} of size ${len}`);
  const backend = backendOf('indexSelect', x, index);
  const outer = numel(x.shape.slice(0, a));
  const inner = numel(x.shape.slice(a + 1));
  const count = index.shape[0]!;
  const shape = [...x.shape];
  shape[a] = count;
  const xd = denseData(x);
  const id = denseData(index);
  const out = alloc(backend, shape, x.dtype);
  backend.indexSelect(xd.buf(), id.buf(), out.buf(), x.dtype, outer, len, inner, count);
  if (xd !== x) xd.dispose();
  record(out, 'indexSelect', [x], [id], (gy, [is]) => {
    const g = denseData(gy);
    const gx = alloc(backend, x.shape, x.dtype, true);
    backend.indexAdd(g.buf(), is!.buf(), gx.buf(), x.dtype, outer, len, inner, count);
    return [gx];
  });
  if (id !== index) id.dispose();
  return out;
}

/** Rows of an embedding table (V, C) for int32 ids of any shape → (…ids, C). */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  return reshape(indexSelect(weight, 0, reshape(ids, [-1])), [...ids.shape, weight.shape[1]!]);
}

export interface InterpolateOptions {
  size?: readonly [number, number];
  scaleFactor?: number | readonly [number, number];
  mode?: InterpMode;
  alignCorners?: boolean;
}

/**
 * Resizes (B, C, H, W) bilinearly or bicubically (A = −0.75) with PyTorch's
 * F.interpolate(antialias=False) index rules, including its use of a given scale factor.
 */
export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  expectFloat('interpolate', x, 'x');
  expectRank('interpolate', x, 4, 'x', 'B, C, H, W');
  const [n, c, h, w] = x.shape as [number, number, number, number];
  let outH: number;
  let outW: number;
  let scaleH: number | undefined;
  let scaleW: number | undefined;
  if (opts.size) [outH, outW] = opts.size;
  else if (opts.scaleFactor !== undefined) {
    const [sh, sw] = typeof opts.scaleFactor === 'number' ? [opts.scaleFactor, opts.scaleFactor] : opts.scaleFactor;
    outH = Math.floor(h * sh);
    outW = Math.floor(w * sw);
    scaleH = 1 / sh;
    scaleW = 1 / sw;
  } else throw new Error('interpolate: give size or scaleFactor');
  if (outH <= 0 || outW <= 0) throw new ShapeError(`interpolate: output size ${fmt([outH, outW])} must be positive`);
  const p = { n, c, h, w, outH, outW, mode: opts.mode ?? 'bilinear', alignCorners: opts.alignCorners ?? false, scaleH, scaleW } as const;
  const xd = denseData(x);
  const out = alloc(x.backend, [n, c, outH, outW], x.dtype);
  x.backend.interpolate(xd.buf(), out.buf(), x.dtype, p);
  if (xd !== x) xd.dispose();
  return record(out, 'interpolate', [x], [], (gy) => {
    const g = denseData(gy);
    const gx = alloc(gy.backend, x.shape, gy.dtype);
    gy.backend.interpolateBackward(g.buf(), gx.buf(), gy.dtype, p);
    return [gx];
  });
}

/** Kronecker product of two matrices: (a1, a2) ⊗ (b1, b2) → (a1·b1, a2·b2). */
export function kron(a: Tensor, b: Tensor): Tensor {
  expectRank('kron', a, 2, 'a');
  expectRank('kron', b, 2, 'b');
  const [a1, a2] = a.shape as [number, number];
  const [b1, b2] = b.shape as [number, number];
  return reshape(mul(reshape(a, [a1, 1, a2, 1]), reshape(b, [1, b1, 1, b2])), [a1 * b1, a2 * b2]);
}

/**
 * Gradient checkpointing: y = fn(x) computed without keeping its intermediate tensors; the
 * backward pass runs fn again with gradients on (the default generator set back to its state at
 * the forward pass, so dropout and drop-path draw the same masks) and back-propagates gy through
 * it, giving gx and accumulating into the `params` (the trainable tensors fn reads) what they
 * would get without checkpointing. fn must be a function of x and those tensors alone; the state
 * it changes must skip changing it again while isReplaying() (BatchNorm2d's running statistics do).
 */
export function checkpoint(fn: (x: Tensor) => Tensor, x: Tensor, params: readonly Tensor[], generator: Generator = defaultGenerator): Tensor {
  const trainable = params.filter((p) => p.requiresGrad);
  if (!isGradEnabled() || (!x.requiresGrad && trainable.length === 0)) return fn(x);
  const rng = generator.getState();
  // Its own memory scope: the first pass's intermediates are freed as soon as it returns.
  const out = tidy(() => noGradReplayed(() => fn(x)));
  return record(out, 'checkpoint', [x, ...trainable], [x], (gy, [xs]) => {
    const after = generator.getState();
    generator.setState(rng);
    try {
      const xi = xs!.detach();
      xi.requiresGrad = x.requiresGrad;
      const y = replay(() => enableGrad(() => fn(xi)));
      if (y.requiresGrad) y.backward(gy);
      const gx = xi.grad;
      xi.grad = null;
      return [gx, ...trainable.map(() => null)];
    } finally {
      generator.setState(after);
    }
  });
}
