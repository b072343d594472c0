// A study's table in the papers' layout: one row per grid point or baseline, the columns method,
// target, rank, trainable params (%), training time, test accuracy, weighted F1 and mAP (plus the
// grid's other fields and the study's extra columns), each number the mean ± sample standard
// deviation (n − 1) over the row's seeds, and the best mean of each column marked (ties all
// marked, compared at the precision shown). Written as Markdown, CSV, JSON and LaTeX.
import { pathValue, type RunResult } from './results.js';

export interface TableRowInput {
  id: string;
  label: string;
  baseline: boolean;
  /** The finished cells of the row, one per seed that finished. */
  results: Pick<RunResult, 'summary' | 'config'>[];
  /** Seeds the row should have (for "2 of 3 seeds"). */
  expected: number;
}

export interface TableInput {
  name: string;
  /** Grid paths: those other than method, adapter targets and rank get a column each. */
  axes: string[];
  /** Extra columns: summary fields or configuration paths. */
  columns: string[];
  rows: TableRowInput[];
}

type Better = 'high' | 'low';

interface ColumnSpec {
  key: string;
  header: string;
  kind: 'text' | 'number';
  better?: Better;
  /** Display: percentage points (×100) or plain, and digits. */
  percent?: boolean;
  digits: number;
}

export interface Stat {
  mean: number;
  std: number | null;
  n: number;
  values: number[];
  best: boolean;
}

export interface StudyTableRow {
  id: string;
  label: string;
  baseline: boolean;
  seeds: number;
  expected: number;
  cells: Record<string, Stat | string>;
}

export interface StudyTable {
  name: string;
  columns: ColumnSpec[];
  rows: StudyTableRow[];
}

const SUMMARY_SPECS: Record<string, Omit<ColumnSpec, 'key'>> = {
  trainableParams: { header: 'trainable params', kind: 'number', digits: 0 },
  trainablePercent: { header: 'trainable (%)', kind: 'number', digits: 4 },
  trainSeconds: { header: 'training time (s)', kind: 'number', better: 'low', digits: 1 },
  accuracy: { header: 'test accuracy (%)', kind: 'number', better: 'high', percent: true, digits: 2 },
  weightedF1: { header: 'weighted F1 (%)', kind: 'number', better: 'high', percent: true, digits: 2 },
  macroF1: { header: 'macro F1 (%)', kind: 'number', better: 'high', percent: true, digits: 2 },
  mAP: { header: 'mAP (%)', kind: 'number', better: 'high', percent: true, digits: 2 },
  latencyMs: { header: 'latency (ms)', kind: 'number', better: 'low', digits: 1 },
  throughput: { header: 'throughput (img/s)', kind: 'number', better: 'high', digits: 1 },
  peakMemoryMB: { header: 'peak memory (MB)', kind: 'number', better: 'low', digits: 0 },
};

const DEFAULT_NUMBERS = ['trainSeconds', 'accuracy', 'weightedF1', 'mAP'];
const SHOWN_BY_DEFAULT = new Set(['method', 'adapter.targets', 'adapter.r']);

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Sample standard deviation (n − 1); null for fewer than two values. */
export function sampleStd(xs: readonly number[]): number | null {
  if (xs.length < 2) return null;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
}

const textOf = (v: unknown): string => (v === undefined ? '—' : Array.isArray(v) ? v.join(',') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));

export function buildStudyTable(input: TableInput): StudyTable {
  const extraAxes = input.axes.filter((a) => !SHOWN_BY_DEFAULT.has(a));
  const columns: ColumnSpec[] = [
    { key: 'method', header: 'method', kind: 'text', digits: 0 },
    { key: 'target', header: 'target', kind: 'text', digits: 0 },
    { key: 'rank', header: 'rank', kind: 'text', digits: 0 },
    ...extraAxes.map((a): ColumnSpec => ({ key: a, header: a, kind: 'text', digits: 0 })),
    { key: 'trainableParams', header: 'trainable params (%)', kind: 'number', digits: 0 },
    ...DEFAULT_NUMBERS.map((k): ColumnSpec => ({ key: k, ...SUMMARY_SPECS[k]! })),
  ];
  for (const c of input.columns) {
    if (columns.some((x) => x.key === c)) continue;
    const spec = SUMMARY_SPECS[c];
    columns.push(spec ? { key: c, ...spec } : { key: c, header: c, kind: 'text', digits: 0 });
  }
  const rows: StudyTableRow[] = input.rows.map((r) => {
    const first = r.results[0];
    const cells: Record<string, Stat | string> = {};
    for (const col of columns) {
      if (col.key === 'method') cells[col.key] = r.baseline ? r.label : first ? String(first.summary.method) : '—';
      else if (col.key === 'target') cells[col.key] = first ? String(first.summary.target) : '—';
      else if (col.key === 'rank') cells[col.key] = first && first.summary.rank !== null && first.summary.rank !== undefined ? String(first.summary.rank) : '—';
      else if (col.kind === 'text') cells[col.key] = first ? textOf(pathValue(first.config, col.key)) : '—';
      else {
        const values = r.results.map((x) => x.summary[col.key]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
        cells[col.key] = values.length ? { mean: mean(values), std: sampleStd(values), n: values.length, values, best: false } : '—';
      }
    }
    return { id: r.id, label: r.label, baseline: r.baseline, seeds: r.results.length, expected: r.expected, cells };
  });
  for (const col of columns) {
    if (!col.better) continue;
    const shown = (s: Stat) => Number(((col.percent ? 100 : 1) * s.mean).toFixed(col.digits));
    const stats = rows.map((r) => r.cells[col.key]).filter((s): s is Stat => typeof s === 'object');
    if (stats.length < 2) continue;
    const target = col.better === 'high' ? Math.max(...stats.map(shown)) : Math.min(...stats.map(shown));
    for (const s of stats) s.best = shown(s) === target;
  }
  return { name: input.name, columns, rows };
}

function formatStat(col: ColumnSpec, s: Stat, pm: string): string {
  const k = col.percent ? 100 : 1;
  const m = (k * s.mean).toFixed(col.digits);
  return s.std === null ? m : `${m}${pm}${(k * s.std).toFixed(col.digits)}`;
}

function cellText(col: ColumnSpec, row: StudyTableRow, pm = ' ± '): string {
  const v = row.cells[col.key];
  if (v === undefined) return '—';
  if (typeof v === 'string') return v;
  if (col.key === 'trainableParams') {
    const pctCell = row.cells['trainablePercent'];
    const percent = typeof pctCell === 'object' ? pctCell.mean : undefined;
    return `${Math.round(v.mean).toLocaleString('en-US')}${percent !== undefined ? ` (${percent.toFixed(2)}%)` : ''}`;
  }
  return formatStat(col, v, pm);
}

/** Percentages of trainable parameters ride along with the parameter count (not a column of their own). */
function withPercent(table: StudyTable, rows: TableRowInput[]): StudyTable {
  for (const [i, r] of table.rows.entries()) {
    const values = rows[i]!.results.map((x) => x.summary.trainablePercent).filter((v) => typeof v === 'number');
    if (values.length && !('trainablePercent' in r.cells)) r.cells['trainablePercent'] = { mean: mean(values), std: sampleStd(values), n: values.length, values, best: false };
  }
  return table;
}

export function studyTable(input: TableInput): StudyTable {
  return withPercent(buildStudyTable(input), input.rows);
}

const seedNote = (r: StudyTableRow) => (r.seeds < r.expected ? ` (${r.seeds} of ${r.expected} seeds)` : '');

export function tableMarkdown(t: StudyTable): string {
  const head = `| ${t.columns.map((c) => c.header).join(' | ')} |`;
  const rule = `| ${t.columns.map((c) => (c.kind === 'number' ? '---:' : '---')).join(' | ')} |`;
  const body = t.rows.map((r) => `| ${t.columns.map((c, j) => {
    const v = r.cells[c.key];
    const text = cellText(c, r) + (j === 0 ? seedNote(r) : '');
    return typeof v === 'object' && v.best ? `**${text}**` : text;
  }).join(' | ')} |`);
  const n = Math.max(0, ...t.rows.map((r) => r.expected));
  return `${[head, rule, ...body].join('\n')}\n\n${n > 1 ? `Mean ± sample standard deviation over ${n} seeds; ` : ''}**bold**: the best value of its column.\n`;
}

const csvCell = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** Machine-readable: raw means and standard deviations (fractions for accuracy-like columns), a 1 where the value is the column's best. */
export function tableCsv(t: StudyTable): string {
  const header = ['row', 'seeds'];
  for (const c of t.columns) {
    if (c.kind === 'text') header.push(c.key);
    else if (c.key === 'trainableParams') header.push('trainable_params', 'trainable_percent');
    else header.push(`${c.key}_mean`, `${c.key}_std`, ...(c.better ? [`${c.key}_best`] : []));
  }
  const lines = t.rows.map((r) => {
    const out: string[] = [r.label, String(r.seeds)];
    for (const c of t.columns) {
      const v = r.cells[c.key];
      if (c.kind === 'text') out.push(typeof v === 'string' ? v : '');
      else if (c.key === 'trainableParams') {
        const p = r.cells['trainablePercent'];
        out.push(typeof v === 'object' ? String(Math.round(v.mean)) : '', typeof p === 'object' ? String(p.mean) : '');
      } else {
        const s = typeof v === 'object' ? v : null;
        out.push(s ? String(s.mean) : '', s && s.std !== null ? String(s.std) : '', ...(c.better ? [s?.best ? '1' : '0'] : []));
      }
    }
    return out.map(csvCell).join(',');
  });
  return `${[header.join(','), ...lines].join('\n')}\n`;
}

export function tableJson(t: StudyTable): string {
  return JSON.stringify({
    name: t.name,
    std: 'sample (n - 1)',
    columns: t.columns.map((c) => ({ key: c.key, header: c.header, better: c.better ?? null, percent: c.percent ?? false })),
    rows: t.rows,
  }, null, 2);
}

const texEscape = (s: string) => s.replace(/\\/g, '\\textbackslash{}').replace(/([&%$#_{}])/g, '\\$1').replace(/~/g, '\\textasciitilde{}').replace(/\^/g, '\\textasciicircum{}');

/** A booktabs table; best values in bold, ± as $\pm$. */
export function tableTex(t: StudyTable): string {
  const align = t.columns.map((c) => (c.kind === 'number' ? 'r' : 'l')).join('');
  const head = t.columns.map((c) => texEscape(c.header)).join(' & ');
  const body = t.rows.map((r) => t.columns.map((c, j) => {
    const v = r.cells[c.key];
    const text = texEscape(cellText(c, r, '\u0000') + (j === 0 ? seedNote(r) : '')).replace(/\u0000/g, ' $\\pm$ ');
    return typeof v === 'object' && v.best ? `\\textbf{${text}}` : text;
  }).join(' & ') + ' \\\\');
  const n = Math.max(0, ...t.rows.map((r) => r.expected));
  return [
    '% requires \\usepackage{booktabs}',
    '\\begin{table}[t]',
    '\\centering',
    `\\begin{tabular}{${align}}`,
    '\\toprule',
    `${head} \\\\`,
    '\\midrule',
    ...body,
    '\\bottomrule',
    '\\end{tabular}',
    `\\caption{${texEscape(t.name)}${n > 1 ? `: mean $\\pm$ standard deviation over ${n} seeds` : ''}; best in bold.}`,
    '\\end{table}',
    '',
  ].join('\n');
}
