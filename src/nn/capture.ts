// Recording what named layers of a model output, pooled per example (nn/cka.ts poolFeatures), while
// the caller runs forward passes. Each named module is swapped for a recording wrapper for the
// duration (Module.setModule, so every family sees it, Keras graphs included) and put back after;
// the wrapper never folds into a following BatchNorm, so the layer's own output is what is seen.
import { Module } from './module.js';
import { Conv2d, LayerNorm, Linear } from './layers.js';
import type { Tensor } from '../tensor/tensor.js';
import { concatRows, poolFeatures, type FeatureMatrix } from './cka.js';

/** Which axis of a module's output holds its channels: 1 for convolution maps (NCHW), -1 (last) for Linear/token outputs. */
export function channelAxisOf(m: Module, outputRank: number): 1 | -1 {
  if (outputRank !== 4) return -1;
  const base = (m as { base_layer?: unknown }).base_layer;
  if (m instanceof Linear || m instanceof LayerNorm || base instanceof Linear) return -1;
  return 1;
}

class Recorder extends Module {
  readonly batches: FeatureMatrix[] = [];
  constructor(readonly inner: Module, private readonly axis: 1 | -1 | undefined) {
    super();
    this.training = inner.training;
  }

  /** Never folded: this layer's output must be computed to be seen. */
  plainConv(): Conv2d | null {
    return null;
  }

  forward(...args: Tensor[]): Tensor {
    const y = this.inner.forward(...args);
    this.batches.push(poolFeatures(y.toArray() as ArrayLike<number>, y.shape, this.axis ?? channelAxisOf(this.inner, y.rank)));
    return y;
  }
}

export interface CaptureOptions {
  /** The channel axis per path where the default (channelAxisOf) does not fit. */
  channelAxis?: Record<string, 1 | -1>;
}

/**
 * Runs `fn` (forward passes, typically under noGrad) with the modules at `paths` recording their
 * pooled outputs; returns each path's (examples × channels) features over all passes in order.
 * The model is restored even when `fn` throws.
 */
export async function captureFeatures(model: Module, paths: readonly string[], fn: () => Promise<void> | void, opts: CaptureOptions = {}): Promise<Map<string, FeatureMatrix>> {
  if (paths.length === 0) throw new Error('captureFeatures: no layers named');
  const known = new Set(model.namedModules().map(([p]) => p));
  const missing = paths.filter((p) => !known.has(p) || p === '');
  if (missing.length) throw new Error(`captureFeatures: the model has no layer ${missing.map((p) => `'${p}'`).join(', ')}; name layers by their dotted paths (graft inspect / namedModules)`);
  const recorders = new Map<string, Recorder>();
  try {
    // Deepest first (a layer inside another named one is swapped while its parent is still itself), put back in reverse.
    const order = [...new Set(paths)].sort((a, b) => b.split('.').length - a.split('.').length);
    for (const p of order) {
      const r = new Recorder(model.getModule(p), opts.channelAxis?.[p]);
      model.setModule(p, r);
      recorders.set(p, r);
    }
    await fn();
  } finally {
    for (const [p, r] of [...recorders].reverse()) model.setModule(p, r.inner);
  }
  const out = new Map<string, FeatureMatrix>();
  for (const p of new Set(paths)) {
    const r = recorders.get(p)!;
    if (r.batches.length === 0) throw new Error(`captureFeatures: layer '${p}' was not run by the forward passes`);
    out.set(p, concatRows(r.batches));
  }
  return out;
}
