// One self-contained report.html for a run or a study: the tables (sortable by clicking a
// header), the pictures inline as SVG, the configuration, the machine and graft's version. Nothing
// is fetched: no external style sheet, script, font or image, so it opens offline and as a file.
import { readFileSync } from 'node:fs';
import { arch, cpus, hostname, platform, release, totalmem } from 'node:os';
import { currentBackend } from '../backends/registry.js';
import type { Figure } from './charts.js';
import type { RunResult } from './results.js';
import type { StudyTable } from './study-table.js';

export interface MachineInfo {
  host: string;
  cpu: string;
  cores: number;
  memoryGB: number;
  os: string;
  node: string;
  backend: string;
  graft: string;
}

let version: string | null = null;
/** graft's version from its package.json. */
export function graftVersion(): string {
  if (version === null) {
    try {
      version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

/** The machine a run trains on (saved in its report.json). */
export function machineInfo(): MachineInfo {
  let backend = 'unknown';
  try {
    backend = currentBackend().name;
  } catch {
    // no backend loaded in this process (a report written by a separate command)
  }
  const c = cpus();
  return {
    host: hostname(), cpu: c[0]?.model.trim() ?? 'unknown', cores: c.length, memoryGB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    os: `${platform()} ${release()} ${arch()}`, node: process.version, backend, graft: graftVersion(),
  };
}

export const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export interface HtmlTable {
  caption?: string;
  header: string[];
  /** Each cell: the text shown, the value sorted by (a number or text), whether it is marked best. */
  rows: { text: string; sort?: number | string; best?: boolean; href?: string }[][];
}

function tableHtml(t: HtmlTable): string {
  const head = t.header.map((h, i) => `<th data-col="${i}" title="sort">${esc(h)}</th>`).join('');
  const body = t.rows.map((r) => `<tr>${r.map((c) => {
    const sort = c.sort === undefined ? '' : ` data-sort="${esc(String(c.sort))}"`;
    const text = c.href ? `<a href="${esc(c.href)}">${esc(c.text)}</a>` : esc(c.text);
    return `<td${sort}${c.best ? ' class="best"' : ''}>${c.best ? `<b>${text}</b>` : text}</td>`;
  }).join('')}</tr>`).join('\n');
  return `<table class="sortable">${t.caption ? `<caption>${esc(t.caption)}</caption>` : ''}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const STYLE = `
body { font-family: system-ui, "DejaVu Sans", Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
td[data-sort] { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #eaf5ea; }
caption { text-align: left; font-weight: bold; margin-bottom: 0.3em; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; } figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 1em; overflow: auto; font-size: 0.85em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: bold; }
`;

// Click a header: sort by data-sort (numbers) or the text; click again to reverse.
const SCRIPT = `
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th) {
    th.addEventListener('click', function () {
      var col = Number(th.dataset.col);
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (x) { x.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (r) {
        var c = r.cells[col];
        if (!c) return '';
        var s = c.dataset.sort;
        return s !== undefined && s !== '' && !isNaN(Number(s)) ? Number(s) : (s !== undefined ? s : c.textContent);
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var d = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
        return asc ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
`;

function machineHtml(machines: readonly MachineInfo[]): string {
  if (machines.length === 0) return '<p>not recorded</p>';
  return machines.map((m) => `<dl><dt>host</dt><dd>${esc(m.host)}</dd><dt>CPU</dt><dd>${esc(m.cpu)} × ${m.cores}</dd><dt>memory</dt><dd>${m.memoryGB} GB</dd><dt>system</dt><dd>${esc(m.os)}</dd><dt>Node.js</dt><dd>${esc(m.node)}</dd><dt>backend</dt><dd>${esc(m.backend)}</dd><dt>graft</dt><dd>${esc(m.graft)}</dd></dl>`).join('\n');
}

/** The inline SVG of each figure (the PNG beside it is for documents). */
function figuresHtml(figs: readonly Figure[]): string {
  return figs.map((f) => `<figure id="fig-${esc(f.name)}" class="picture">${f.svg.replace(/\n/g, '')}<figcaption>${esc(f.title)} (<a href="figures/${esc(f.name)}.png">PNG</a>, <a href="figures/${esc(f.name)}.svg">SVG</a>)</figcaption></figure>`).join('\n');
}

function page(title: string, sections: string[]): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>${esc(title)}</title><link rel="icon" href="data:,"><style>${STYLE}</style></head>
<body>
<h1>${esc(title)}</h1>
${sections.join('\n')}
<script>${SCRIPT}</script>
</body></html>
`;
}

const pct = (v: number) => `${(100 * v).toFixed(2)}%`;

/** A run's page: summary, per-class metrics, pictures, configuration, machine. */
export function runReportHtml(r: RunResult, figs: readonly Figure[], generatedBy: MachineInfo): string {
  const s = r.summary;
  const summary: HtmlTable = {
    caption: 'test results',
    header: ['metric', 'value'],
    rows: [
      ['method', s.method], ['target', s.target], ['rank', s.rank === null ? '—' : String(s.rank)],
      ['trainable params', `${s.trainableParams.toLocaleString('en-US')} of ${s.totalParams.toLocaleString('en-US')} (${s.trainablePercent.toFixed(4)}%)`],
      ['training time (s)', s.trainSeconds.toFixed(1)], ['test accuracy', pct(s.accuracy)], ['weighted F1', pct(s.weightedF1)], ['macro F1', pct(s.macroF1)], ['mAP', pct(s.mAP)],
      ['test images', String(r.metrics.count)],
      ...(isFinite(Number(s.latencyMs)) ? [['latency, batch 1 (ms)', Number(s.latencyMs).toFixed(1)]] : []),
      ...(isFinite(Number(s.throughput)) ? [['throughput (img/s)', Number(s.throughput).toFixed(1)]] : []),
    ].map(([k, v]) => [{ text: k! }, { text: v! }]),
  };
  const perClass: HtmlTable = {
    caption: 'per class',
    header: ['class', 'precision', 'recall', 'F1', 'AP', 'support'],
    rows: r.metrics.perClass.map((m, i) => [
      { text: r.classes[i] ?? String(i) }, { text: pct(m.precision), sort: m.precision }, { text: pct(m.recall), sort: m.recall }, { text: pct(m.f1), sort: m.f1 },
      { text: Number.isFinite(m.averagePrecision) ? pct(m.averagePrecision) : '—', sort: Number.isFinite(m.averagePrecision) ? m.averagePrecision : -1 }, { text: String(m.support), sort: m.support },
    ]),
  };
  const machine = (r.report['machine'] as MachineInfo | undefined) ?? null;
  return page(`${s.model} · ${s.method}`, [
    '<h2>Results</h2>', tableHtml(summary), tableHtml(perClass),
    '<h2>Pictures</h2>', figuresHtml(figs),
    '<h2>Configuration</h2>', `<pre>${esc(JSON.stringify(r.config, null, 2))}</pre>`,
    '<h2>Machine</h2>', machine ? machineHtml([machine]) : `<p>The run did not record its machine; this report was written on:</p>${machineHtml([generatedBy])}`,
    `<p><small>report written by graft ${esc(generatedBy.graft)} on ${esc(new Date().toISOString())}</small></p>`,
  ]);
}

/** The study table as an HTML table: sortable by the means, best values marked, each row linking to its first cell's report. */
export function studyTableHtml(t: StudyTable, links: Map<string, string[]>): HtmlTable {
  return {
    caption: t.name,
    header: [...t.columns.map((c) => c.header), 'runs'],
    rows: t.rows.map((r) => [
      ...t.columns.map((c) => {
        const v = r.cells[c.key];
        if (v === undefined || typeof v === 'string') return { text: v ?? '—' };
        const k = c.percent ? 100 : 1;
        const text = c.key === 'trainableParams'
          ? `${Math.round(v.mean).toLocaleString('en-US')}${typeof r.cells['trainablePercent'] === 'object' ? ` (${(r.cells['trainablePercent']).mean.toFixed(2)}%)` : ''}`
          : `${(k * v.mean).toFixed(c.digits)}${v.std === null ? '' : ` ± ${(k * v.std).toFixed(c.digits)}`}`;
        return { text, sort: v.mean, best: v.best };
      }),
      ...[{ text: (links.get(r.id) ?? []).length ? `${links.get(r.id)!.length} run${links.get(r.id)!.length > 1 ? 's' : ''}` : 'none finished', href: links.get(r.id)?.[0] }],
    ]),
  };
}

export interface StudyPageInput {
  name: string;
  description?: string;
  table: StudyTable;
  figures: readonly Figure[];
  /** Row id → relative links to its cells' report.html. */
  links: Map<string, string[]>;
  /** Cell id → its run's folder (relative) and seed, for the list of runs. */
  cells: { id: string; href: string | null; state: string }[];
  plan: unknown;
  machines: MachineInfo[];
  generatedBy: MachineInfo;
}

export function studyReportHtml(s: StudyPageInput): string {
  const cells: HtmlTable = {
    caption: 'cells',
    header: ['cell', 'state'],
    rows: s.cells.map((c) => [{ text: c.id, href: c.href ?? undefined }, { text: c.state }]),
  };
  return page(`study ${s.name}`, [
    s.description ? `<p>${esc(s.description)}</p>` : '',
    '<h2>Table</h2>', tableHtml(studyTableHtml(s.table, s.links)), '<p>Mean ± sample standard deviation over the seeds; the best value of each column in bold. Click a header to sort.</p>',
    '<h2>Pictures</h2>', figuresHtml(s.figures),
    '<h2>Runs</h2>', tableHtml(cells),
    '<h2>Study</h2>', `<pre>${esc(JSON.stringify(s.plan, null, 2))}</pre>`,
    '<h2>Machines</h2>', machineHtml(s.machines.length ? s.machines : [s.generatedBy]),
    `<p><small>report written by graft ${esc(s.generatedBy.graft)} on ${esc(new Date().toISOString())}</small></p>`,
  ]);
}
