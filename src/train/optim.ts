// Optimisers: AdamW and SGD with momentum, PyTorch's update rules, updating parameters in place.
import { noGrad } from '../tensor/autograd.js';
import { keep, tidy } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import { contiguousStrides as contiguous } from '../tensor/shape.js';
import { add, affine, div, mul, sqrt, square } from '../ops/elementwise.js';
import { zerosLike } from '../ops/creation.js';

import { assign } from '../ops/layout.js';

export { assign };

export interface ParamGroup {
  params: Tensor[];
  weightDecay?: number;
  lr?: number;
}

export interface Optimizer {
  step(): void;
  zeroGrad(): void;
  /** Current learning rate of the first group (schedulers set it). */
  lr: number;
  /** Step count and per-parameter state (PyTorch's names), for checkpoints. */
  stateDict(): Record<string, Tensor>;
  stepCount(): number;
  /** Restores what stateDict() saved (same parameter order). */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, stepCount: number): void;
}

function groupsOf(params: Tensor[] | ParamGroup[]): ParamGroup[] {
  return params.length > 0 && (params[0] as ParamGroup).params ? (params as ParamGroup[]) : [{ params: params as Tensor[] }];
}

abstract class BaseOptimizer implements Optimizer {
  protected readonly groups: ParamGroup[];
  lr: number;
  constructor(params: Tensor[] | ParamGroup[], lr: number) {
    this.groups = groupsOf(params);
    this.lr = lr;
  }
  abstract step(): void;
  abstract stateDict(): Record<string, Tensor>;
  abstract stepCount(): number;
  abstract loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, stepCount: number): void;

  protected allParams(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** Copies a saved state tensor into a fresh kept buffer shaped like `p`. */
  protected restore(state: Map<string, Tensor>, key: string, p: Tensor): Tensor | null {
    const src = state.get(key);
    if (!src) return null;
    if (src.size !== p.size) throw new Error(`optimizer state ${key} has ${src.size} values but its parameter has ${p.size}; the checkpoint belongs to another model`);
    const t = keep(zerosLike(p));
    t.backend.copy({ ...src.view(), shape: t.shape, strides: contiguous(t.shape) }, t.view());
    return t;
  }
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }
}

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/**
 * AdamW (Loshchilov & Hutter), as torch.optim.AdamW: p ← p·(1 − lr·wd), then
 * p ← p − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + eps).
 */
export class AdamW extends BaseOptimizer {
  private readonly betas: [number, number];
  private readonly eps: number;
  private readonly weightDecay: number;
  private readonly m = new Map<Tensor, Tensor>();
  private readonly v = new Map<Tensor, Tensor>();
  private t = 0;

  constructor(params: Tensor[] | ParamGroup[], opts: AdamWOptions = {}) {
    super(params, opts.lr ?? 1e-3);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
  }

  step(): void {
    this.t++;
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.t;
    const bc2 = 1 - b2 ** this.t;
    noGrad(() => {
      for (const group of this.groups) {
        const lr = (group.lr ?? 1) * this.lr;
        const wd = group.weightDecay ?? this.weightDecay;
        for (const p of group.params) {
          const g = p.grad;
          if (!g) continue;
          let m = this.m.get(p);
          let v = this.v.get(p);
          if (!m || !v) {
            this.m.set(p, (m = keep(zerosLike(p))));
            this.v.set(p, (v = keep(zerosLike(p))));
          }
          tidy(() => {
            assign(m!, add(affine(m!, b1), affine(g, 1 - b1)));
            assign(v!, add(affine(v!, b2), affine(square(g), 1 - b2)));
            const denom = affine(sqrt(v!), 1 / Math.sqrt(bc2), this.eps);
            const decayed = wd !== 0 ? affine(p, 1 - lr * wd) : p;
            assign(p, add(decayed, mul(div(m!, denom), -lr / bc1)));
          });
        }
      }
    });
  }

  stepCount(): number {
    return this.t;
  }

  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, stepCount: number): void {
    const map = state instanceof Map ? state : new Map(Object.entries(state));
    this.allParams().forEach((p, i) => {
      const m = this.restore(map, `state.${i}.exp_avg`, p);
      const v = this.restore(map, `state.${i}.exp_avg_sq`, p);
      if (m && v) {
        this.m.get(p)?.dispose();
        this.v.get(p)?.dispose();
        this.m.set(p, m);
        this.v.set(p, v);
      }
    });
    this.t = stepCount;
  }

  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    let i = 0;
    for (const group of this.groups) for (const p of group.params) {
      const m = this.m.get(p);
      const v = this.v.get(p);
      if (m && v) {
        out[`state.${i}.exp_avg`] = m;
        out[`state.${i}.exp_avg_sq`] = v;
      }
      i++;
    }
    return out;
  }
}

export interface SGDOptions {
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** SGD with momentum, as torch.optim.SGD (weight decay added to the gradient, dampening 0). */
export class SGD extends BaseOptimizer {
  private readonly momentum: number;
  private readonly weightDecay: number;
  private readonly nesterov: boolean;
  private readonly buf = new Map<Tensor, Tensor>();

  constructor(params: Tensor[] | ParamGroup[], opts: SGDOptions = {}) {
    super(params, opts.lr ?? 1e-2);
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
  }

  step(): void {
    this.steps++;
    noGrad(() => {
      for (const group of this.groups) {
        const lr = (group.lr ?? 1) * this.lr;
        const wd = group.weightDecay ?? this.weightDecay;
        for (const p of group.params) {
          if (!p.grad) continue;
          tidy(() => {
            let d = wd !== 0 ? add(p.grad!, affine(p, wd)) : p.grad!;
            if (this.momentum !== 0) {
              const b = this.buf.get(p);
              if (!b) {
                const init = keep(zerosLike(p));
                assign(init, d);
                this.buf.set(p, init);
              } else assign(b, add(affine(b, this.momentum), d));
              const mb = this.buf.get(p)!;
              d = this.nesterov ? add(d, affine(mb, this.momentum)) : mb;
            }
            assign(p, add(p, affine(d, -lr)));
          });
        }
      }
    });
  }

  private steps = 0;

  stepCount(): number {
    return this.steps;
  }

  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, stepCount: number): void {
    const map = state instanceof Map ? state : new Map(Object.entries(state));
    this.allParams().forEach((p, i) => {
      const b = this.restore(map, `state.${i}.momentum_buffer`, p);
      if (b) {
        this.buf.get(p)?.dispose();
        this.buf.set(p, b);
      }
    });
    this.steps = stepCount;
  }

  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    let i = 0;
    for (const group of this.groups) for (const p of group.params) {
      const b = this.buf.get(p);
      if (b) out[`state.${i}.momentum_buffer`] = b;
      i++;
    }
    return out;
  }
}
