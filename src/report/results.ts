// What a finished run folder holds for reports: its summary, metrics, classes, configuration
// and log history (metrics.jsonl), and the adapter's saved configuration (ranks per layer).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RunFolderError } from '../errors.js';
import type { ClassificationReport } from '../eval/metrics.js';

export interface RunSummaryFields {
  model: string;
  method: string;
  target: string;
  rank: number | null;
  trainableParams: number;
  totalParams: number;
  trainablePercent: number;
  trainSeconds: number;
  accuracy: number;
  weightedF1: number;
  macroF1: number;
  mAP: number;
  latencyMs?: number;
  throughput?: number;
  peakMemoryMB?: number;
  [k: string]: unknown;
}

export interface RunResult {
  dir: string;
  summary: RunSummaryFields;
  metrics: ClassificationReport;
  classes: string[];
  /** run.json's configuration (the resolved one). */
  config: Record<string, unknown>;
  /** metrics.jsonl, in order. */
  history: Record<string, number>[];
  /** Kept ranks per adapted layer: AdaLoRA's and DRA's rank_pattern, a DyLoRA run's chosen rank on every layer. */
  ranks: { layer: string; rank: number; max: number }[] | null;
  /** Accuracy per perturbation, where the run was evaluated under them (eval.json's `robustness`, graft eval --perturb). */
  robustness: { name: string; accuracy: number }[] | null;
  /** DyLoRA: validation accuracy per rank. */
  rankSelection: { rank: number; accuracy: number }[] | null;
  report: Record<string, unknown>;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new RunFolderError(`${file} cannot be read (${(e as Error).message}); the run folder is damaged: train it again`);
  }
}

export function readHistory(dir: string): Record<string, number>[] {
  const file = join(dir, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, number>];
    } catch {
      return []; // a line cut short by a kill; the trainer rewrites the file on resume
    }
  });
}

/** Ranks per layer from a run's adapter_config.json (AdaLoRA's and DRA's rank_pattern; DyLoRA's chosen rank). */
export function adapterRanks(dir: string): RunResult['ranks'] {
  const file = join(dir, 'adapter', 'adapter_config.json');
  if (!existsSync(file)) return null;
  const cfg = readJson(file) as Record<string, unknown>;
  const pattern = cfg['rank_pattern'];
  if (cfg['peft_type'] === 'ADALORA' && pattern && typeof pattern === 'object') {
    const initR = typeof cfg['init_r'] === 'number' ? cfg['init_r'] : 0;
    return Object.entries(pattern as Record<string, unknown>).map(([layer, v]) => {
      const kept = Array.isArray(v) ? v.filter(Boolean).length : typeof v === 'number' ? v : 0;
      return { layer, rank: kept, max: Array.isArray(v) ? v.length : initR };
    });
  }
  if (cfg['peft_type'] === 'DRA' && pattern && typeof pattern === 'object') {
    const rMax = (cfg['graft_dra'] as { r_max?: number } | undefined)?.r_max;
    return Object.entries(pattern as Record<string, unknown>).filter(([, v]) => typeof v === 'number').map(([layer, v]) => ({ layer, rank: v as number, max: rMax ?? (v as number) }));
  }
  const dy = cfg['graft_dylora'] as { chosen_rank?: number; r_max?: number } | undefined;
  const targets = cfg['target_modules'];
  if (dy && typeof dy.chosen_rank === 'number' && Array.isArray(targets)) {
    return (targets as string[]).map((layer) => ({ layer, rank: dy.chosen_rank!, max: dy.r_max ?? dy.chosen_rank! }));
  }
  return null;
}

/** A finished run's results (its report.json and the files beside it). */
export function readRunResult(dir: string): RunResult {
  const reportFile = join(dir, 'report.json');
  if (!existsSync(reportFile)) throw new RunFolderError(`${dir} has no report.json: the run has not finished (finish it with graft train --resume --output ${dir})`);
  const report = readJson(reportFile) as Record<string, unknown>;
  const run = existsSync(join(dir, 'run.json')) ? readJson(join(dir, 'run.json')) as { config?: Record<string, unknown>; classes?: string[] } : {};
  const summary = report['summary'] as RunSummaryFields | undefined;
  const metrics = report['metrics'] as ClassificationReport | undefined;
  if (!summary || !metrics) throw new RunFolderError(`${reportFile} lacks summary or metrics; the run folder is damaged or from another graft version`);
  // Robustness, where `graft eval --perturb` measured it: eval.json's conditions.
  const evalFile = join(dir, 'eval.json');
  const conditions = existsSync(evalFile) ? (readJson(evalFile) as { robustness?: { conditions?: { perturbation: string; severity: number; metrics: { accuracy: number } }[] } }).robustness?.conditions : undefined;
  const sel = (report['rankSelection'] as { perRank?: unknown } | undefined)?.perRank;
  return {
    dir, summary, metrics, report,
    classes: (report['classes'] as string[] | undefined) ?? run.classes ?? metrics.confusion.map((_, i) => String(i)),
    config: run.config ?? {},
    history: readHistory(dir),
    ranks: adapterRanks(dir),
    robustness: conditions?.length ? conditions.map((c) => ({ name: `${c.perturbation} ${c.severity}`, accuracy: c.metrics.accuracy })) : null,
    rankSelection: Array.isArray(sel) ? (sel as { rank: number; accuracy: number }[]) : null,
  };
}

/** A dotted path's value in a configuration ("adapter.r"). */
export function pathValue(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}
