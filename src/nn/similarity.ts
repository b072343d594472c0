// The similarity between layers of a model on a set of images: every named layer's output
// pooled per image (nn/capture.ts), then linear CKA between every pair (nn/cka.ts). Used by DRA's
// rank allocation and on its own (graft's library: `layerSimilarity`, eval/similarity.ts for a
// dataset, report/heatmap.ts to draw it).
import type { Module } from './module.js';
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { contiguous, slice } from '../ops/layout.js';
import { captureFeatures } from './capture.js';
import { centredGram, ckaOfGrams, defaultEstimator, linearCka, type CkaEstimator, type FeatureMatrix } from './cka.js';

export interface SimilarityOptions {
  /** 'auto' (default): debiased when n < 4·C for the pair, else biased. */
  estimator?: CkaEstimator | 'auto';
  /** Use at most this many images (the first ones the batches give). */
  limit?: number;
  /** Only these pairs (i, j) are computed, the rest left NaN: DRA needs consecutive layers alone. */
  pairs?: readonly (readonly [number, number])[];
}

export interface SimilarityMatrix {
  layers: string[];
  /** Images the features were computed on. */
  n: number;
  /** Pooled feature width per layer. */
  channels: number[];
  /** CKA between layers i and j (NaN where not computed or undefined: a constant layer output). */
  matrix: number[][];
  /** The estimator used per pair. */
  estimators: CkaEstimator[][];
}

/** The pooled features of `paths` on the images of `batches` (forward passes in eval mode, no gradients). */
export async function layerFeatures(model: Module, paths: readonly string[], batches: AsyncIterable<Tensor> | Iterable<Tensor>, limit = Infinity): Promise<{ n: number; features: Map<string, FeatureMatrix> }> {
  const wasTraining = model.training;
  model.eval();
  let n = 0;
  try {
    const features = await captureFeatures(model, paths, async () => {
      for await (const x of batches) {
        if (n >= limit) break;
        const take = Math.min(x.shape[0]!, limit - n);
        noGrad(() => tidy(() => {
          model.forward(take === x.shape[0] ? x : contiguous(slice(x, 0, 0, take)));
        }));
        n += take;
      }
    });
    for (const [p, f] of features) if (f.n !== n) throw new Error(`layerFeatures: layer '${p}' ran ${f.n / n} times per image; name a layer that runs once per forward pass`);
    return { n, features };
  } finally {
    model.train(wasTraining);
  }
}

/** CKA between features of the same images, by the chosen estimator (auto: graft's n < 4·C rule). */
export function ckaOf(x: FeatureMatrix, y: FeatureMatrix, estimator: CkaEstimator | 'auto' = 'auto'): { value: number; estimator: CkaEstimator } {
  const e = estimator === 'auto' ? defaultEstimator(x.n, x.c, y.c) : estimator;
  return { value: linearCka(x, y, e), estimator: e };
}

/** The CKA similarity matrix between `paths` of `model` on `batches` of images. */
export async function layerSimilarity(model: Module, paths: readonly string[], batches: AsyncIterable<Tensor> | Iterable<Tensor>, opts: SimilarityOptions = {}): Promise<SimilarityMatrix> {
  const { n, features } = await layerFeatures(model, paths, batches, opts.limit ?? Infinity);
  return similarityOfFeatures(paths, n, features, opts);
}

export function similarityOfFeatures(paths: readonly string[], n: number, features: Map<string, FeatureMatrix>, opts: SimilarityOptions = {}): SimilarityMatrix {
  const L = paths.length;
  const matrix = Array.from({ length: L }, () => new Array<number>(L).fill(Number.NaN));
  const estimators = Array.from({ length: L }, () => new Array<CkaEstimator>(L).fill('biased'));
  const feats = paths.map((p) => features.get(p)!);
  if (opts.pairs) {
    for (const [i, j] of opts.pairs) {
      const r = ckaOf(feats[i]!, feats[j]!, opts.estimator ?? 'auto');
      matrix[i]![j] = matrix[j]![i] = r.value;
      estimators[i]![j] = estimators[j]![i] = r.estimator;
    }
  } else {
    // Every pair: one centred Gram per layer and estimator, then an n² dot product per pair.
    const grams = new Map<string, Float64Array>();
    const gramOf = (i: number, e: CkaEstimator) => {
      const key = `${i}:${e}`;
      let g = grams.get(key);
      if (!g) grams.set(key, (g = centredGram(feats[i]!, e)));
      return g;
    };
    for (let i = 0; i < L; i++) {
      for (let j = i; j < L; j++) {
        const e = !opts.estimator || opts.estimator === 'auto' ? defaultEstimator(n, feats[i]!.c, feats[j]!.c) : opts.estimator;
        matrix[i]![j] = matrix[j]![i] = i === j ? ckaOfGrams(gramOf(i, e), gramOf(i, e)) : ckaOfGrams(gramOf(i, e), gramOf(j, e));
        estimators[i]![j] = estimators[j]![i] = e;
      }
    }
  }
  return { layers: [...paths], n, channels: paths.map((p) => features.get(p)!.c), matrix, estimators };
}
