// The best model by validation accuracy, kept in memory during training and restored before the
// final evaluation and the saving of the run, so the saved model is the evaluated one and is the
// one validation chose. Ties go to the lower validation loss, then to the later epoch: with 20
// validation images accuracy moves in steps of 5%, and an equal score after more training at a
// lower learning rate is the better bet.
//
// With a run folder it is also written there (best.safetensors, the choice in its metadata, one
// atomic write per improvement) so that a resumed run restores the same choice as an
// uninterrupted one; the run removes the file once its results are saved.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Module } from '../nn/module.js';
import { loadTensorsInto, saveSafetensors, SafetensorsFile } from '../io/safetensors.js';
import { RunFolderError } from '../errors.js';
import { checkpointTensors } from './checkpoint.js';
import { ModelSnapshot } from './snapshot.js';

export const BEST_FILE = 'best.safetensors';

export interface BestCheckpointInfo {
  epoch: number;
  step: number;
  accuracy: number;
  loss: number;
}

export class BestCheckpoint {
  private snapshot: ModelSnapshot | null = null;
  best: BestCheckpointInfo | null = null;

  constructor(private readonly model: Module, private readonly dir: string | null = null) {}

  /**
   * Takes up the choice an interrupted run of this folder saved, leaving the model as it was;
   * false when it saved none (it had not validated yet).
   */
  resume(): boolean {
    const file = this.dir ? join(this.dir, BEST_FILE) : null;
    if (!file || !existsSync(file)) return false;
    const f = new SafetensorsFile(file);
    const raw = f.metadata['best'];
    f.close();
    let info: BestCheckpointInfo;
    try {
      info = JSON.parse(raw ?? '') as BestCheckpointInfo;
    } catch {
      throw new RunFolderError(`${file} has no valid 'best' entry in its metadata; the run folder is damaged: delete ${file} to resume without it`);
    }
    const current = new ModelSnapshot(this.model);
    try {
      try {
        loadTensorsInto(checkpointTensors(this.model), file, 'best validation checkpoint');
      } catch {
        // Saved under another structure of the model (before a DRA re-allocation): the choice
        // starts again among the epochs to come, as it would have in the uninterrupted run.
        return false;
      }
      this.snapshot?.dispose();
      this.snapshot = new ModelSnapshot(this.model);
      this.best = info;
    } finally {
      current.restore();
      current.dispose();
    }
    return true;
  }

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
    if (this.dir) saveSafetensors(join(this.dir, BEST_FILE), checkpointTensors(this.model), { format: 'pt', best: JSON.stringify(info) });
    return true;
  }

  /** Removes the saved copy: the run's results hold the chosen model. */
  removeSaved(): void {
    if (this.dir) rmSync(join(this.dir, BEST_FILE), { force: true });
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
