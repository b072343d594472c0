// The comparison table of the papers: one row per method.
import { markdownTable, pct } from './tables.js';

export interface ComparisonRow {
  method: string;
  target: string;
  rank: number | null;
  trainableParams: number;
  trainablePercent: number;
  trainSeconds: number;
  accuracy: number;
  weightedF1: number;
  mAP: number;
}

export function comparisonTable(rows: readonly ComparisonRow[]): string {
  return markdownTable(
    ['method', 'target', 'rank', 'trainable params (%)', 'training time (s)', 'test accuracy', 'weighted F1', 'mAP'],
    rows.map((r) => [
      r.method, r.target, r.rank ?? '—', `${r.trainableParams.toLocaleString('en-US')} (${r.trainablePercent.toFixed(2)}%)`,
      r.trainSeconds.toFixed(1), pct(r.accuracy), pct(r.weightedF1), pct(r.mAP),
    ]),
  );
}
