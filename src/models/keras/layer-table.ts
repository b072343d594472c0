// Every Keras layer class graft imports: its shape rule and how it runs on graft tensors.
// Tensors are NCHW inside graft (Keras's NHWC), per-sample shapes are [C, H, W] or [F], and a
// Keras axis maps to graft's with kerasToGraftAxis; windows follow TensorFlow (tf-windows.ts).
import type { Module } from '../../nn/module.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import { add, affine, clamp, exp, ge, gt, maximum, minimum, mul, relu, relu6, sub, where } from '../../ops/elementwise.js';
import { concat, permute, reshape, slice } from '../../ops/layout.js';
import { adaptiveAvgPool2d } from '../../ops/conv.js';
import { max } from '../../ops/reduce.js';
import { softmax } from '../../ops/norm.js';
import { dropout } from '../../ops/nn.js';
import type { KerasLayerSpec } from './topology.js';
import { kerasActivation } from './activations.js';
import { padImage, samePads, staticSamePadding, tfPool2d, windowOutput, type Pads } from './tf-windows.js';
import { KerasBatchNormalization, KerasConv2D, KerasDense, KerasDepthwiseConv2D } from './weighted-layers.js';

/** Per-sample shape in graft's layout: [C, H, W] for images, [F] for vectors. */
export type SampleShape = readonly number[];

export interface BuiltLayer {
  /** The layer's weights under Keras's names, or null for layers without weights. */
  module: Module | null;
  outputShape(inputs: SampleShape[]): number[];
  /** Runs one call; `module` is the model's current child of this name (an adapter may have wrapped it). */
  apply(inputs: Tensor[], module: Module | null, training: boolean): Tensor;
  /** Convolutions without an activation: the padded input their Conv2d sees (for BatchNorm folding). */
  convInput?(x: Tensor): Tensor;
  /** Convolutions with padding 'valid': a ZeroPadding2D before them can fold into their padding. */
  validWindow?: boolean;
  /** ZeroPadding2D layers: [top, bottom, left, right]. */
  zeroPads?: Pads;
  /** BatchNormalization layers. */
  isBatchNorm?: boolean;
  /** Activation layers that are exactly ReLU or ReLU6 (fused into a folded convolution before them). */
  fusableActivation?: 'relu' | 'relu6';
}

type Builder = (spec: KerasLayerSpec, inputs: SampleShape[], gen?: Generator) => BuiltLayer;

class KerasConfigError extends Error {
  override name = 'KerasConfigError';
}

function fail(spec: KerasLayerSpec, msg: string): never {
  throw new KerasConfigError(`layer '${spec.name}' (${spec.className}): ${msg}`);
}

function pairOf(spec: KerasLayerSpec, key: string, fallback: number | [number, number]): [number, number] {
  const v = spec.config[key] ?? fallback;
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number')) return [v[0] as number, v[1] as number];
  return fail(spec, `${key} must be a number or a pair; got ${JSON.stringify(v)}`);
}

/** A numeric config entry; without a fallback the entry is required. */
function numberOf(spec: KerasLayerSpec, key: string, fallback?: number): number {
  const v = spec.config[key] ?? fallback;
  if (typeof v !== 'number') fail(spec, `${key} must be a number; got ${JSON.stringify(v)}`);
  return v;
}

function only(spec: KerasLayerSpec, inputs: SampleShape[], rank?: 1 | 3): SampleShape {
  if (inputs.length !== 1) fail(spec, `expects one input; got ${inputs.length}`);
  const s = inputs[0]!;
  if (rank && s.length !== rank) fail(spec, `expects ${rank === 3 ? 'an image (B, H, W, C)' : 'a vector (B, F)'} input; got per-sample shape [${s}] (graft layout)`);
  if (s.length !== 1 && s.length !== 3) fail(spec, `graft runs Keras layers on (B, F) and (B, H, W, C) tensors; got per-sample shape [${s}]`);
  return s;
}

function channelsLast(spec: KerasLayerSpec): void {
  const f = spec.config['data_format'];
  if (f !== undefined && f !== null && f !== 'channels_last') fail(spec, `data_format '${String(f)}' is not supported; TF.js models use channels_last`);
}

/** Keras axis of an NHWC (rank 4) or (B, F) tensor → graft's NCHW / (B, F) axis. */
export function kerasToGraftAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  return rank === 4 ? [0, 2, 3, 1][a]! : a;
}

/** Sliding-window geometry of a conv or pool layer. */
class Window {
  readonly kernel: [number, number];
  readonly stride: [number, number];
  readonly dilation: [number, number];
  readonly same: boolean;
  constructor(readonly spec: KerasLayerSpec, kernelKey: string, strideFallback: [number, number] | number) {
    this.kernel = pairOf(spec, kernelKey, 2);
    this.stride = spec.config['strides'] === null ? this.kernel : pairOf(spec, 'strides', strideFallback);
    this.dilation = pairOf(spec, 'dilation_rate', 1);
    const padding = spec.config['padding'] ?? 'valid';
    if (padding !== 'same' && padding !== 'valid') fail(spec, `padding '${String(padding)}' is not supported; use 'same' or 'valid'`);
    this.same = padding === 'same';
  }
  outputSize(h: number, w: number): [number, number] {
    const size: [number, number] = [0, 1].map((i) => windowOutput([h, w][i]!, this.kernel[i]!, this.stride[i]!, this.same, this.dilation[i])) as [number, number];
    if (size[0] <= 0 || size[1] <= 0) fail(this.spec, `input ${h}×${w} is smaller than the window ${this.kernel[0]}×${this.kernel[1]}`);
    return size;
  }
  /** [top, bottom, left, right] for an input of h × w. */
  pads(h: number, w: number): Pads {
    return this.same ? samePads(h, w, this.kernel, this.stride, this.dilation) : [0, 0, 0, 0];
  }
  /** Symmetric padding that holds for every input size, or null when it must be computed per input. */
  staticPadding(): [number, number] | null {
    return this.same ? staticSamePadding(this.kernel, this.stride, this.dilation) : [0, 0];
  }
}

const imageShape = (c: number, [h, w]: [number, number]) => [c, h, w];

const depthwiseClass = (spec: KerasLayerSpec) => spec.className === 'DepthwiseConv2D';

function conv2D(spec: KerasLayerSpec, inputs: SampleShape[], gen?: Generator): BuiltLayer {
  channelsLast(spec);
  const [c] = only(spec, inputs, 3);
  const win = new Window(spec, 'kernel_size', 1);
  const fixed = win.staticPadding();
  const filters = depthwiseClass(spec) ? 0 : numberOf(spec, 'filters');
  const groups = numberOf(spec, 'groups', 1);
  const depthwise = depthwiseClass(spec);
  const bias = spec.config['use_bias'] !== false;
  const opts = { stride: win.stride, padding: fixed ?? [0, 0] as [number, number], dilation: win.dilation, groups, bias, generator: gen };
  const multiplier = numberOf(spec, 'depth_multiplier', 1);
  const module = depthwise ? new KerasDepthwiseConv2D(c!, multiplier, win.kernel, opts) : new KerasConv2D(c!, filters, win.kernel, opts);
  const act = kerasActivation(spec.config['activation'] ?? 'linear', spec.name);
  return {
    module,
    outputShape: ([s]) => imageShape(depthwise ? s![0]! * multiplier : filters, win.outputSize(s![1]!, s![2]!)),
    apply: ([x], m) => act(m!.forward(fixed ? x! : padImage(x!, win.pads(x!.shape[2]!, x!.shape[3]!)))),
    ...((spec.config['activation'] ?? 'linear') === 'linear' ? { convInput: (x: Tensor) => (fixed ? x : padImage(x, win.pads(x.shape[2]!, x.shape[3]!))) } : {}),
    ...(win.same ? {} : { validWindow: true }),
  };
}

function dense(spec: KerasLayerSpec, inputs: SampleShape[], gen?: Generator): BuiltLayer {
  const s = only(spec, inputs);
  const units = numberOf(spec, 'units');
  const module = new KerasDense(s[0]!, units, { bias: spec.config['use_bias'] !== false, generator: gen });
  const act = kerasActivation(spec.config['activation'] ?? 'linear', spec.name);
  return {
    module,
    outputShape: ([s]) => [units, ...s!.slice(1)],
    // Keras's Dense acts on the last (channel) axis; graft keeps channels on axis 1.
    apply: ([x], m) => act(x!.rank === 2 ? m!.forward(x!) : permute(m!.forward(permute(x!, [0, 2, 3, 1])), [0, 3, 1, 2])),
  };
}

function batchNormalization(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  const s = only(spec, inputs);
  const rank = s.length + 1;
  const axes = [spec.config['axis'] ?? -1].flat() as number[];
  if (axes.length !== 1 || kerasToGraftAxis(axes[0]!, rank) !== 1) fail(spec, `normalises axis ${JSON.stringify(spec.config['axis'])}; graft imports BatchNormalization over the channel (last) axis`);
  const module = new KerasBatchNormalization(s[0]!, {
    epsilon: numberOf(spec, 'epsilon', 1e-3),
    momentum: numberOf(spec, 'momentum', 0.99),
    scale: spec.config['scale'] !== false,
    center: spec.config['center'] !== false,
    frozen: spec.config['trainable'] === false,
  });
  return { module, outputShape: ([s]) => [...s!], apply: ([x], m) => m!.forward(x!), isBatchNorm: true };
}

/** A layer without weights: shape rule and function. */
function pure(outputShape: (inputs: SampleShape[]) => number[], fn: (inputs: Tensor[], training: boolean) => Tensor): BuiltLayer {
  return { module: null, outputShape, apply: (xs, _m, training) => fn(xs, training) };
}

const sameShape = ([s]: SampleShape[]) => [...s!];

function reluLayer(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  only(spec, inputs);
  const maxValue = (spec.config['max_value'] ?? null) as number | null;
  const slope = numberOf(spec, 'negative_slope', 0);
  const threshold = numberOf(spec, 'threshold', 0);
  let fn: (x: Tensor) => Tensor;
  if (slope === 0 && threshold === 0) {
    fn = maxValue === null ? relu : maxValue === 6 ? relu6 : (x) => clamp(x, 0, maxValue);
    if (maxValue === null || maxValue === 6) return { ...pure(sameShape, ([x]) => fn(x!)), fusableActivation: maxValue === null ? 'relu' : 'relu6' };
  } else {
    // Keras's backend.relu: x·[x > threshold], clipped to [0, max_value] when given, minus
    // negative_slope · relu(threshold − x).
    fn = (x) => {
      let y = threshold !== 0 ? mul(x, gt(x, threshold)) : relu(x);
      if (maxValue !== null) y = clamp(y, 0, maxValue);
      return slope !== 0 ? sub(y, affine(relu(affine(x, -1, threshold)), slope)) : y;
    };
  }
  return pure(sameShape, ([x]) => fn(x!));
}

function leakyRelu(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  only(spec, inputs);
  const alpha = numberOf(spec, 'alpha', numberOf(spec, 'negative_slope', 0.3));
  return pure(sameShape, ([x]) => where(ge(x!, 0), x!, affine(x!, alpha)));
}

function eluLayer(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  only(spec, inputs);
  const alpha = numberOf(spec, 'alpha', 1);
  return pure(sameShape, ([x]) => where(ge(x!, 0), x!, affine(exp(clamp(x!, -Infinity, 0)), alpha, -alpha)));
}

function thresholdedRelu(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  only(spec, inputs);
  const theta = numberOf(spec, 'theta', 1);
  return pure(sameShape, ([x]) => mul(x!, gt(x!, theta)));
}

function zeroPadding(spec: KerasLayerSpec, inputs: SampleShape[], crop = false): BuiltLayer {
  channelsLast(spec);
  only(spec, inputs, 3);
  const key = crop ? 'cropping' : 'padding';
  const v = spec.config[key] ?? (crop ? 0 : 1);
  let amounts: [number, number, number, number];
  if (typeof v === 'number') amounts = [v, v, v, v];
  else if (Array.isArray(v) && v.every((x) => typeof x === 'number')) amounts = [v[0], v[0], v[1], v[1]] as [number, number, number, number];
  else if (Array.isArray(v) && v.every((x) => Array.isArray(x))) amounts = [...(v[0] as number[]), ...(v[1] as number[])] as [number, number, number, number];
  else return fail(spec, `${key} ${JSON.stringify(v)} is not an int, a pair, or ((top, bottom), (left, right))`);
  const [t, b, l, r] = amounts;
  if (crop) {
    return pure(([s]) => [s![0]!, s![1]! - t - b, s![2]! - l - r], ([x]) => slice(slice(x!, 2, t, x!.shape[2]! - b), 3, l, x!.shape[3]! - r));
  }
  return { ...pure(([s]) => [s![0]!, s![1]! + t + b, s![2]! + l + r], ([x]) => padImage(x!, amounts)), zeroPads: amounts };
}

function pooling(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  channelsLast(spec);
  only(spec, inputs, 3);
  const isMax = spec.className.startsWith('Max');
  const win = new Window({ ...spec, config: { ...spec.config, dilation_rate: 1 } }, 'pool_size', spec.config['strides'] === undefined ? pairOf(spec, 'pool_size', 2) : 1);
  return pure(([s]) => imageShape(s![0]!, win.outputSize(s![1]!, s![2]!)), ([x]) => tfPool2d(x!, isMax ? 'max' : 'avg', win.kernel, win.stride, win.same));
}

function globalPooling(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  channelsLast(spec);
  only(spec, inputs, 3);
  const keep = spec.config['keepdims'] === true;
  const isMax = spec.className.startsWith('GlobalMax');
  return pure(
    ([s]) => (keep ? [s![0]!, 1, 1] : [s![0]!]),
    ([x]) => {
      const pooled = isMax ? max(x!, [2, 3], { keepDims: true }) : adaptiveAvgPool2d(x!, 1);
      return keep ? pooled : reshape(pooled, [x!.shape[0]!, x!.shape[1]!]);
    },
  );
}

function flatten(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  channelsLast(spec);
  only(spec, inputs);
  // Keras flattens NHWC: move channels last first so that Dense weights line up.
  return pure(([s]) => [s!.reduce((p, d) => p * d, 1)], ([x]) => (x!.rank === 2 ? x! : reshape(permute(x!, [0, 2, 3, 1]), [x!.shape[0]!, -1])));
}

function dropoutLayer(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  only(spec, inputs);
  if (spec.config['noise_shape']) fail(spec, 'Dropout with a noise_shape is not supported; graft drops elements independently');
  const rate = numberOf(spec, 'rate', 0.5);
  return pure(sameShape, ([x], training) => dropout(x!, rate, training));
}

function activationLayer(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  only(spec, inputs);
  const fn = kerasActivation(spec.config['activation'], spec.name);
  const name = spec.config['activation'];
  return { ...pure(sameShape, ([x]) => fn(x!)), ...(name === 'relu' || name === 'relu6' ? { fusableActivation: name } : {}) };
}

function softmaxLayer(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  const s = only(spec, inputs);
  const axis = kerasToGraftAxis(numberOf(spec, 'axis', -1), s.length + 1);
  return pure(sameShape, ([x]) => softmax(x!, axis));
}

function merge(combine: (a: Tensor, b: Tensor) => Tensor, finish?: (sum: Tensor, n: number) => Tensor): Builder {
  return (spec, inputs) => {
    if (inputs.length < 2) fail(spec, `merges at least two inputs; got ${inputs.length}`);
    if (inputs.some((s) => s.join() !== inputs[0]!.join())) fail(spec, `inputs have different shapes: ${inputs.map((s) => `[${s}]`).join(', ')} (graft layout)`);
    return pure(sameShape, (xs) => {
      const out = xs.slice(1).reduce(combine, xs[0]!);
      return finish ? finish(out, xs.length) : out;
    });
  };
}

function concatenate(spec: KerasLayerSpec, inputs: SampleShape[]): BuiltLayer {
  const rank = inputs[0]!.length + 1;
  const axis = kerasToGraftAxis(numberOf(spec, 'axis', -1), rank);
  if (axis === 0) fail(spec, 'cannot concatenate along the batch axis');
  if (inputs.some((s) => s.length !== rank - 1 || s.some((d, i) => i !== axis - 1 && d !== inputs[0]![i]))) {
    fail(spec, `inputs ${inputs.map((s) => `[${s}]`).join(', ')} (graft layout) differ outside the concatenation axis`);
  }
  return pure(
    (shapes) => shapes[0]!.map((d, i) => (i === axis - 1 ? shapes.reduce((p, s) => p + s[i]!, 0) : d)),
    (xs) => concat(xs, axis),
  );
}

const BUILDERS: Record<string, Builder> = {
  Conv2D: conv2D,
  DepthwiseConv2D: conv2D,
  Dense: dense,
  BatchNormalization: batchNormalization,
  ReLU: reluLayer,
  LeakyReLU: leakyRelu,
  ELU: eluLayer,
  ThresholdedReLU: thresholdedRelu,
  Activation: activationLayer,
  Softmax: softmaxLayer,
  ZeroPadding2D: (spec, inputs) => zeroPadding(spec, inputs),
  Cropping2D: (spec, inputs) => zeroPadding(spec, inputs, true),
  MaxPooling2D: pooling,
  AveragePooling2D: pooling,
  GlobalAveragePooling2D: globalPooling,
  GlobalMaxPooling2D: globalPooling,
  Flatten: flatten,
  Dropout: dropoutLayer,
  Add: merge(add),
  Subtract: merge(sub),
  Multiply: merge(mul),
  Average: merge(add, (s, n) => affine(s, 1 / n)),
  Maximum: merge(maximum),
  Minimum: merge(minimum),
  Concatenate: concatenate,
};

/** Class names graft imports (InputLayer included). */
export const SUPPORTED_KERAS_LAYERS: readonly string[] = ['InputLayer', ...Object.keys(BUILDERS)];

export function hasKerasBuilder(className: string): boolean {
  return className in BUILDERS;
}

/** Builds one Keras layer for the per-sample shapes of its first call. */
export function buildKerasLayer(spec: KerasLayerSpec, inputs: SampleShape[], gen?: Generator): BuiltLayer {
  const builder = BUILDERS[spec.className];
  if (!builder) throw new KerasConfigError(`layer '${spec.name}' has class ${spec.className}, which graft does not import; supported: ${SUPPORTED_KERAS_LAYERS.join(', ')}`);
  return builder(spec, inputs, gen);
}
