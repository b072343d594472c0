// Markdown tables and the per-run report.
import type { ClassificationReport } from '../eval/metrics.js';

export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...cells.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export const pct = (v: number, digits = 2) => `${(100 * v).toFixed(digits)}%`;

/** A run's classification report in Markdown: summary, per-class table, confusion matrix. */
export function reportMarkdown(title: string, classes: string[], r: ClassificationReport, extra: Record<string, string | number> = {}): string {
  const summary = markdownTable(['metric', 'value'], [
    ['accuracy', pct(r.accuracy)], ['weighted F1', pct(r.weightedF1)], ['macro F1', pct(r.macroF1)], ['mAP', pct(r.mAP)],
    ['images', r.count], ...Object.entries(extra),
  ]);
  const perClass = markdownTable(['class', 'precision', 'recall', 'F1', 'AP', 'support'], r.perClass.map((m, i) => [
    classes[i] ?? String(i), pct(m.precision), pct(m.recall), pct(m.f1), Number.isNaN(m.averagePrecision) ? '—' : pct(m.averagePrecision), m.support,
  ]));
  const confusion = markdownTable(['true \\ predicted', ...classes], r.confusion.map((row, i) => [classes[i] ?? String(i), ...row]));
  return `# ${title}\n\n${summary}\n\n## Per class\n\n${perClass}\n\n## Confusion matrix\n\n${confusion}\n`;
}
