// An in-memory copy of everything training changes in a model: its trainable parameters and its
// buffers (BatchNorm running statistics move in train mode). The best-validation checkpoint and
// the learning-rate range test restore a model from one.
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';

export class ModelSnapshot {
  private readonly copies: [Tensor, Tensor][];

  constructor(model: Module) {
    this.copies = ModelSnapshot.live(model).map((t) => [t, t.clone()]);
  }

  private static live(model: Module): Tensor[] {
    return [...new Set([...model.trainableParameters(), ...model.namedBuffers().map(([, t]) => t)])];
  }

  /** Whether the model still holds the tensors this snapshot copied (a method may have replaced them: DRA's re-allocation). */
  matches(model: Module): boolean {
    const live = ModelSnapshot.live(model);
    return live.length === this.copies.length && live.every((t, i) => this.copies[i]![0] === t);
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
