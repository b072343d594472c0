// Building blocks shared by graft's torchvision models, each with the child names torchvision
// gives it (torchvision/ops/misc.py), so state-dict keys such as `features.0.1.running_mean` or
// `trunk_output.block1.block1-0.f.a.0.weight` come out of the module tree unchanged.
import { Module } from '../../nn/module.js';
import { Activation, BatchNorm2d, Conv2d, LayerNorm, Sequential, runFolded, type ActivationName } from '../../nn/layers.js';
import { flatten, permute } from '../../ops/layout.js';
import type { Tensor } from '../../tensor/tensor.js';

/** torch.nn.Sequential built from an OrderedDict: children under the given names, applied in order. */
export class NamedSequential extends Module {
  constructor(entries: readonly (readonly [string, Module])[]) {
    super();
    for (const [name, m] of entries) this.module(name, m);
  }
  forward(x: Tensor): Tensor {
    return runFolded(this.children().map(([, m]) => m), x);
  }
}

/** torchvision.ops.misc.Permute: x.permute(dims) as a parameter-free layer. */
export class Permute extends Module {
  constructor(readonly dims: readonly number[]) {
    super();
  }
  forward(x: Tensor): Tensor {
    return permute(x, this.dims);
  }
}

/** torch.nn.Flatten(startDim). */
export class Flatten extends Module {
  constructor(readonly startDim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return flatten(x, this.startDim);
  }
}

export interface ConvNormActivationOptions {
  stride?: number;
  /** Defaults to (kernel − 1) / 2, torchvision's "same" padding for odd kernels. */
  padding?: number;
  groups?: number;
  /** 'batch': BatchNorm2d; 'layer2d': LayerNorm over channels (ConvNeXt, eps 1e-6); null: none. */
  norm?: 'batch' | 'layer2d' | null;
  activation?: ActivationName | null;
  /** Defaults to torchvision's rule: a bias only when there is no norm. */
  bias?: boolean;
}

/**
 * torchvision's Conv2dNormActivation: Sequential(conv '0', norm '1', activation) — the
 * activation is child '2', or '1' when there is no norm; layers that are absent take no index.
 */
export function conv2dNormActivation(cIn: number, cOut: number, kernel: number, opts: ConvNormActivationOptions = {}): Sequential {
  const norm = opts.norm === undefined ? 'batch' : opts.norm;
  const activation = opts.activation === undefined ? 'relu' : opts.activation;
  const layers: Module[] = [new Conv2d(cIn, cOut, kernel, {
    stride: opts.stride ?? 1, padding: opts.padding ?? Math.floor((kernel - 1) / 2), groups: opts.groups ?? 1, bias: opts.bias ?? norm === null,
  })];
  if (norm === 'batch') layers.push(new BatchNorm2d(cOut));
  if (norm === 'layer2d') layers.push(new LayerNorm(cOut, 1e-6, { channelsFirst: true }));
  if (activation) layers.push(new Activation(activation));
  return new Sequential(...layers);
}

/** Python's round(): halves go to the even neighbour (torchvision computes widths with it). */
export function pyRound(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Runs a classifier Sequential's children in order, stopping before the child named `stopAt` (the head, for pre-logits). */
export function runUntil(classifier: Module, x: Tensor, stopAt: string | null): Tensor {
  let h = x;
  for (const [name, m] of classifier.children()) {
    if (name === stopAt) break;
    h = m.forward(h);
  }
  return h;
}
