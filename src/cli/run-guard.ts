// What `graft train` does around training so a run folder belongs to one run and Ctrl-C never
// loses work: the folder is locked and claimed before anything is read or written (a bad --output
// fails at once), a resumed run must see the classes it was trained on, and Ctrl-C outside the
// training loop (which saves a checkpoint itself) exits 130 saying how to continue.
import { resolve } from 'node:path';
import { InterruptedError, RunFolderError } from '../errors.js';
import { claimRunFolder, lockRunFolder, type RunManifest } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';

export interface RunFolder {
  dir: string;
  /** The run being resumed (its run.json), or null for a new run. */
  previous: RunManifest | null;
  /** Releases the lock and removes the Ctrl-C handlers installed for this run. */
  release(): void;
  /** Called by release(). */
  onRelease(f: () => void): void;
}

/** Locks and claims the run's folder (see claimRunFolder): the first thing `train` does. */
export function openRunFolder(dir: string, c: RunConfig, opts: { resume?: boolean; overwrite?: boolean }): RunFolder {
  const lock = lockRunFolder(dir);
  const cleanups: (() => void)[] = [];
  try {
    return {
      dir, previous: claimRunFolder(dir, c, opts), onRelease: (f) => cleanups.push(f),
      release: () => {
        for (const f of cleanups.splice(0)) f();
        lock.release();
      },
    };
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** A resumed run trains on the classes it started with, in their order. */
export function checkResumedClasses(folder: RunFolder, classes: readonly string[]): void {
  const before = folder.previous?.classes;
  if (before && before.join('\n') !== classes.join('\n')) {
    throw new RunFolderError(`--resume: the data now has classes [${classes.join(', ')}] but the run in ${folder.dir} was trained on [${before.join(', ')}]; resume with the same data, or start again with --overwrite`);
  }
}

/** The command that continues the run in `dir`. */
export const resumeHint = (dir: string) => `continue it with 'graft train --resume --output ${dir}' and the same configuration`;

/**
 * Until the returned function is called, Ctrl-C releases the folder and exits 130 after printing
 * `message()` (what was kept and how to continue). The handler stays registered, only inactive,
 * until the folder is released: removing the last SIGINT listener restores the default action,
 * and a Ctrl-C landing before the trainer's own listener is added would kill the process unsaved.
 */
export function exitOnInterrupt(folder: RunFolder, message: () => string): () => void {
  let active = true;
  const handler = (): void => {
    if (!active) return;
    process.stderr.write(`\ngraft: ${message()}\n`);
    folder.release();
    process.exit(new InterruptedError('').exitCode);
  };
  process.on('SIGINT', handler);
  folder.onRelease(() => process.off('SIGINT', handler));
  return () => {
    active = false;
  };
}

/** The error a Ctrl-C inside the training loop ends with, after its checkpoint was saved. */
export function trainingInterrupted(folder: RunFolder, checkpoint: string | null): InterruptedError {
  return new InterruptedError(`interrupted; ${checkpoint ? `the checkpoint ${resolve(checkpoint)} is saved: ${resumeHint(folder.dir)}` : 'no checkpoint was saved yet'}`);
}
