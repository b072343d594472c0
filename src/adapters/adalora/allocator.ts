// AdaLoRA's RankAllocator (Zhang et al. 2023; PEFT adalora/layer.py::RankAllocator and
// model.py::update_and_allocate), run by the trainer after each optimizer step with the gradients
// still present. Step t is the count of optimizer steps done (1…T), so with tfinal = 0 the last
// step reaches target_r exactly.
import type { Tensor } from '../../tensor/tensor.js';
import { tensor } from '../../ops/creation.js';
import { noGrad } from '../../tensor/autograd.js';
import { assign } from '../../ops/layout.js';
import type { AdaLoraConfig } from './config.js';
import type { AdaLoraLayer } from './layer.js';

/** The budget (total kept triplets) at step t and whether t masks, PEFT's budget_schedule. */
export function budgetSchedule(t: number, c: Pick<AdaLoraConfig, 'tinit' | 'tfinal' | 'deltaT'>, totalStep: number, initBudget: number, targetBudget: number): { budget: number; mask: boolean } {
  if (t <= c.tinit) return { budget: initBudget, mask: false };
  if (t > totalStep - c.tfinal) return { budget: targetBudget, mask: true };
  // Cubic decay from the initial to the target budget between tinit and T − tfinal.
  const mul = 1 - (t - c.tinit) / (totalStep - c.tfinal - c.tinit);
  return { budget: Math.trunc((initBudget - targetBudget) * mul ** 3 + targetBudget), mask: t % c.deltaT === 0 };
}

interface Smoothed {
  /** EMA of the sensitivity |p ⊙ ∇p| (beta1). */
  ipt: Float32Array;
  /** EMA of its uncertainty |I − Ī| (beta2). */
  unc: Float32Array;
}

export class RankAllocator {
  private readonly state = new Map<Tensor, Smoothed>();
  readonly initBudget: number;
  readonly targetBudget: number;

  /** `layers`: [module path, layer] of every AdaLoRA layer holding adapter `name`. */
  constructor(private readonly layers: [string, AdaLoraLayer][], private readonly name: string, private readonly config: AdaLoraConfig) {
    this.initBudget = layers.reduce((a, [, l]) => a + l.rank(name), 0);
    this.targetBudget = config.targetR * layers.length;
  }

  resetImportance(): void {
    this.state.clear();
  }

  /** Ī ← β1 Ī + (1 − β1) I, Ū ← β2 Ū + (1 − β2) |I − Ī| with I = |p ⊙ ∇p|, for every A, E, B. */
  updateImportance(): void {
    const { beta1, beta2 } = this.config;
    for (const [, l] of this.layers) {
      for (const p of Object.values(l.tensors(this.name))) {
        if (!p.grad) continue;
        const v = p.toArray();
        const g = p.grad.toArray();
        let s = this.state.get(p);
        if (!s) this.state.set(p, (s = { ipt: new Float32Array(v.length), unc: new Float32Array(v.length) }));
        for (let i = 0; i < v.length; i++) {
          const sens = Math.abs(v[i]! * g[i]!);
          s.ipt[i] = beta1 * s.ipt[i]! + (1 - beta1) * sens;
          s.unc[i] = beta2 * s.unc[i]! + (1 - beta2) * Math.abs(sens - s.ipt[i]!);
        }
      }
    }
  }

  /** Per triplet i of one layer: s(E_i) + mean_j s(A_ij) + mean_j s(B_ji), with s = Ī · Ū. */
  tripletScores(l: AdaLoraLayer): Float64Array {
    const { A, E, B } = l.tensors(this.name);
    const r = E.shape[0]!;
    const score = (p: Tensor, i: number) => {
      const s = this.state.get(p);
      return s ? s.ipt[i]! * s.unc[i]! : 0;
    };
    const out = new Float64Array(r);
    const n = A.shape[1]!;
    const [outDim] = B.shape as [number, number];
    for (let i = 0; i < r; i++) {
      let a = 0;
      for (let j = 0; j < n; j++) a += score(A, i * n + j);
      let b = 0;
      for (let j = 0; j < outDim; j++) b += score(B, j * r + i);
      out[i] = score(E, i) + (a / n + b / outDim);
    }
    return out;
  }

  /**
   * Zeroes E for the triplets scoring at or below the (initBudget − budget)-th smallest score over
   * all layers (PEFT's kthvalue threshold) and returns the keep-flags by `<path>.lora_E`.
   */
  maskToBudget(budget: number): Record<string, boolean[]> {
    const scores = this.layers.map(([, l]) => this.tripletScores(l));
    const k = this.initBudget - budget;
    const all = scores.flatMap((s) => Array.from(s)).sort((a, b) => a - b);
    const threshold = k > 0 ? all[k - 1]! : -Infinity;
    const pattern: Record<string, boolean[]> = {};
    this.layers.forEach(([path, l], i) => {
      pattern[`${path}.lora_E`] = Array.from(scores[i]!, (s) => !(s <= threshold));
    });
    this.applyPattern(pattern);
    return pattern;
  }

  /** E ← 0 where the pattern drops a triplet. */
  applyPattern(pattern: Record<string, boolean[]>): void {
    noGrad(() => {
      for (const [path, l] of this.layers) {
        const keep = pattern[`${path}.lora_E`];
        if (!keep) continue;
        const E = l.tensors(this.name).E;
        const v = Float32Array.from(E.toArray() as ArrayLike<number>);
        keep.forEach((k, i) => {
          if (!k) v[i] = 0;
        });
        assign(E, tensor(v, E.shape, { backend: E.backend }));
      }
    });
  }

  /** The keep-flags the current E values imply (E ≠ 0), for a run resumed in its final phase. */
  patternFromValues(): Record<string, boolean[]> {
    const pattern: Record<string, boolean[]> = {};
    for (const [path, l] of this.layers) pattern[`${path}.lora_E`] = Array.from(l.tensors(this.name).E.toArray(), (v) => v !== 0);
    return pattern;
  }

  /** PEFT's update_and_allocate at step t: returns the new rank pattern when it masked, else null. */
  step(t: number, totalStep: number): Record<string, boolean[]> | null {
    const final = totalStep - this.config.tfinal;
    if (t < final) {
      this.updateImportance();
      const { budget, mask } = budgetSchedule(t, this.config, totalStep, this.initBudget, this.targetBudget);
      return mask ? this.maskToBudget(budget) : null;
    }
    if (t === final) {
      const pattern = this.maskToBudget(this.targetBudget);
      this.resetImportance();
      return pattern;
    }
    const pattern = this.config.rankPattern ?? this.patternFromValues();
    this.applyPattern(pattern);
    return pattern;
  }
}
