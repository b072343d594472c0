// The Mona module (Yin et al., "5%>100%", CVPR 2025), as the public code (Leiyi-Hu/mona,
// swin_transformer_mona.py: Mona, MonaOp) computes it, with its parameter names:
//   x' = norm(x)·gamma + x·gammax                 scaled LayerNorm, gamma = 1e-6, gammax = 1 (per channel)
//   z  = project1(x')                             Linear C → d (d = 64 in the reference)
//   z1 = (conv1(z) + conv2(z) + conv3(z)) / 3 + z depthwise 3×3, 5×5, 7×7 on the spatial grid
//   z2 = z1 + projector(z1)                       1×1 convolution
//   y  = x + project2(dropout(gelu(z2)))          dropout 0.1, Linear d → C
// On a ViT's tokens the prefix tokens (class, registers) pass around the convolutions: they go
// through the scaled norm, project1, GELU, dropout and project2, and the patch tokens are
// reshaped to their grid for MonaOp. A channels-first map (ConvNeXt) is made channels-last first.
import { Module } from '../../nn/module.js';
import { Conv2d, LayerNorm, Linear } from '../../nn/layers.js';
import type { StreamLayout } from '../../nn/residual-taps.js';
import { full, ones, randn, zeros } from '../../ops/creation.js';
import { add, gelu, mul } from '../../ops/elementwise.js';
import { assign, concat, permute, reshape, slice } from '../../ops/layout.js';
import { dropout } from '../../ops/nn.js';
import { noGrad } from '../../tensor/autograd.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import type { Tensor } from '../../tensor/tensor.js';
import { ShapeError } from '../../tensor/shape.js';

/** The multi-cognitive convolutions: three depthwise filters averaged plus identity, then a 1×1 projector plus identity, on (B, d, H, W). */
export class MonaOp extends Module {
  conv1: Conv2d;
  conv2: Conv2d;
  conv3: Conv2d;
  projector: Conv2d;
  constructor(readonly features: number, generator: Generator = defaultGenerator) {
    super();
    const dw = (k: number) => new Conv2d(features, features, k, { padding: Math.floor(k / 2), groups: features, generator });
    this.conv1 = this.module('conv1', dw(3));
    this.conv2 = this.module('conv2', dw(5));
    this.conv3 = this.module('conv3', dw(7));
    this.projector = this.module('projector', new Conv2d(features, features, 1, { generator }));
  }
  forward(x: Tensor): Tensor {
    const sum3 = add(add(this.conv1.forward(x), this.conv2.forward(x)), this.conv3.forward(x));
    const z1 = add(mul(sum3, 1 / 3), x);
    return add(z1, this.projector.forward(z1));
  }
}

export interface MonaOptions {
  /** Inner width d (the reference: 64). */
  dim: number;
  /** Dropout after the GELU (the reference: 0.1). */
  dropout: number;
  /** project2 starts at zero, so the module is the identity at init (not the reference, whose project2 starts as a 0.02-std normal). */
  zeroInitUp: boolean;
  generator?: Generator;
}

export class Mona extends Module {
  project1: Linear;
  project2: Linear;
  adapter_conv: MonaOp;
  norm: LayerNorm;
  gamma: Tensor;
  gammax: Tensor;
  readonly dropoutRate: number;

  constructor(readonly channels: number, o: MonaOptions) {
    super();
    const gen = o.generator ?? defaultGenerator;
    this.dropoutRate = o.dropout;
    // Creation order as the reference's __init__: project1, project2, MonaOp, norm, gamma, gammax.
    this.project1 = this.module('project1', new Linear(channels, o.dim, { generator: gen }));
    this.project2 = this.module('project2', new Linear(o.dim, channels, { generator: gen }));
    this.adapter_conv = this.module('adapter_conv', new MonaOp(o.dim, gen));
    this.norm = this.module('norm', new LayerNorm(channels));
    this.gamma = this.param('gamma', full([channels], 1e-6));
    this.gammax = this.param('gammax', ones([channels]));
    // The reference backbone's init_weights applies timm's trunc_normal_(std=.02) (bounds ±2,
    // never reached at that width) and zero biases to every Linear, Mona's two included; the
    // convolutions keep PyTorch's default init.
    noGrad(() => {
      assign(this.project1.weight, randn(this.project1.weight.shape, { std: 0.02, generator: gen }));
      assign(this.project1.bias!, zeros([o.dim]));
      assign(this.project2.weight, o.zeroInitUp ? zeros(this.project2.weight.shape) : randn(this.project2.weight.shape, { std: 0.02, generator: gen }));
      assign(this.project2.bias!, zeros([channels]));
    });
  }

  /** The convolutions on the d-wide stream `z` laid out as `layout` says (channels last in every case). */
  private convolve(z: Tensor, layout: StreamLayout): Tensor {
    const onGrid = (g: Tensor) => permute(this.adapter_conv.forward(permute(g, [0, 3, 1, 2])), [0, 2, 3, 1]);
    if (layout.kind !== 'tokens') return onGrid(z);
    const [b, n, d] = z.shape as [number, number, number];
    const { prefix, grid: [h, w] } = layout;
    if (n !== prefix + h * w) throw new ShapeError(`Mona: ${n} tokens do not make ${prefix} prefix tokens and a ${h}×${w} patch grid`);
    const patches = reshape(onGrid(reshape(slice(z, 1, prefix), [b, h, w, d])), [b, h * w, d]);
    return prefix > 0 ? concat([slice(z, 1, 0, prefix), patches], 1) : patches;
  }

  /** x in `layout` → x + Mona(x), same layout. */
  forwardLayout(x: Tensor, layout: StreamLayout): Tensor {
    if (layout.kind === 'channels-first') return permute(this.forwardLayout(permute(x, [0, 2, 3, 1]), { kind: 'channels-last' }), [0, 3, 1, 2]);
    if (x.shape[x.rank - 1] !== this.channels) throw new ShapeError(`Mona: expected ${this.channels} channels last, got ${x.describe()}`);
    const scaled = add(mul(this.norm.forward(x), this.gamma), mul(x, this.gammax));
    const z = this.convolve(this.project1.forward(scaled), layout);
    return add(x, this.project2.forward(dropout(gelu(z), this.dropoutRate, this.training)));
  }

  /** (B, H, W, C) → (B, H, W, C) (a channels-last map). */
  forward(x: Tensor): Tensor {
    return this.forwardLayout(x, { kind: 'channels-last' });
  }
}

/** Parameters of one Mona module on width C with inner width d: norm and gammas 4C, project1 (C+1)d, project2 (d+1)C, MonaOp 83d + 3d + d² + d (133·C + 9728 at d = 64). */
export function monaParameterCount(channels: number, dim: number): number {
  const op = dim * (9 + 25 + 49) + 3 * dim + dim * dim + dim;
  return 4 * channels + (channels + 1) * dim + (dim + 1) * channels + op;
}
