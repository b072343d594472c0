// Per-kernel timing for the profilers (profile-step.ts, profile-inference.ts): wraps every method
// of a backend with a timer that adds each call's time to a row named by `label`.
import { performance } from 'node:perf_hooks';

export interface KernelTotals {
  /** Row name → total milliseconds and calls since the last clear(). */
  readonly rows: Map<string, { ms: number; calls: number }>;
  clear(): void;
}

export function timeKernels(backend: Record<string, unknown>, label: (key: string, args: unknown[]) => string): KernelTotals {
  const rows = new Map<string, { ms: number; calls: number }>();
  for (const key of Object.keys(backend)) {
    const fn = backend[key];
    if (typeof fn !== 'function') continue;
    backend[key] = (...args: unknown[]) => {
      const start = performance.now();
      const r = (fn as (...a: unknown[]) => unknown)(...args);
      const name = label(key, args);
      const e = rows.get(name) ?? { ms: 0, calls: 0 };
      e.ms += performance.now() - start;
      e.calls++;
      rows.set(name, e);
      return r;
    };
  }
  return { rows, clear: () => rows.clear() };
}
