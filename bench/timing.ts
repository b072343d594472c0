// Median-of-runs timing with a time budget, the same policy in every system measured
// (bench/onednn/raw_bench.cc and bench/torch_ops.py implement it identically).
import type { PassName } from './cases.js';

export interface TimingPolicy {
  /** Untimed calls first (fewer if they use up the budget). */
  warmup: number;
  /** Timed runs wanted; slow ops stop earlier, after 3× the budget. */
  minRuns: number;
  maxRuns: number;
  /** Runs continue until this much timed work has accumulated (or maxRuns). */
  budgetMs: number;
  threads: number;
}

export function timingPolicy(quick: boolean, threads: number): TimingPolicy {
  return quick
    ? { warmup: 2, minRuns: 5, maxRuns: 200, budgetMs: 150, threads }
    : { warmup: 3, minRuns: 10, maxRuns: 1000, budgetMs: 700, threads };
}

/** Calls per timed run for the latency rows (one call is below the timer's resolution). */
export const LATENCY_CALLS = 2000;

/** One system's result for one pass of one case (or a case that failed: `error`, maybe no pass). */
export interface Measurement {
  id: string;
  pass?: PassName | 'copy';
  /** Which way the reference did it (e.g. oneDNN "plain" or "any" layouts). */
  variant?: string;
  ms?: number;
  runs?: number;
  /** The implementation the library picked, when it says. */
  impl?: string;
  /** Which round of a multi-round run it came from (graft and raw oneDNN alternate rounds). */
  round?: number;
  error?: string;
}

export interface Sample {
  /** Median milliseconds per call. */
  ms: number;
  runs: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Times `iteration`, which runs the op `callsPerRun` times and returns the milliseconds of its
 * timed part (so a backward pass can exclude the forward that builds its graph). Async so that
 * onnxruntime's promise-returning `run` is timed by the same loop.
 */
export async function measure(iteration: () => number | Promise<number>, policy: TimingPolicy, callsPerRun = 1): Promise<Sample> {
  let warm = 0;
  for (let i = 0; i < policy.warmup && warm < policy.budgetMs; i++) warm += await iteration();
  const times: number[] = [];
  let total = 0;
  while (times.length < policy.maxRuns) {
    const enough = times.length >= policy.minRuns && total >= policy.budgetMs;
    const tooSlow = times.length > 0 && total >= 3 * policy.budgetMs;
    if (enough || tooSlow) break;
    const ms = await iteration();
    times.push(ms);
    total += ms;
  }
  return { ms: median(times) / callsPerRun, runs: times.length };
}
