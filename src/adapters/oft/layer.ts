// OFT (Qiu et al. 2023; PEFT's current tuners/oft) on a Linear or Conv2d: a block-diagonal
// orthogonal R rotates the layer's fan-in, y = base(x R) for a Linear, i.e. W' = W Rᵀ. Layout as
// PEFT: `oft_R.<adapter>.weight` of shape (blocks, b(b−1)/2), one row when blocks are shared.
//
// A Conv2d's fan-in is (in/groups)·kh·kw, flattened as its weight is (kh and kw each counted,
// so 3×1 kernels work). graft rotates the convolution's weight, W' = W_flat Rᵀ, exactly the
// weight PEFT's merge computes. (PEFT's unmerged Conv2d forward instead unfolds the input
// with stride 1, rotates the patches and folds them back, which sums overlapping patches and so
// is not the base convolution at R = I for kernels above 1×1; it also rejects dilation and
// grouped weights, which the weight form handles.)
import { Conv2d, ModuleDict, ParameterModule, type Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { noGrad } from '../../tensor/autograd.js';
import { keep, tidy } from '../../tensor/memory.js';
import { defaultGenerator, type Generator } from '../../tensor/random.js';
import { add, mul } from '../../ops/elementwise.js';
import { linear, matmul } from '../../ops/matmul.js';
import { conv2d } from '../../ops/conv.js';
import { assign, permute, reshape } from '../../ops/layout.js';
import { randn, tensor, zeros } from '../../ops/creation.js';
import { AdapterLayer } from '../layer.js';
import { cayleyExact, cayleyNeumann, invertBlocks, projectCoft, rotateWeight, skewSymmetric } from './rotation.js';

export interface OftLayerOptions {
  /** Blocks (already a divisor of the fan-in). */
  blocks: number;
  blockSize: number;
  moduleDropout: number;
  coft: boolean;
  eps: number;
  blockShare: boolean;
  init: boolean;
  useCayleyNeumann: boolean;
  numCayleyNeumannTerms: number;
  generator?: Generator;
}

interface AdapterState extends OftLayerOptions {
  /** R⁻¹ of the merged rotation, kept to undo the merge. */
  mergedInverse: Tensor | null;
}

export class OftLayer extends AdapterLayer {
  readonly oft_R = new ModuleDict<ParameterModule>();
  readonly adapterDicts = ['oft_R'] as const;
  private readonly adapters = new Map<string, AdapterState>();

  constructor(base: Linear | Conv2d) {
    super(base);
    this.module('oft_R', this.oft_R);
  }

  /** The fan-in OFT rotates: in_features, or (in/groups)·kh·kw. */
  static features(base: Linear | Conv2d): number {
    return base instanceof Conv2d ? (base.inChannels / base.groups) * base.kernelSize[0] * base.kernelSize[1] : base.inFeatures;
  }

  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  private adapter(name: string): AdapterState {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`OFT layer has no adapter '${name}'; it has ${this.adapterNames().join(', ') || 'none'}`);
    return a;
  }

  /** Blocks and block size of adapter `name`. */
  blocksOf(name: string): { blocks: number; blockSize: number } {
    const a = this.adapter(name);
    return { blocks: a.blocks, blockSize: a.blockSize };
  }

  addAdapter(name: string, o: OftLayerOptions): void {
    if (this.adapters.has(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    const features = OftLayer.features(this.base_layer);
    if (o.blocks * o.blockSize !== features) {
      throw new Error(`OFT: ${o.blocks} blocks of size ${o.blockSize} do not cover the layer's ${features} input features`);
    }
    const shape = [o.blockShare ? 1 : o.blocks, (o.blockSize * (o.blockSize - 1)) / 2];
    // PEFT's reset_oft_parameters: zeros (R = I), or N(0, 0.1²) with init_weights=False.
    const value = o.init ? zeros(shape) : randn(shape, { std: 0.1, generator: o.generator ?? defaultGenerator });
    this.oft_R.set(name, new ParameterModule(value));
    this.adapters.set(name, { ...o, mergedInverse: null });
    this.activeAdapter ??= name;
  }

  deleteAdapter(name: string): void {
    this.adapter(name);
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is merged; unmerge before deleting it`);
    this.oft_R.get(name)!.dispose();
    this.oft_R.delete(name);
    this.adapters.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = this.adapterNames()[0] ?? null;
  }

  canMerge(): boolean {
    return true;
  }

  /** The stored rotation blocks R (D, b, b), D = blocks or 1 when shared; in training, module dropout replaces some by I. */
  rotation(name: string): Tensor {
    const a = this.adapter(name);
    const v = this.oft_R.get(name)!.weight;
    if (a.coft) projectCoft(v, a.eps);
    const q = skewSymmetric(v, a.blockSize);
    const r = a.useCayleyNeumann ? cayleyNeumann(q, a.numCayleyNeumannTerms) : cayleyExact(q);
    return this.training && a.moduleDropout > 0 ? this.dropBlocks(r, a.moduleDropout, a.generator ?? defaultGenerator) : r;
  }

  /**
   * PEFT's MultiplicativeDropoutLayer: ⌊p·D⌋ blocks chosen at random become the identity (none
   * when the block is shared). PEFT builds it but its current forward never applies it; graft does.
   */
  private dropBlocks(r: Tensor, p: number, gen: Generator): Tensor {
    const [D, b] = r.shape as [number, number];
    const drop = Math.floor(p * D);
    if (D === 1 || drop === 0) return r;
    const order = Array.from({ length: D }, (_, i) => i);
    for (let i = D - 1; i > 0; i--) {
      const j = gen.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const mask = new Float32Array(D);
    for (let i = 0; i < drop; i++) mask[order[i]!] = 1;
    const eye = new Float32Array(D * b * b);
    for (let d = 0; d < D; d++) if (mask[d]) for (let i = 0; i < b; i++) eye[d * b * b + i * b + i] = 1;
    const opts = { dtype: r.dtype, backend: r.backend };
    const keepMask = tensor(mask.map((m) => 1 - m), [D, 1, 1], opts);
    return add(mul(r, keepMask), tensor(eye, [D, b, b], opts));
  }

  /** The merged weight W Rᵀ of adapter `name`, in the base weight's layout. */
  rotatedWeight(name: string): Tensor {
    return rotateWeight(this.base_layer.weight, this.rotation(name), this.adapter(name).blocks);
  }

  forward(x: Tensor): Tensor {
    const name = this.activeAdapter;
    const base = this.base_layer;
    if (this.bypassed() || name === null) return base.forward(x);
    if (base instanceof Conv2d) return conv2d(x, this.rotatedWeight(name), base.bias, base.convOptions);
    // PEFT's Linear forward: x ← x R per block (…, blocks, b) · (blocks, b, b), then the base layer.
    const { blocks, blockSize } = this.adapter(name);
    const rows = x.size / blockSize / blocks;
    const perBlock = permute(reshape(x, [rows, blocks, blockSize]), [1, 0, 2]);
    const rotated = reshape(permute(matmul(perBlock, this.rotation(name)), [1, 0, 2]), x.shape);
    return linear(rotated, base.weight, base.bias);
  }

  /** W ← W Rᵀ (PEFT's merge); R⁻¹ is kept (float64 inverse: the Neumann series is only nearly orthogonal). */
  merge(name: string | null = this.activeAdapter): void {
    if (name === null) return;
    if (this.mergedAdapters.includes(name)) throw new Error(`adapter '${name}' is already merged`);
    const a = this.adapter(name);
    const W = this.base_layer.weight;
    noGrad(() => tidy(() => {
      const r = this.rotation(name);
      const [D, b] = r.shape as [number, number];
      a.mergedInverse = keep(tensor(Float32Array.from(invertBlocks(r.toArray(), D, b)), [D, b, b], { dtype: r.dtype, backend: r.backend }));
      assign(W, rotateWeight(W, r, a.blocks));
    }));
    this.mergedAdapters.push(name);
  }

  /** W ← W (R⁻¹)ᵀ, last merged first. */
  unmerge(): void {
    while (this.mergedAdapters.length) {
      const name = this.mergedAdapters.pop()!;
      const a = this.adapter(name);
      const inverse = a.mergedInverse!;
      const W = this.base_layer.weight;
      noGrad(() => tidy(() => assign(W, rotateWeight(W, inverse, a.blocks))));
      inverse.dispose();
      a.mergedInverse = null;
    }
  }

  override dispose(): void {
    for (const a of this.adapters.values()) {
      a.mergedInverse?.dispose();
      a.mergedInverse = null;
    }
    super.dispose();
  }
}
