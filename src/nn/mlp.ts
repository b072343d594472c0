// Transformer feed-forward blocks under the names of the checkpoints they load:
//   Mlp        fc1 → act → fc2                           (timm Mlp, transformers Dinov2MLP)
//   SwiGLU     weights_in → [x1 | x2] → silu(x1)·x2 → weights_out   (transformers Dinov2SwiGLUFFN)
//   UpDownMlp  up_proj → act → down_proj                 (transformers DINOv3ViTMLP)
//   GatedMlp   act(gate_proj x) · up_proj x → down_proj  (transformers DINOv3ViTGatedMLP, LLaMA style)
import { Module } from './module.js';
import { Linear } from './layers.js';
import { gelu, mul, silu } from '../ops/elementwise.js';
import { split } from '../ops/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Generator } from '../tensor/random.js';

/** The activations these blocks use: exact (erf) GELU, tanh GELU, SiLU. */
export type MlpActivation = 'gelu' | 'gelu_tanh' | 'silu';

/** The named activation of x, elementwise. */
export function activate(x: Tensor, kind: MlpActivation): Tensor {
  if (kind === 'silu') return silu(x);
  return gelu(x, kind === 'gelu_tanh' ? 'tanh' : 'none');
}

interface MlpOptions {
  bias?: boolean;
  activation?: MlpActivation;
  generator?: Generator;
}

/** x (…, C) → fc2(act(fc1 x)), hidden width H. */
export class Mlp extends Module {
  fc1: Linear;
  fc2: Linear;
  readonly activation: MlpActivation;
  constructor(inFeatures: number, hiddenFeatures: number, opts: MlpOptions = {}) {
    super();
    const lin = { bias: opts.bias ?? true, generator: opts.generator };
    this.fc1 = this.module('fc1', new Linear(inFeatures, hiddenFeatures, lin));
    this.fc2 = this.module('fc2', new Linear(hiddenFeatures, inFeatures, lin));
    this.activation = opts.activation ?? 'gelu';
  }
  forward(x: Tensor): Tensor {
    // A plain fc1 (no adapter grafted on it) applies the activation itself: fused into its product under an inference cache.
    const h = Object.getPrototypeOf(this.fc1) === Linear.prototype ? this.fc1.forwardAct(x, this.activation) : activate(this.fc1.forward(x), this.activation);
    return this.fc2.forward(h);
  }
}

/** SwiGLU with one packed input projection: weights_in (2H, C) → chunk → silu(x1)·x2 → weights_out (C, H). */
export class SwiGLU extends Module {
  weights_in: Linear;
  weights_out: Linear;
  constructor(inFeatures: number, readonly hiddenFeatures: number, opts: { generator?: Generator } = {}) {
    super();
    this.weights_in = this.module('weights_in', new Linear(inFeatures, 2 * hiddenFeatures, { generator: opts.generator }));
    this.weights_out = this.module('weights_out', new Linear(hiddenFeatures, inFeatures, { generator: opts.generator }));
  }
  forward(x: Tensor): Tensor {
    const [x1, x2] = split(this.weights_in.forward(x), [this.hiddenFeatures, this.hiddenFeatures], -1) as [Tensor, Tensor];
    return this.weights_out.forward(mul(silu(x1), x2));
  }
}

/**
 * transformers Dinov2SwiGLUFFN's hidden width: (int(C·ratio·2/3) + 7) // 8 · 8, e.g. 4096 for
 * C = 1536, ratio 4 (DINOv2 giant).
 */
export function swigluHiddenFeatures(dim: number, mlpRatio: number): number {
  const hidden = Math.trunc(dim * mlpRatio);
  return Math.floor((Math.trunc((hidden * 2) / 3) + 7) / 8) * 8;
}

/** x (…, C) → down_proj(act(up_proj x)). */
export class UpDownMlp extends Module {
  up_proj: Linear;
  down_proj: Linear;
  readonly activation: MlpActivation;
  constructor(inFeatures: number, intermediateSize: number, opts: MlpOptions = {}) {
    super();
    const lin = { bias: opts.bias ?? true, generator: opts.generator };
    this.up_proj = this.module('up_proj', new Linear(inFeatures, intermediateSize, lin));
    this.down_proj = this.module('down_proj', new Linear(intermediateSize, inFeatures, lin));
    this.activation = opts.activation ?? 'gelu';
  }
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(activate(this.up_proj.forward(x), this.activation));
  }
}

/** x (…, C) → down_proj(act(gate_proj x) · up_proj x). */
export class GatedMlp extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;
  readonly activation: MlpActivation;
  constructor(inFeatures: number, intermediateSize: number, opts: MlpOptions = {}) {
    super();
    const lin = { bias: opts.bias ?? true, generator: opts.generator };
    this.gate_proj = this.module('gate_proj', new Linear(inFeatures, intermediateSize, lin));
    this.up_proj = this.module('up_proj', new Linear(inFeatures, intermediateSize, lin));
    this.down_proj = this.module('down_proj', new Linear(intermediateSize, inFeatures, lin));
    this.activation = opts.activation ?? 'silu';
  }
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(mul(activate(this.gate_proj.forward(x), this.activation), this.up_proj.forward(x)));
  }
}
