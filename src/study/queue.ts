// A study on many machines through a BullMQ queue on Redis. `graft study FILE --queue URL` puts
// every unfinished cell on the queue (one job per cell, its id derived from the study folder and
// the cell, so running the command again adds nothing twice) and waits for them; `graft worker
// --queue URL` on any number of machines takes cells one at a time and trains each into its run
// folder under the study's folder, which every machine sees at the same path (a shared file
// system). A cell that fails while running is retried with exponential backoff; bad input (exit
// status 2) is not retried. A worker killed in the middle of a cell stops renewing the job's lock;
// when the lock expires another worker's stalled-job check puts the job back, and the worker that
// takes it resumes the cell from its last checkpoint.
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ConfigError, InputError, InterruptedError } from '../errors.js';
import { LOCK_FILE } from '../train/run.js';
import type { RunConfig } from '../train/run-config.js';
import { cellState, claimFor, duration, lockHolder, type CellRunner, type StudyPlan } from './runner.js';

export const QUEUE_NAME = 'graft-studies';

export interface QueueOptions {
  /** redis://[user:password@]HOST:PORT[/db] (rediss:// for TLS). */
  url: string;
  /** BullMQ queue name (default graft-studies); coordinator and workers must agree. */
  name?: string;
}

export interface CellJob {
  /** The study folder's absolute path, the same on every machine. */
  output: string;
  study: string;
  cell: string;
  /** The cell's run folder, relative to the study folder. */
  dir: string;
  config: RunConfig;
}

/** BullMQ connection options from a redis:// URL; a bad URL names the flag. */
export function redisOptions(url: string): { host: string; port: number; username?: string; password?: string; db?: number; tls?: object; maxRetriesPerRequest: null } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`--queue: '${url}' is not a URL; give redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError(`--queue: '${url}' is not a redis:// URL; give redis://HOST:PORT`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  if (db !== undefined && !Number.isInteger(db)) throw new ConfigError(`--queue: '${u.pathname.slice(1)}' in '${url}' is not a database number`);
  return {
    host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}), ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== undefined ? { db } : {}), ...(u.protocol === 'rediss:' ? { tls: {} } : {}), maxRetriesPerRequest: null,
  };
}

/** Connects once to check the server is there, so a wrong address fails at once and says so. */
export async function checkRedis(url: string): Promise<void> {
  const client = new Redis({ ...redisOptions(url), lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectTimeout: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
  } catch (e) {
    throw new ConfigError(`--queue: cannot reach Redis at ${url} (${(e as Error).message}); start a Redis server there (redis-server --port PORT) or give its address`);
  } finally {
    client.disconnect();
  }
}

/** A job id for a cell of the study in `output`: the folder's hash and the cell id (no ':', which BullMQ refuses). */
export function jobId(output: string, cell: string): string {
  return `${createHash('sha256').update(resolve(output)).digest('hex').slice(0, 12)}.${cell}`;
}

export type QueueCellState = 'done' | 'running' | 'waiting' | 'failed' | 'not queued';

export interface CellStatus {
  id: string;
  state: QueueCellState;
  /** Who trains it (host:pid) for a running cell; the reason for a failed one; progress for others. */
  detail: string;
}

const workerOf = (job: Job | undefined) => {
  const p = job?.progress as { worker?: string } | undefined;
  return p && typeof p === 'object' && typeof p.worker === 'string' ? p.worker : null;
};

/** done / running (on which worker) / waiting / failed for every cell, from the folders and the queue. */
export async function studyStatus(plan: StudyPlan, output: string, q?: QueueOptions): Promise<CellStatus[]> {
  const queue = q ? new Queue(q.name ?? QUEUE_NAME, { connection: redisOptions(q.url) }) : null;
  try {
    const out: CellStatus[] = [];
    for (const cell of plan.cells) {
      const dir = join(output, cell.dir);
      const local = cellState(dir);
      const job = queue ? (await queue.getJob(jobId(output, cell.id))) ?? undefined : undefined;
      const qs = job ? await job.getState() : null;
      const holder = lockHolder(dir);
      const ckpt = local === 'checkpointed' ? ' (checkpointed)' : '';
      if (local === 'done') out.push({ id: cell.id, state: 'done', detail: '' });
      else if (qs === 'failed') out.push({ id: cell.id, state: 'failed', detail: `${job!.failedReason ?? ''} (${job!.attemptsMade} attempt${job!.attemptsMade === 1 ? '' : 's'})` });
      else if (qs === 'active' || holder) out.push({ id: cell.id, state: 'running', detail: `on ${workerOf(job) ?? (holder ? `${holder.host}:${holder.pid}` : '?')}` });
      else if (qs) out.push({ id: cell.id, state: 'waiting', detail: `${qs}${ckpt}` });
      else out.push({ id: cell.id, state: queue ? 'not queued' : 'waiting', detail: local === 'new' ? '' : local });
    }
    return out;
  } finally {
    await queue?.close();
  }
}

export interface EnqueueOptions extends QueueOptions {
  /** Tries per cell for failures while running (default 3), the first retry after `backoffSeconds` (default 10, doubling). */
  attempts?: number;
  backoffSeconds?: number;
  /** Seconds between progress checks (default 2). */
  pollSeconds?: number;
}

/**
 * Puts every unfinished cell of the study on the queue (a failed job is retried, a finished or
 * queued one left as it is) and waits until every cell is done or failed, printing progress.
 */
export async function runStudyOnQueue(plan: StudyPlan, output: string, o: EnqueueOptions, log: (line: string) => void = console.log): Promise<{ done: string[]; failed: { id: string; message: string }[] }> {
  await checkRedis(o.url);
  const abs = resolve(output);
  const queue = new Queue<CellJob>(o.name ?? QUEUE_NAME, { connection: redisOptions(o.url) });
  try {
    let added = 0;
    for (const cell of plan.cells) {
      if (cellState(join(abs, cell.dir)) === 'done') continue;
      const id = jobId(abs, cell.id);
      const existing = await queue.getJob(id);
      if (existing) {
        const state = await existing.getState();
        if (state === 'failed') await existing.retry('failed');
        if (state !== 'completed') continue;
        // Completed on the queue but its folder has no results (deleted since): run it again.
        await existing.remove();
      }
      await queue.add(cell.id, { output: abs, study: plan.name, cell: cell.id, dir: cell.dir, config: { ...cell.config, output: join(abs, cell.dir) } }, {
        jobId: id, attempts: o.attempts ?? 3, backoff: { type: 'exponential', delay: 1000 * (o.backoffSeconds ?? 10) }, removeOnComplete: false, removeOnFail: false,
      });
      added++;
    }
    const total = plan.cells.length;
    log(`study ${plan.name}: ${total} cells; ${added} put on the queue '${o.name ?? QUEUE_NAME}' at ${o.url}; start workers with: graft worker --queue ${o.url}`);
    const t0 = Date.now();
    const doneAtStart = plan.cells.filter((c) => cellState(join(abs, c.dir)) === 'done').length;
    let last = '';
    for (;;) {
      const status = await studyStatus(plan, abs, o);
      const count = (s: QueueCellState) => status.filter((x) => x.state === s).length;
      const done = count('done');
      const failed = status.filter((x) => x.state === 'failed');
      const running = status.filter((x) => x.state === 'running');
      const left = total - done - failed.length;
      const rate = (done - doneAtStart) / ((Date.now() - t0) / 1000);
      const eta = rate > 0 && left > 0 ? ` · ETA ${duration(left / rate)}` : '';
      const line = `${done}/${total} done · ${running.length} running${running.length ? ` (${running.map((r) => `${r.id} ${r.detail}`).join(', ')})` : ''} · ${count('waiting') + count('not queued')} waiting · ${failed.length} failed${eta}`;
      if (line.replace(/ · ETA.*/, '') !== last) log(line);
      last = line.replace(/ · ETA.*/, '');
      if (left === 0) return { done: status.filter((x) => x.state === 'done').map((x) => x.id), failed: failed.map((f) => ({ id: f.id, message: f.detail })) };
      await new Promise((r) => setTimeout(r, 1000 * (o.pollSeconds ?? 2)));
    }
  } finally {
    await queue.close();
  }
}

export interface WorkerOptions extends QueueOptions {
  /** Seconds a cell's job lock lasts without renewal: how soon a killed worker's cell is taken over (default 300). */
  lockSeconds?: number;
  /** Exit once no cell is waiting or running anywhere (default: keep waiting for cells). */
  untilEmpty?: boolean;
}

/**
 * Takes cells from the queue one at a time and trains each into its folder (resuming it from a
 * checkpoint when one is there), until Ctrl-C, or with `untilEmpty` until the queue is empty.
 */
export async function runWorker(o: WorkerOptions, runCell: CellRunner, log: (line: string) => void = console.log): Promise<number> {
  await checkRedis(o.url);
  const me = `${hostname()}:${process.pid}`;
  const lockDuration = 1000 * (o.lockSeconds ?? 300);
  let trained = 0;
  const worker = new Worker<CellJob>(o.name ?? QUEUE_NAME, async (job, token) => {
    const { output, cell, dir: rel, config } = job.data;
    const dir = join(output, rel);
    if (!existsSync(output)) throw new UnrecoverableError(`the study folder ${output} is not on this machine; mount the shared folder at the same path on every worker`);
    await job.updateProgress({ worker: me, started: Date.now() });
    let state = cellState(dir);
    if (state === 'done') {
      log(`cell ${cell}: already finished`);
      return { worker: me, skipped: true };
    }
    if (state === 'locked') {
      // The queue gave this job to us, so whoever held it lost its job lock: a worker on another
      // machine killed mid-cell (one on this machine is seen dead by its pid). Its folder lock is stale.
      const h = lockHolder(dir);
      if (job.attemptsStarted > 1 || (job.stalledCounter ?? 0) > 0) {
        log(`cell ${cell}: taking over from ${h?.host}:${h?.pid}, whose job lock expired`);
        rmSync(join(dir, LOCK_FILE), { force: true });
        state = cellState(dir);
      }
    }
    log(`\ncell ${cell} of study ${job.data.study} (${state === 'checkpointed' ? 'resuming from its checkpoint' : 'starting'}) on ${me}`);
    const t0 = Date.now();
    try {
      await runCell(config, claimFor(state));
    } catch (e) {
      if ((e as { exitCode?: number }).exitCode === 130) {
        // Ctrl-C: the cell's checkpoint is saved; the job goes back to the queue for any worker.
        await job.moveToDelayed(Date.now() + 1000, token);
        throw new DelayedError();
      }
      if (e instanceof InputError) throw new UnrecoverableError(e.message);
      throw e;
    }
    trained++;
    log(`cell ${cell} finished in ${duration((Date.now() - t0) / 1000)}`);
    return { worker: me };
  }, {
    connection: redisOptions(o.url), concurrency: 1, lockDuration, stalledInterval: Math.max(1000, Math.round(lockDuration / 2)), maxStalledCount: 5, autorun: false,
  });
  worker.on('failed', (job, err) => { if (job) log(`cell ${job.data.cell} failed (attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1}): ${err.message}`); });
  worker.on('error', (err) => log(`worker: ${err.message}`));
  let stopping = false;
  let interrupted = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void worker.close();
  };
  const onInt = () => {
    interrupted = true;
    stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', onInt);
  log(`worker ${me} taking cells from '${o.name ?? QUEUE_NAME}' at ${o.url}${o.untilEmpty ? ' until the queue is empty' : ' (Ctrl-C to stop)'}`);
  const running = worker.run();
  if (o.untilEmpty) {
    const queue = new Queue(o.name ?? QUEUE_NAME, { connection: redisOptions(o.url) });
    // Empty: nothing waiting, delayed (a retry's backoff) or active, seen twice in a row.
    let emptySeen = 0;
    while (!stopping) {
      await new Promise((r) => setTimeout(r, 1000));
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      emptySeen = Object.values(c).every((n) => n === 0) ? emptySeen + 1 : 0;
      if (emptySeen >= 2) stop();
    }
    await queue.close();
  }
  await running;
  process.off('SIGTERM', stop);
  process.off('SIGINT', onInt);
  log(`worker ${me}: ${trained} cell${trained === 1 ? '' : 's'} trained`);
  if (interrupted) throw new InterruptedError(`worker ${me} interrupted; its cell was checkpointed and handed back to the queue`);
  return trained;
}
