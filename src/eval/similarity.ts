// Layer similarity on a dataset: the images of a BatchSource (epoch 0, in its order) through
// nn/similarity.ts. Labels are not used.
import type { Module } from '../nn/module.js';
import type { BatchSource } from '../data/batch.js';
import type { Tensor } from '../tensor/tensor.js';
import { layerSimilarity, type SimilarityMatrix, type SimilarityOptions } from '../nn/similarity.js';

/** The image batches of `data` (epoch 0), each freed after the next is asked for. */
export async function* imagesOf(data: BatchSource): AsyncGenerator<Tensor> {
  for await (const b of data.epoch(0, 0)) {
    b.y.dispose();
    try {
      yield b.x;
    } finally {
      b.x.dispose();
    }
  }
}

/** The CKA similarity matrix between `layers` of `model` on the images of `data`. */
export function datasetSimilarity(model: Module, layers: readonly string[], data: BatchSource, opts: SimilarityOptions = {}): Promise<SimilarityMatrix> {
  return layerSimilarity(model, layers, imagesOf(data), opts);
}
