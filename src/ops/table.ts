// The op table: every function src/ops exports, with its gradient rule (or "composed", or an
// explicit "none" with the reason) and the named cases the conformance and gradient checks run.
//
// It is exhaustive by type ({ [P in OpName]: OpEntry }, OpName being every function exported
// from ./index.ts), so an op exported without an entry does not compile; and ops record through
// `record` below, whose name must be an op whose entry has a rule, so an op cannot put on the tape
// a name the table lacks or calls composed. The backward closures stay in the family files, next
// to their forwards; `rule` states the formula they implement.
import { record as recordOnTape, type BackwardFn } from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import type * as ops from './index.js';

/** Every function src/ops exports. */
export type OpName = { [K in keyof typeof ops]: (typeof ops)[K] extends (...args: never[]) => unknown ? K : never }[keyof typeof ops];

export type Gradient =
  /** The op records its own backward (in its family file) under its name. */
  | { readonly kind: 'rule'; readonly rule: string }
  /** The op is built from other ops of the table, whose rules give its gradient. */
  | { readonly kind: 'composed'; readonly of: readonly OpName[] }
  | { readonly kind: 'none'; readonly reason: string };

export interface OpEntry {
  readonly gradient: Gradient;
  /**
   * Names of cases in test/helpers/op-cases.ts (one case may serve several ops). Conformance
   * (native against reference) runs every case; the float64 gradient check runs the cases of ops
   * with a gradient.
   */
  readonly cases: readonly [string, ...string[]];
}

const rule = (formula: string) => ({ kind: 'rule', rule: formula }) as const;
const composed = <const O extends readonly OpName[]>(...of: O) => ({ kind: 'composed', of }) as const;
const none = (reason: string) => ({ kind: 'none', reason }) as const;

const CREATES = 'creates a leaf from host data, a constant or a draw; requiresGrad makes it a parameter, and nothing flows into it';
const COMPARES = '0/1 outputs, piecewise constant in the inputs: the gradient is zero almost everywhere (PyTorch gives none)';

// "summed to shape": gradients of broadcast inputs are summed over the broadcast axes (sumTo).
export const opTable = {
  // creation
  tensor: { gradient: none(CREATES), cases: ['tensor'] },
  full: { gradient: none(CREATES), cases: ['full'] },
  zeros: { gradient: none(CREATES), cases: ['zeros ones'] },
  ones: { gradient: none(CREATES), cases: ['zeros ones'] },
  zerosLike: { gradient: none(CREATES), cases: ['zerosLike onesLike'] },
  onesLike: { gradient: none(CREATES), cases: ['zerosLike onesLike'] },
  arange: { gradient: none(CREATES), cases: ['arange'] },
  rand: { gradient: none(CREATES), cases: ['rand'] },
  randn: { gradient: none(CREATES), cases: ['randn'] },
  randint: { gradient: none(CREATES), cases: ['randint'] },

  // layout
  assign: { gradient: none('writes into an existing tensor outside autograd (optimiser steps, loaded weights, running statistics)'), cases: ['assign'] },
  denseData: { gradient: none('a dense copy for kernels, outside autograd (x itself when already dense); contiguous is its recorded form'), cases: ['denseData'] },
  sumTo: { gradient: none('sums gradients of broadcasts inside backward rules, outside autograd; sum is its recorded form'), cases: ['sumTo'] },
  sumAxes: { gradient: none('the kernel-level sum inside sum and the backward rules, outside autograd; sum is its recorded form'), cases: ['sumAxes'] },
  contiguous: { gradient: rule('gx = gy'), cases: ['contiguous'] },
  reshape: { gradient: rule('gx = gy reshaped to x\'s shape'), cases: ['reshape permute slice'] },
  flatten: { gradient: composed('reshape'), cases: ['flatten'] },
  unsqueeze: { gradient: composed('reshape'), cases: ['unsqueeze squeeze'] },
  squeeze: { gradient: rule('gx = gy reshaped to x\'s shape (squeeze is a view that drops size-1 axes)'), cases: ['unsqueeze squeeze'] },
  permute: { gradient: rule('gx = gy permuted by the inverse permutation'), cases: ['reshape permute slice'] },
  transpose: { gradient: composed('permute'), cases: ['contiguous', 'matmul transposed view'] },
  expand: { gradient: rule('gx = gy summed over the expanded axes'), cases: ['expand'] },
  slice: { gradient: rule('gx = zeros with gy written into the sliced window'), cases: ['reshape permute slice', 'slice step'] },
  select: { gradient: composed('slice', 'squeeze'), cases: ['select split'] },
  split: { gradient: composed('slice'), cases: ['select split'] },
  concat: { gradient: rule('each input gets its part of gy along the axis'), cases: ['concat stack'] },
  stack: { gradient: composed('unsqueeze', 'concat'), cases: ['concat stack'] },
  pad: { gradient: rule('gx = gy with the padding sliced off'), cases: ['pad'] },

  // elementwise
  neg: { gradient: rule('gx = −gy'), cases: ['neg'] },
  exp: { gradient: rule('gx = gy · exp(x)'), cases: ['exp'] },
  log: { gradient: rule('gx = gy / x'), cases: ['log'] },
  sqrt: { gradient: rule('gx = gy / (2√x)'), cases: ['sqrt'] },
  rsqrt: { gradient: rule('gx = −gy / (2 x^(3/2))'), cases: ['rsqrt'] },
  abs: { gradient: rule('gx = gy · sign(x), 0 at x = 0'), cases: ['abs'] },
  sign: { gradient: none('piecewise constant: the gradient is zero wherever it is defined (as PyTorch)'), cases: ['sign'] },
  square: { gradient: rule('gx = 2x · gy'), cases: ['square'] },
  reciprocal: { gradient: rule('gx = −gy / x²'), cases: ['reciprocal'] },
  erfOp: { gradient: rule('gx = gy · 2/√π · exp(−x²)'), cases: ['erf'] },
  relu: { gradient: rule('gx = gy where x > 0 (0 at x = 0, as PyTorch)'), cases: ['relu'] },
  relu6: { gradient: rule('gx = gy where 0 < x < 6'), cases: ['relu6'] },
  sigmoid: { gradient: rule('gx = gy · s(1 − s), s = sigmoid(x)'), cases: ['sigmoid'] },
  tanh: { gradient: rule('gx = gy · (1 − tanh²x)'), cases: ['tanh'] },
  gelu: { gradient: rule('erf form: gx = gy · (Φ(x) + x·φ(x)); tanh form: the derivative of 0.5x(1 + tanh u), u = √(2/π)(x + 0.044715x³)'), cases: ['gelu', 'gelu tanh'] },
  silu: { gradient: rule('gx = gy · s(1 + x(1 − s)), s = sigmoid(x)'), cases: ['silu'] },
  hardswish: { gradient: rule('gx = gy · (0 below −3, 1 above 3, (2x + 3)/6 between)'), cases: ['hardswish'] },
  clamp: { gradient: rule('gx = gy where lo ≤ x ≤ hi'), cases: ['clamp'] },
  affine: { gradient: rule('gx = a · gy'), cases: ['affine'] },
  add: { gradient: rule('ga = gy, gb = gy, summed to shape; a number operand makes it affine'), cases: ['add broadcast'] },
  sub: { gradient: rule('ga = gy, gb = −gy, summed to shape; a number operand makes it affine'), cases: ['sub broadcast'] },
  mul: { gradient: rule('ga = gy · b, gb = gy · a, summed to shape; a number operand makes it affine'), cases: ['mul broadcast'] },
  div: { gradient: rule('ga = gy / b, gb = −gy · out / b, summed to shape'), cases: ['div'] },
  maximum: { gradient: rule('gy goes to the larger input, half to each on ties (as PyTorch), summed to shape'), cases: ['maximum'] },
  minimum: { gradient: rule('gy goes to the smaller input, half to each on ties (as PyTorch), summed to shape'), cases: ['minimum'] },
  pow: { gradient: rule('ga = gy · b · a^(b−1), gb = gy · out · log a, summed to shape; a number exponent p: gx = gy · p · x^(p−1)'), cases: ['pow tensor', 'pow scalar'] },
  eq: { gradient: none(COMPARES), cases: ['eq'] },
  lt: { gradient: none(COMPARES), cases: ['lt le'] },
  le: { gradient: none(COMPARES), cases: ['lt le'] },
  gt: { gradient: none(COMPARES), cases: ['gt ge'] },
  ge: { gradient: none(COMPARES), cases: ['gt ge'] },
  where: { gradient: rule('ga = gy where cond ≠ 0, gb = gy elsewhere, summed to shape; cond takes none'), cases: ['where'] },
  cast: { gradient: rule('between float dtypes gx = gy cast back to x\'s dtype; a cast to or from an integer dtype records none'), cases: ['cast'] },

  // reductions
  sum: { gradient: rule('gx = gy broadcast back over the summed axes'), cases: ['sum axes keepDims', 'sum all'] },
  mean: { gradient: composed('sum', 'mul'), cases: ['mean'] },
  maxAlong: { gradient: rule('gy goes to the first maximal element along the axis (PyTorch\'s max(dim))'), cases: ['max axis'] },
  minAlong: { gradient: rule('gy goes to the first minimal element along the axis (PyTorch\'s min(dim))'), cases: ['min axis'] },
  max: { gradient: rule('gy is shared equally among tied maxima'), cases: ['max all'] },
  min: { gradient: rule('gy is shared equally among tied minima'), cases: ['min axes'] },
  argmax: { gradient: none('integer indices'), cases: ['argmax'] },
  variance: { gradient: composed('mean', 'sub', 'square', 'sum', 'mul'), cases: ['var'] },
  norm: { gradient: rule('p = 2: gx = gy · x / ‖x‖, 0 where ‖x‖ = 0 (PyTorch\'s subgradient); p = 1 is composed of abs and sum'), cases: ['norm', 'norm p1'] },

  // matrix products
  matmul: { gradient: rule('ga = gy bᵀ, gb = aᵀ gy, batch axes summed to shape'), cases: ['matmul 2d', 'matmul batched broadcast', 'matmul transposed view', 'matmul vector'] },
  linear: { gradient: rule('gx = gy W, gW = gyᵀ x over all rows, gb = Σ_rows gy'), cases: ['linear', 'linear no bias'] },
  checkpoint: { gradient: rule('recomputes fn with gradients on and back-propagates gy through it: gx, and the parameters fn reads accumulate their gradients directly'), cases: ['checkpoint'] },
  linear4bit: { gradient: rule('gx = gy W with W dequantised chunk by chunk, gb = Σ_rows gy; the 4-bit weight is frozen (no gradient)'), cases: ['linear4bit'] },
  conv2d4bit: { gradient: rule('gx = conv2d\'s backward-data with W dequantised chunk by chunk, gb = Σ gy over batch and space; the 4-bit weight is frozen'), cases: ['conv2d4bit'] },

  // convolution and pooling
  conv2d: {
    gradient: rule('gx = the transposed convolution of gy with W (backward-data kernel); gW = the correlation of x with gy, gb = Σ gy over B, H, W (backward-weight kernel)'),
    cases: ['conv2d', 'conv2d dilated', 'conv2d grouped', 'conv2d depthwise', 'conv2d pointwise', 'conv2d depthwise dilated bias', 'conv2d depthwise 7x7 stride 2'],
  },
  conv2dAct: {
    gradient: rule("act(conv2d(x, W, b)) with act ReLU or ReLU6 fused into the convolution's store: gz = gy where lo < y < hi (the saved output), then conv2d's gx, gW, gb from gz"),
    cases: ['conv2dAct relu6 depthwise', 'conv2dAct relu pointwise', 'conv2dAct relu6 stride 2', 'conv2dAct relu grouped'],
  },
  maxPool2d: { gradient: rule('gy goes to the maximal element of each window (the saved argmax)'), cases: ['maxPool2d', 'maxPool2d padded'] },
  avgPool2d: { gradient: rule('gy spread evenly over each window, divided by the window size it was averaged over'), cases: ['avgPool2d', 'avgPool2d exclude pad'] },
  adaptiveAvgPool2d: { gradient: rule('gy spread evenly over each of PyTorch\'s bins'), cases: ['adaptiveAvgPool2d'] },

  // normalisation and softmax
  layerNorm: {
    gradient: rule('with x̂ = (x − mean) · rstd and ĝ = gy · weight: gx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) over the row; gweight = Σ gy · x̂, gbias = Σ gy over rows'),
    cases: ['layerNorm'],
  },
  layerNorm2d: { gradient: composed('permute', 'layerNorm'), cases: ['layerNorm2d'] },
  batchNorm: {
    gradient: rule('training: layerNorm\'s rule per channel over (B, H, W); eval: gx = gy · weight · rstd of the running variance; gweight = Σ gy · x̂, gbias = Σ gy'),
    cases: ['batchNorm training', 'batchNorm eval'],
  },
  softmax: { gradient: rule('gx = y · (gy − Σ gy · y) along the axis'), cases: ['softmax', 'softmax axis 0'] },
  logSoftmax: { gradient: rule('gx = gy − softmax(x) · Σ gy along the axis'), cases: ['logSoftmax'] },

  // attention
  scaledDotProductAttention: {
    gradient: rule('with P = softmax(q kᵀ · scale): gv = Pᵀ gy, gS = P ⊙ (gy vᵀ − rowsum(gy ⊙ out)), gq = gS k · scale, gk = gSᵀ q · scale'),
    cases: ['attention', 'attention causal'],
  },

  // neural-network ops
  dropout: { gradient: composed('mul'), cases: ['dropout'] },
  dropPath: { gradient: composed('mul'), cases: ['dropPath'] },
  oneHot: { gradient: none('0/1 rows from integer labels'), cases: ['oneHot'] },
  crossEntropy: { gradient: composed('logSoftmax', 'oneHot', 'mul', 'sum', 'neg', 'add', 'mean', 'affine'), cases: ['crossEntropy smoothing', 'crossEntropy pixels ignore', 'crossEntropy pixels ignore smoothing'] },
  indexSelect: { gradient: rule('gx = zeros with gy\'s rows added at the picked indices (repeats accumulate)'), cases: ['indexSelect'] },
  embedding: { gradient: composed('reshape', 'indexSelect'), cases: ['embedding'] },
  interpolate: { gradient: rule('the transpose of the resampling: each output\'s gy added to the inputs it was interpolated from, with the same weights'), cases: ['interpolate bilinear', 'interpolate bicubic align', 'interpolate bicubic scale'] },
  kron: { gradient: composed('reshape', 'mul'), cases: ['kron'] },

  // transfer
  toBackend: { gradient: rule('gx = gy moved back to x\'s backend'), cases: ['toBackend'] },
} as const satisfies { readonly [P in OpName]: OpEntry };

/** Ops that record their own backward: the only names the tape accepts. */
export type RecordingOp = { [P in OpName]: (typeof opTable)[P]['gradient'] extends { kind: 'rule' } ? P : never }[OpName];

/** Every case name the table lists; test/helpers/op-cases.ts defines one case for each. */
export type OpCaseName = (typeof opTable)[OpName]['cases'][number];

/**
 * Attaches op `name`'s backward to `out` when an input requires a gradient (the tape's record;
 * see src/tensor/autograd.ts). The name must be an op whose table entry has a rule.
 */
export function record(out: Tensor, name: RecordingOp, inputs: readonly Tensor[], saved: readonly Tensor[], backward: BackwardFn): Tensor {
  return recordOnTape(out, name, inputs, saved, backward);
}
