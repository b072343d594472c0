// The robustness table of `graft eval --perturb`: every summary metric on the clean images and
// under each perturbation (with its severity), the change of accuracy from clean, and per-class F1
// by condition. The full reports (per class, confusion) are in eval.json.
import type { ClassificationReport } from '../eval/metrics.js';
import { markdownTable, pct } from './tables.js';

export interface RobustnessRow {
  /** 'clean' or a perturbation's name. */
  condition: string;
  /** The severity (σ, crop fraction, jitter strength, degrees); null for clean. */
  severity: number | null;
  report: ClassificationReport;
}

export function robustnessMarkdown(classes: readonly string[], rows: readonly RobustnessRow[], seed: number): string {
  const clean = rows.find((r) => r.condition === 'clean')?.report;
  const summary = markdownTable(
    ['condition', 'severity', 'accuracy', 'Δ accuracy', 'weighted F1', 'macro F1', 'macro precision', 'macro recall', 'mAP', 'images'],
    rows.map((r) => [
      r.condition, r.severity === null ? '—' : r.severity, pct(r.report.accuracy), clean && r.condition !== 'clean' ? `${((r.report.accuracy - clean.accuracy) * 100).toFixed(2)} pp` : '—',
      pct(r.report.weightedF1), pct(r.report.macroF1), pct(r.report.macroPrecision), pct(r.report.macroRecall), pct(r.report.mAP), r.report.count,
    ]),
  );
  const perClass = markdownTable(['class', ...rows.map((r) => `F1 ${r.condition}`)], classes.map((c, i) => [c, ...rows.map((r) => pct(r.report.perClass[i]?.f1 ?? 0))]));
  return `## Robustness (perturbation seed ${seed})\n\n${summary}\n\n### Per-class F1\n\n${perClass}\n`;
}
