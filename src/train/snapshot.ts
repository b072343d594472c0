// An in-memory copy of everything training changes in a model: its trainable parameters and its
// buffers (BatchNorm running statistics move in train mode). The best-validation checkpoint and
// the learning-rate range test restore a model from one.
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

export class ModelSnapshot {
  private readonly copies: [Tensor, Tensor][];

  constructor(model: Module) {
    const live = [...model.trainableParameters(), ...model.namedBuffers().map(([, t]) => t)];
    this.copies = [...new Set(live)].map((t) => [t, t.clone()]);
  }

  /** Writes the saved values back into the model's tensors. */
  restore(): void {
    for (const [live, saved] of this.copies) live.backend.copy(saved.view(), live.view());
  }

  /** Overwrites the snapshot with the model's current values (same tensors as at construction). */
  update(): void {
    for (const [live, saved] of this.copies) saved.backend.copy(live.view(), saved.view());
  }

  dispose(): void {
    for (const [, saved] of this.copies) saved.dispose();
  }
}
