// DRA's rank allocation (docs/dra.md):
//   c_l = linear CKA(H_l, H_next(l)) between the pooled outputs of consecutive target layers on
//         the calibration images (the last layer takes its predecessor's value; debiased when n < 4·C),
//   s_l = w_imp · norm(1 − c_l) + w_bias · norm(p_l), p_l the layer's share of the targets' base
//         parameters, norm min–max scaling over the target layers (0.5 for all when they are equal),
//   r_l = round(r_min + (r_max − r_min) · s_l), clipped to [r_min, r_max].
import type { Module } from '../../nn/module.js';
import type { Tensor } from '../../tensor/tensor.js';
import { layerFeatures, similarityOfFeatures, type SimilarityMatrix } from '../../nn/similarity.js';
import type { CkaEstimator } from '../../nn/cka.js';
import type { DraEstimator } from './config.js';

export interface AllocationInput {
  /** Target layer paths in model order. */
  layers: string[];
  /** c_l per layer (CKA with the next target layer). */
  similarity: number[];
  /** Base parameters per layer. */
  params: number[];
}

export interface Allocation extends AllocationInput {
  scores: number[];
  ranks: Record<string, number>;
  /** Calibration images and the estimator per pair (absent for an allocation from given similarities). */
  n?: number;
  estimators?: CkaEstimator[];
  /** CKA between every pair of target layers on the calibration images. */
  matrix?: SimilarityMatrix;
}

function minMax(v: readonly number[]): number[] {
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  return v.map((x) => (hi - lo > 1e-12 ? (x - lo) / (hi - lo) : 0.5));
}

/** Scores and ranks from known similarities and sizes. NaN similarity (a constant output) counts as 0 (dissimilar). */
export function allocateRanks(input: AllocationInput, o: { wImp: number; wBias: number; rMin: number; rMax: number }): Allocation {
  const { layers, similarity, params } = input;
  if (layers.length === 0) throw new Error('DRA: no target layers to allocate ranks to');
  if (similarity.length !== layers.length || params.length !== layers.length) throw new Error('DRA: one similarity and one parameter count per layer');
  const total = params.reduce((a, b) => a + b, 0);
  const dissim = minMax(similarity.map((c) => 1 - (Number.isFinite(c) ? c : 0)));
  const share = minMax(params.map((p) => p / total));
  const scores = layers.map((_, i) => o.wImp * dissim[i]! + o.wBias * share[i]!);
  const ranks: Record<string, number> = {};
  layers.forEach((l, i) => {
    ranks[l] = Math.min(o.rMax, Math.max(o.rMin, Math.round(o.rMin + (o.rMax - o.rMin) * scores[i]!)));
  });
  return { ...input, scores, ranks };
}

/**
 * c_l for each target layer from the model's outputs on calibration images (the model as it is
 * now), with the whole similarity matrix between the target layers (for the run's heatmap).
 */
export async function measureSimilarity(model: Module, layers: string[], images: AsyncIterable<Tensor> | Iterable<Tensor>, n: number, estimator: DraEstimator): Promise<{ similarity: number[]; n: number; estimators: CkaEstimator[]; matrix: SimilarityMatrix }> {
  const { n: seen, features } = await layerFeatures(model, layers, images, n);
  if (seen < 4) throw new Error(`DRA calibration needs at least 4 training images; got ${seen}`);
  const matrix = similarityOfFeatures(layers, seen, features, { estimator });
  if (layers.length === 1) return { similarity: [Number.NaN], n: seen, estimators: ['biased'], matrix };
  const pairs = layers.slice(0, -1).map((_, i) => ({ value: matrix.matrix[i]![i + 1]!, estimator: matrix.estimators[i]![i + 1]! }));
  pairs.push(pairs[pairs.length - 1]!);
  return { similarity: pairs.map((p) => p.value), n: seen, estimators: pairs.map((p) => p.estimator), matrix };
}
