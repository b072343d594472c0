// LoKr (Yeh et al., LyCORIS; PEFT's lokr/layer.py): ΔW = kron(w1, w2) · alpha / r with the
// dimensions split by `factorization`: out = out_l · out_k, in/groups = in_m · in_n,
// w1 (out_l, in_m), w2 (out_k, in_n[, kh, kw]). w2 is factorised (w2_a w2_b, or the CP form
// cp(t2, w2_a, w2_b) for a use_effective_conv2d kernel other than 1×1) when
// r < max(out_k, in_n) / 2; w1 = w1_a w1_b only with decompose_both and r < max(out_l, in_m) / 2.
import { Conv2d, type Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { affine } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { reshape, transpose } from '../../ops/layout.js';
import { zeros } from '../../ops/creation.js';
import { LycorisLayer, type LycorisAdapterOptions } from '../lycoris/layer.js';
import { cpWeight, kaimingUniform, kron } from '../lycoris/weights.js';
import { factorization } from './factorization.js';
import type { LokrInit } from './config.js';

export const LOKR_DICTS = ['lokr_w1', 'lokr_w1_a', 'lokr_w1_b', 'lokr_w2', 'lokr_w2_a', 'lokr_w2_b', 'lokr_t2'] as const;

export interface LokrLayerOptions extends LycorisAdapterOptions {
  useEffectiveConv2d: boolean;
  decomposeBoth: boolean;
  decomposeFactor: number;
  initWeights: LokrInit;
  generator?: Generator;
}

/** How LoKr factors a layer: the Kronecker shapes and which factors are themselves factorised. */
export interface LokrShape {
  outL: number;
  outK: number;
  inM: number;
  inN: number;
  /** Kernel (kh, kw) of a Conv2d, null for a Linear. */
  kernel: [number, number] | null;
  fullW1: boolean;
  fullW2: boolean;
  /** w2 in the CP form with lokr_t2. */
  effectiveConv: boolean;
}

/** PEFT's update_layer shape rule for LoKr on `base` at rank r. */
export function lokrShape(base: Linear | Conv2d, r: number, o: Pick<LokrLayerOptions, 'useEffectiveConv2d' | 'decomposeBoth' | 'decomposeFactor'>): LokrShape {
  const conv = base instanceof Conv2d;
  const inDim = conv ? base.inChannels / base.groups : base.inFeatures;
  const outDim = conv ? base.outChannels : base.outFeatures;
  const [inM, inN] = factorization(inDim, o.decomposeFactor);
  const [outL, outK] = factorization(outDim, o.decomposeFactor);
  const kernel = conv ? base.kernelSize : null;
  const fullW1 = !(o.decomposeBoth && r < Math.max(outL, inM) / 2);
  const fullW2 = r >= Math.max(outK, inN) / 2;
  const effectiveConv = !fullW2 && kernel !== null && o.useEffectiveConv2d && !(kernel[0] === 1 && kernel[1] === 1);
  return { outL, outK, inM, inN, kernel, fullW1, fullW2, effectiveConv };
}

export class LokrLayer extends LycorisLayer {
  readonly adapterDicts = LOKR_DICTS;
  protected readonly methodName = 'LoKr';

  constructor(base: Linear | Conv2d) {
    super(base, LOKR_DICTS);
  }

  /** Adds adapter `name` with PEFT's factor shapes and init (true: w1 or w1_a zero; 'lycoris': w2 or w2_b zero). */
  addAdapter(name: string, o: LokrLayerOptions): void {
    this.beginAdapter(name, o);
    const gen = o.generator ?? defaultGenerator;
    const r = o.r;
    const sh = lokrShape(this.base_layer, r, o);
    const [kh, kw] = sh.kernel ?? [1, 1];
    const random = (shape: number[]) => kaimingUniform(shape, gen);
    const zeroWhen = (zero: boolean) => (shape: number[]) => (zero ? zeros(shape) : random(shape));
    const w1Init = zeroWhen(o.initWeights === true);
    const w2Init = zeroWhen(o.initWeights === 'lycoris');
    noGrad(() => {
      if (sh.fullW1) this.setFactor('lokr_w1', name, w1Init([sh.outL, sh.inM]));
      else {
        this.setFactor('lokr_w1_a', name, w1Init([sh.outL, r]));
        this.setFactor('lokr_w1_b', name, random([r, sh.inM]));
      }
      if (sh.fullW2) this.setFactor('lokr_w2', name, w2Init(sh.kernel ? [sh.outK, sh.inN, kh, kw] : [sh.outK, sh.inN]));
      else if (sh.effectiveConv) {
        this.setFactor('lokr_t2', name, random([r, r, kh, kw]));
        this.setFactor('lokr_w2_a', name, random([r, sh.outK]));
        this.setFactor('lokr_w2_b', name, w2Init([r, sh.inN]));
      } else {
        this.setFactor('lokr_w2_a', name, random([sh.outK, r]));
        this.setFactor('lokr_w2_b', name, w2Init([r, sh.inN * kh * kw]));
      }
    });
  }

  /** The Kronecker factors of adapter `name`, w1 scaled by alpha / r (the small factor rather than the full-size product). */
  private factors(name: string): [Tensor, Tensor] {
    const f = (d: string) => this.factor(d, name);
    const has = (d: string) => this.hasFactor(d, name);
    const w1 = has('lokr_w1') ? f('lokr_w1') : matmul(f('lokr_w1_a'), f('lokr_w1_b'));
    const w2 = has('lokr_w2') ? f('lokr_w2') : has('lokr_t2') ? cpWeight(f('lokr_t2'), f('lokr_w2_a'), f('lokr_w2_b')) : matmul(f('lokr_w2_a'), f('lokr_w2_b'));
    return [affine(w1, this.scaling(name)), w2];
  }

  deltaWeight(name: string): Tensor {
    const [w1, w2] = this.factors(name);
    return reshape(kron(w1, w2), this.base_layer.weight.shape);
  }

  /**
   * For a Linear, x kron(w1, w2)ᵀ without the Kronecker product: x seen as (rows, in_m, in_n) is multiplied by
   * w2ᵀ over in_n and by w1 over in_m, about (in_n + out_l) · in_m · out_k multiply-adds per row
   * instead of in · out, and the factors' gradients come the same way.
   */
  protected override factorDelta(name: string, x: Tensor): Tensor | null {
    if (this.base_layer instanceof Conv2d) return null;
    const [w1, w2] = this.factors(name);
    const [outL, inM] = w1.shape as [number, number];
    const [outK, inN] = w2.shape as [number, number];
    const lead = x.shape.slice(0, -1);
    const t = matmul(reshape(x, [-1, inM, inN]), transpose(w2)); // (rows, in_m, out_k)
    return reshape(matmul(w1, t), [...lead, outL * outK]); // (rows, out_l, out_k)
  }
}
