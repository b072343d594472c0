// LoRA variants are strategy objects: DoRA changes init, forward and merge of a LoRA layer.
import type { Tensor } from '../../tensor/tensor.js';
import type { LoraLayer } from './layer.js';

export interface LoraVariant {
  readonly name: string;
  init(layer: LoraLayer, adapter: string): void;
  /** Returns the layer output given the base output `result`, the input x and its dropped-out copy xd. */
  forward(layer: LoraLayer, adapter: string, x: Tensor, xd: Tensor, result: Tensor): Tensor;
  merge(layer: LoraLayer, adapter: string): void;
  unmerge(layer: LoraLayer, adapter: string): void;
}
