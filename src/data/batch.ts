import type { Tensor } from '../tensor/tensor.js';

export interface Batch {
  x: Tensor;
  y: Tensor;
}

/** Where training batches come from: a deterministic order per (seed, epoch), resumable mid-epoch. */
export interface BatchSource {
  readonly size: number;
  batchesPerEpoch(): number;
  epoch(epoch: number, skipBatches: number): AsyncIterable<Batch>;
}
