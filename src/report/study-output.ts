// A study folder's results: the finished cells read back and the table written in its four forms.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { readRunResult, type RunResult } from './results.js';
import { runFigures, studyFigures, writeFigures } from './figures.js';
import { machineInfo, runReportHtml, studyReportHtml, type MachineInfo, type StudyPageInput } from './html.js';
import { studyTable, tableCsv, tableJson, tableMarkdown, tableTex, type StudyTable, type TableInput } from './study-table.js';

/** The parts of a study's plan (study.json) the reports read. */
export interface StudyPlanLike {
  name: string;
  description?: string;
  axes: string[];
  columns: string[];
  seeds: number[];
  rows: { id: string; label: string; baseline: boolean }[];
  cells: { id: string; row: string; seed: number; dir: string }[];
}

export interface StudyResults {
  table: StudyTable;
  /** Finished cells' results by row id, in seed order. */
  byRow: Map<string, RunResult[]>;
  missing: string[];
}

export function readStudyResults(output: string, plan: StudyPlanLike): StudyResults {
  const byRow = new Map<string, RunResult[]>(plan.rows.map((r) => [r.id, []]));
  const missing: string[] = [];
  for (const cell of plan.cells) {
    const dir = join(output, cell.dir);
    if (!existsSync(join(dir, 'report.json'))) {
      missing.push(cell.id);
      continue;
    }
    byRow.get(cell.row)?.push(readRunResult(dir));
  }
  const input: TableInput = {
    name: plan.name, axes: plan.axes, columns: plan.columns,
    rows: plan.rows.map((r) => ({ id: r.id, label: r.label, baseline: r.baseline, results: byRow.get(r.id) ?? [], expected: plan.cells.filter((c) => c.row === r.id).length })),
  };
  return { table: studyTable(input), byRow, missing };
}

/** table.md, table.csv, table.json and table.tex in the study folder. */
export function writeStudyTables(output: string, table: StudyTable): string[] {
  const files: [string, string][] = [['table.md', `# ${table.name}\n\n${tableMarkdown(table)}`], ['table.csv', tableCsv(table)], ['table.json', tableJson(table)], ['table.tex', tableTex(table)]];
  for (const [name, text] of files) writeFileAtomic(join(output, name), text);
  return files.map(([n]) => join(output, n));
}

/** A run folder's pictures (figures/) and report.html; returns the page's path. */
export async function writeRunReport(dir: string): Promise<string> {
  const r = readRunResult(dir);
  const title = `${r.summary.model} · ${r.summary.method}`;
  const figs = runFigures(r, title);
  await writeFigures(dir, figs);
  const file = join(dir, 'report.html');
  writeFileAtomic(file, runReportHtml(r, figs, machineInfo()));
  return file;
}

/** A study folder's tables, pictures and report.html from its finished cells (their own reports written where missing). */
export async function writeStudyReport(output: string, plan: StudyPlanLike & { description?: string }): Promise<{ results: StudyResults; files: string[] }> {
  const results = readStudyResults(output, plan);
  const files = writeStudyTables(output, results.table);
  const figs = studyFigures(results, plan.rows, plan.name);
  files.push(...(await writeFigures(output, figs)));
  const links = new Map<string, string[]>();
  const machines: MachineInfo[] = [];
  const cells: StudyPageInput['cells'] = [];
  for (const cell of plan.cells) {
    const dir = join(output, cell.dir);
    const finished = existsSync(join(dir, 'report.json'));
    if (finished) {
      if (!existsSync(join(dir, 'report.html'))) await writeRunReport(dir);
      const href = `${cell.dir}/report.html`;
      links.set(cell.row, [...(links.get(cell.row) ?? []), href]);
      const m = results.byRow.get(cell.row)?.find((x) => x.dir === dir)?.report['machine'] as MachineInfo | undefined;
      if (m && !machines.some((x) => JSON.stringify(x) === JSON.stringify(m))) machines.push(m);
    }
    cells.push({ id: cell.id, href: finished ? `${cell.dir}/report.html` : null, state: finished ? 'finished' : 'not finished' });
  }
  const file = join(output, 'report.html');
  writeFileAtomic(file, studyReportHtml({ name: plan.name, description: plan.description, table: results.table, figures: figs, links, cells, plan, machines, generatedBy: machineInfo() }));
  files.push(file);
  return { results, files };
}
