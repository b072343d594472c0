// The best model by validation accuracy, kept in memory during training and restored before the
// final evaluation and the saving of the run, so the saved model is the evaluated one and is the
// one validation chose. Ties go to the lower validation loss, then to the later epoch: with 20
// validation images accuracy moves in steps of 5%, and an equal score after more training at a
// lower learning rate is the better bet.
import type { Module } from '../nn/module.js';
import { ModelSnapshot } from './snapshot.js';

export interface BestCheckpointInfo {
  epoch: number;
  step: number;
  accuracy: number;
  loss: number;
}

export class BestCheckpoint {
  private snapshot: ModelSnapshot | null = null;
  best: BestCheckpointInfo | null = null;

  constructor(private readonly model: Module) {}

  /** Keeps the model's current state when it is the best so far; returns whether it was. */
  offer(info: BestCheckpointInfo): boolean {
    // After a change of the model's structure (DRA's re-allocation) an earlier best cannot be
    // written back: the choice starts again among the epochs since.
    if (this.snapshot && !this.snapshot.matches(this.model)) {
      this.snapshot.dispose();
      this.snapshot = null;
      this.best = null;
    }
    const b = this.best;
    const better = b === null || info.accuracy > b.accuracy || (info.accuracy === b.accuracy && info.loss <= b.loss);
    if (!better) return false;
    if (this.snapshot) this.snapshot.update();
    else this.snapshot = new ModelSnapshot(this.model);
    this.best = info;
    return true;
  }

  /** Writes the best state back into the model; false when nothing was offered. */
  restore(): boolean {
    if (!this.snapshot || !this.snapshot.matches(this.model)) return false;
    this.snapshot.restore();
    return true;
  }

  dispose(): void {
    this.snapshot?.dispose();
    this.snapshot = null;
  }
}
