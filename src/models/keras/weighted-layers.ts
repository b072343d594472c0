// Keras layers with weights, as graft layers whose parameters carry Keras's names
// (`Conv1.kernel`, `bn_Conv1.gamma`, `bn_Conv1.moving_mean`) but graft's layouts, so adapters,
// linear probing and head replacement treat them as the Conv2d / Linear / BatchNorm2d they are.
// `fromKerasLayout` turns a Keras weight into the layout of the parameter of the same name:
//   Conv2D kernel          (KH, KW, Cin, Cout)  → (Cout, Cin, KH, KW)
//   DepthwiseConv2D kernel (KH, KW, Cin, M)     → (Cin·M, 1, KH, KW), channel c·M + m, groups = Cin
//   Dense kernel           (Cin, Cout)          → (Cout, Cin)
import { Conv2d, Linear, BatchNorm2d } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import { permute, reshape } from '../../ops/layout.js';

type Pair = readonly [number, number];

/** A layer whose Keras weights need a layout change before they are copied in. */
export interface KerasWeighted {
  fromKerasLayout(param: string, value: Tensor): Tensor;
}

export function isKerasWeighted(m: unknown): m is KerasWeighted {
  return typeof (m as Partial<KerasWeighted> | null)?.fromKerasLayout === 'function';
}

export interface KerasConvOptions {
  stride: Pair;
  padding: Pair;
  dilation: Pair;
  groups?: number;
  bias: boolean;
  generator?: Generator;
}

export class KerasConv2D extends Conv2d implements KerasWeighted {
  constructor(inChannels: number, outChannels: number, kernelSize: Pair, opts: KerasConvOptions) {
    super(inChannels, outChannels, kernelSize, opts);
    this.param('weight', null);
    this.weight = this.param('kernel', this.weight);
  }
  fromKerasLayout(param: string, value: Tensor): Tensor {
    return param === 'kernel' ? permute(value, [3, 2, 0, 1]) : value;
  }
}

export class KerasDepthwiseConv2D extends Conv2d implements KerasWeighted {
  constructor(inChannels: number, readonly depthMultiplier: number, kernelSize: Pair, opts: KerasConvOptions) {
    super(inChannels, inChannels * depthMultiplier, kernelSize, { ...opts, groups: inChannels });
    this.param('weight', null);
    this.weight = this.param('depthwise_kernel', this.weight);
  }
  fromKerasLayout(param: string, value: Tensor): Tensor {
    if (param !== 'depthwise_kernel') return value;
    const [kh, kw, c, m] = value.shape as [number, number, number, number];
    return reshape(permute(value, [2, 3, 0, 1]), [c * m, 1, kh, kw]);
  }
}

export class KerasDense extends Linear implements KerasWeighted {
  constructor(inFeatures: number, units: number, opts: { bias: boolean; generator?: Generator }) {
    super(inFeatures, units, opts);
    this.param('weight', null);
    this.weight = this.param('kernel', this.weight);
  }
  fromKerasLayout(param: string, value: Tensor): Tensor {
    return param === 'kernel' ? permute(value, [1, 0]) : value;
  }
}

/**
 * Keras BatchNormalization over channels: gamma (when `scale`), beta (when `center`),
 * moving_mean and moving_variance. Keras's momentum m keeps m of the old statistic, so graft's
 * (PyTorch's) momentum is 1 − m. `frozen` starts as TF 2's rule for a layer with
 * trainable = false: it always normalises with the moving statistics.
 */
export class KerasBatchNormalization extends BatchNorm2d implements KerasWeighted {
  constructor(numFeatures: number, opts: { epsilon: number; momentum: number; scale: boolean; center: boolean; frozen: boolean }) {
    super(numFeatures, opts.epsilon, 1 - opts.momentum);
    const self = this as { weight: Tensor | null; bias: Tensor | null };
    this.param('weight', null);
    this.param('bias', null);
    self.weight = opts.scale ? this.param('gamma', this.weight) : (this.weight.dispose(), null);
    self.bias = opts.center ? this.param('beta', this.bias) : (this.bias.dispose(), null);
    this.buffer('running_mean', null);
    this.buffer('running_var', null);
    this.buffer('num_batches_tracked', null);
    this.numBatchesTracked.dispose();
    this.runningMean = this.buffer('moving_mean', this.runningMean);
    this.runningVar = this.buffer('moving_variance', this.runningVar);
    this.frozen = opts.frozen;
  }
  fromKerasLayout(_param: string, value: Tensor): Tensor {
    return value;
  }
}
