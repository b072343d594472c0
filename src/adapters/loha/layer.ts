// LoHa (Hyeon-Woo et al., FedPara; PEFT's loha/layer.py): ΔW = ((w1_a w1_b) ⊙ (w2_a w2_b)) · alpha / r,
// a Hadamard product of two rank-r matrices, so rank up to r². A Conv2d uses the kernel flattened
// to (out, in/groups · kh · kw), or with use_effective_conv2d (kernels other than 1×1) the CP
// form per factor: cp(t1, w1_a, w1_b) ⊙ cp(t2, w2_a, w2_b).
import { Conv2d, type Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { affine, mul } from '../../ops/elementwise.js';
import { linear, matmul } from '../../ops/matmul.js';
import { reshape } from '../../ops/layout.js';
import { conv2d } from '../../ops/conv.js';
import { zeros } from '../../ops/creation.js';
import { LycorisLayer, type LycorisAdapterOptions } from '../lycoris/layer.js';
import { cpWeight, kaimingUniform } from '../lycoris/weights.js';

export const LOHA_DICTS = ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b', 'hada_t1', 'hada_t2'] as const;

export interface LohaLayerOptions extends Omit<LycorisAdapterOptions, 'rankDropoutScale'> {
  useEffectiveConv2d: boolean;
  initWeights: boolean;
  generator?: Generator;
}

export class LohaLayer extends LycorisLayer {
  readonly adapterDicts = LOHA_DICTS;
  protected readonly methodName = 'LoHa';

  constructor(base: Linear | Conv2d) {
    super(base, LOHA_DICTS);
  }

  /** Whether adapter `name` uses the CP (effective conv) form. */
  isEffectiveConv(name: string): boolean {
    return this.hasFactor('hada_t1', name);
  }

  /** Adds adapter `name`: w1_a, w1_b, w2_a (and t1, t2) kaiming-uniform, w2_b = 0 (PEFT's init_weights=True). */
  addAdapter(name: string, o: LohaLayerOptions): void {
    // LoHa always rescales rank dropout by the kept share (PEFT's LoHa has no rank_dropout_scale).
    this.beginAdapter(name, { r: o.r, alpha: o.alpha, rankDropout: o.rankDropout, moduleDropout: o.moduleDropout, rankDropoutScale: true });
    const gen = o.generator ?? defaultGenerator;
    const base = this.base_layer;
    const r = o.r;
    const w2b = (shape: number[]) => (o.initWeights ? zeros(shape) : kaimingUniform(shape, gen));
    noGrad(() => {
      if (base instanceof Conv2d) {
        const [kh, kw] = base.kernelSize;
        const inPerGroup = base.inChannels / base.groups;
        // 1×1 kernels never take the CP form (PEFT: it would only add reshapes to a matrix product).
        if (o.useEffectiveConv2d && !(kh === 1 && kw === 1)) {
          this.setFactor('hada_t1', name, kaimingUniform([r, r, kh, kw], gen));
          this.setFactor('hada_w1_a', name, kaimingUniform([r, base.outChannels], gen));
          this.setFactor('hada_w1_b', name, kaimingUniform([r, inPerGroup], gen));
          this.setFactor('hada_t2', name, kaimingUniform([r, r, kh, kw], gen));
          this.setFactor('hada_w2_a', name, kaimingUniform([r, base.outChannels], gen));
          this.setFactor('hada_w2_b', name, w2b([r, inPerGroup]));
          return;
        }
        this.matrixFactors(name, r, base.outChannels, inPerGroup * kh * kw, gen, w2b);
      } else this.matrixFactors(name, r, base.outFeatures, base.inFeatures, gen, w2b);
    });
  }

  private matrixFactors(name: string, r: number, out: number, inFlat: number, gen: Generator, w2b: (shape: number[]) => Tensor): void {
    this.setFactor('hada_w1_a', name, kaimingUniform([out, r], gen));
    this.setFactor('hada_w1_b', name, kaimingUniform([r, inFlat], gen));
    this.setFactor('hada_w2_a', name, kaimingUniform([out, r], gen));
    this.setFactor('hada_w2_b', name, w2b([r, inFlat]));
  }

  /**
   * base_op(x, ΔW) through the rank-r² factors ΔW = U V, U[o, (p, q)] = s · w1_a[o, p] · w2_a[o, q]
   * and V[(p, q), i] = w1_b[p, i] · w2_b[q, i] (i over in · kh · kw for a Conv2d: V as an
   * r²-channel convolution, then U as a 1×1): forward and backward cost about 3 r² (in + out)
   * multiply-adds per output position against in · out for ΔW's own gradient, so it is taken where
   * that is less (not for the CP form or a grouped convolution).
   */
  protected override factorDelta(name: string, x: Tensor): Tensor | null {
    const base = this.base_layer;
    if (this.isEffectiveConv(name) || (base instanceof Conv2d && base.groups !== 1)) return null;
    const f = (d: string) => this.factor(d, name);
    const [out, r] = f('hada_w1_a').shape as [number, number];
    const inFlat = f('hada_w1_b').shape[1]!;
    if (3 * r * r * (inFlat + out) >= inFlat * out) return null;
    const w1a = affine(f('hada_w1_a'), this.scaling(name));
    const u = reshape(mul(reshape(w1a, [out, r, 1]), reshape(f('hada_w2_a'), [out, 1, r])), [out, r * r]);
    const v = reshape(mul(reshape(f('hada_w1_b'), [r, 1, inFlat]), reshape(f('hada_w2_b'), [1, r, inFlat])), [r * r, inFlat]);
    if (!(base instanceof Conv2d)) return linear(linear(x, v), u);
    const h = conv2d(x, reshape(v, [r * r, base.inChannels, ...base.kernelSize]), null, base.convOptions);
    return conv2d(h, reshape(u, [out, r * r, 1, 1]));
  }

  deltaWeight(name: string): Tensor {
    const f = (d: string) => this.factor(d, name);
    // alpha / r scales the small factor w1_a rather than the full-size product (one pass less over ΔW each way).
    const w1a = affine(f('hada_w1_a'), this.scaling(name));
    const hadamard = this.isEffectiveConv(name)
      ? mul(cpWeight(f('hada_t1'), w1a, f('hada_w1_b')), cpWeight(f('hada_t2'), f('hada_w2_a'), f('hada_w2_b')))
      : mul(matmul(w1a, f('hada_w1_b')), matmul(f('hada_w2_a'), f('hada_w2_b')));
    return reshape(hadamard, this.base_layer.weight.shape);
  }
}
