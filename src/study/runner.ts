// Running a study on one machine: the study folder, each cell's state read from its run folder,
// and the loop that trains every cell not yet finished. A finished cell (report.json written) is
// skipped, a cell with a checkpoint resumes from it, one stopped before its first checkpoint starts
// again, so a study killed at any moment continues where it was.
//
//   <output>/study.json          the expanded plan: rows, cells and their configurations
//   <output>/cells/<row>-s<seed>/ one normal run folder per cell (src/train/run.ts)
//   <output>/table.*, figures/, report.html   written from the cells' results (src/report)
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ConfigError, OutputPathError, RunFolderError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { listCheckpoints } from '../train/checkpoint.js';
import { isRunEntry, LOCK_FILE, RUN_FILE } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';
import type { Study, StudyCell } from './study-file.js';

export const STUDY_FILE = 'study.json';
export const CELLS_DIR = 'cells';

/** What a cell's run folder says about it. */
export type CellState = 'done' | 'checkpointed' | 'started' | 'new' | 'locked';

/** Trains one cell: `graft train`'s runTraining, handed in by the command line. */
export type CellRunner = (config: RunConfig, opts: { resume: boolean; overwrite: boolean }) => Promise<unknown>;

/** The saved plan (study.json): what the table, the pictures and the queue's workers read. */
export interface StudyPlan extends Omit<Study, 'output'> {
  cells: (StudyCell & { dir: string })[];
}

export const cellDir = (output: string, cell: { id: string }) => join(output, CELLS_DIR, cell.id);

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The process holding a run folder's lock, when it is alive (on this host) or on another host. */
export function lockHolder(dir: string): { pid: number; host: string } | null {
  const file = join(dir, LOCK_FILE);
  if (!existsSync(file)) return null;
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown; host?: unknown };
    if (typeof h.pid !== 'number') return null;
    const host = typeof h.host === 'string' ? h.host : '?';
    if (host === hostname() && !pidAlive(h.pid)) return null;
    return { pid: h.pid, host };
  } catch {
    return null;
  }
}

export function cellState(dir: string): CellState {
  if (!existsSync(dir)) return 'new';
  if (existsSync(join(dir, 'report.json'))) return 'done';
  if (lockHolder(dir)) return 'locked';
  if (existsSync(join(dir, RUN_FILE)) && listCheckpoints(dir).length > 0) return 'checkpointed';
  return readdirSync(dir).filter((n) => n !== LOCK_FILE).length ? 'started' : 'new';
}

/** How `graft train` is asked to run a cell in the given state. */
export function claimFor(state: CellState): { resume: boolean; overwrite: boolean } {
  return { resume: state === 'checkpointed', overwrite: state === 'started' };
}

/**
 * Writes (or checks) the study folder's plan. A folder holding another study's plan is refused
 * where a cell of the same id has another configuration; cells added to the study are fine.
 */
export function prepareStudyFolder(study: Study, output: string, opts: { replaceChanged?: boolean } = {}): StudyPlan {
  const plan: StudyPlan = {
    name: study.name, description: study.description, file: study.file ? resolve(study.file) : null, seeds: study.seeds, columns: study.columns, axes: study.axes, rows: study.rows,
    cells: study.cells.map((c) => ({ ...c, config: { ...c.config, output: cellDir(output, c) }, dir: join(CELLS_DIR, c.id) })),
  };
  const file = join(output, STUDY_FILE);
  if (existsSync(file)) {
    const before = readStudyPlan(output);
    const changed = plan.cells.filter((c) => {
      const old = before.cells.find((o) => o.id === c.id);
      return old && JSON.stringify({ ...old.config, output: undefined }) !== JSON.stringify({ ...c.config, output: undefined });
    });
    if (changed.length && opts.replaceChanged) {
      // The caller owns the folder (graft demo): a cell trained under another configuration is cleared.
      for (const c of changed) {
        const dir = join(output, c.dir);
        if (existsSync(dir) && readdirSync(dir).every(isRunEntry)) rmSync(dir, { recursive: true, force: true });
      }
    } else if (changed.length) {
      throw new RunFolderError(`${output} holds a study whose cell${changed.length > 1 ? 's' : ''} ${changed.slice(0, 3).map((c) => c.id).join(', ')}${changed.length > 3 ? ', …' : ''} had another configuration; give the study another --output (or delete ${join(output, CELLS_DIR, changed[0]!.id)} to train it again)`);
    }
  } else if (existsSync(output) && readdirSync(output).length > 0) {
    throw new RunFolderError(`${output} is not empty and holds no study (${STUDY_FILE}); choose an empty or new --output folder`);
  }
  try {
    mkdirSync(join(output, CELLS_DIR), { recursive: true });
  } catch (e) {
    throw new OutputPathError(`cannot use ${output} as the study's folder (${(e as Error).message}); choose a writable --output folder`);
  }
  writeFileAtomic(file, JSON.stringify(plan, null, 2));
  return plan;
}

export function readStudyPlan(output: string): StudyPlan {
  const file = join(output, STUDY_FILE);
  if (!existsSync(file)) throw new RunFolderError(`${output} is not a study folder (no ${STUDY_FILE}); pass the --output folder of 'graft study'`);
  try {
    const plan = JSON.parse(readFileSync(file, 'utf8')) as StudyPlan;
    if (!Array.isArray(plan.cells) || !Array.isArray(plan.rows)) throw new Error('no cells or rows');
    return plan;
  } catch (e) {
    throw new RunFolderError(`${file} is damaged (${(e as Error).message}); run the study again with its file and --output`);
  }
}

/** "1h02m", "3m05s", "12s". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

export interface StudyOutcome {
  done: string[];
  failed: { id: string; message: string }[];
  /** Cells another process was training (their lock held) when this one reached them. */
  busy: string[];
}

/**
 * Trains every cell that is not finished, in plan order, printing which cell, how many are left
 * and the time they should take (the mean of the cells trained so far in this process). A cell
 * that fails is reported and the others go on.
 */
export async function runStudy(plan: StudyPlan, output: string, runCell: CellRunner, log: (line: string) => void = console.log): Promise<StudyOutcome> {
  const outcome: StudyOutcome = { done: [], failed: [], busy: [] };
  const total = plan.cells.length;
  const states = plan.cells.map((c) => cellState(join(output, c.dir)));
  const already = states.filter((s) => s === 'done').length;
  log(`study ${plan.name}: ${total} cells (${plan.rows.length} rows × ${plan.seeds.length} seed${plan.seeds.length > 1 ? 's' : ''})${already ? `, ${already} finished before` : ''}`);
  const times: number[] = [];
  let left = total - already;
  for (const [i, cell] of plan.cells.entries()) {
    const dir = join(output, cell.dir);
    const state = cellState(dir);
    if (state === 'done') {
      outcome.done.push(cell.id);
      continue;
    }
    if (state === 'locked') {
      const h = lockHolder(dir);
      log(`[${i + 1}/${total}] ${cell.id}: being trained by pid ${h?.pid} on ${h?.host}; left to it`);
      outcome.busy.push(cell.id);
      left--;
      continue;
    }
    const eta = times.length ? ` · ETA ${duration((times.reduce((a, b) => a + b, 0) / times.length) * left)}` : '';
    const how = state === 'checkpointed' ? `resuming from ${listCheckpoints(dir).at(-1)}` : state === 'started' ? 'starting again (stopped before its first checkpoint)' : 'starting';
    log(`\n[${i + 1}/${total}] cell ${cell.id} (${how}) · ${left} left${eta}`);
    const t0 = performance.now();
    try {
      await runCell({ ...cell.config, output: dir }, claimFor(state));
      outcome.done.push(cell.id);
      log(`cell ${cell.id} finished in ${duration((performance.now() - t0) / 1000)}`);
    } catch (e) {
      if ((e as { exitCode?: number }).exitCode === 130) throw e;
      if (e instanceof ConfigError) throw e;
      outcome.failed.push({ id: cell.id, message: (e as Error).message });
      log(`cell ${cell.id} failed: ${(e as Error).message}`);
    }
    times.push((performance.now() - t0) / 1000);
    left--;
  }
  return outcome;
}
