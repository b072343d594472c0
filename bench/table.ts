// Turns the systems' measurements into rows (rates, ratios, targets) and a printed table.
//
// A ratio is graft's speed over the reference's (for µs rows: the reference's time over
// graft's), so above 1 means graft is faster. Targets: GFLOP/s rows ≥ 0.9× raw oneDNN with
// graft's plain layouts; GB/s rows ≥ 60% of the memory bandwidth, measured in the same run by a
// plain C++ copy of 1 GiB (each row also shows its share of a copy of its own bytes, which stays
// in cache); µs rows < 20 µs per call.
import { MEMORY_COPY_BYTES, type BenchCase, type PassName, type Unit } from './cases.js';
import { copyId, type SystemName, type SystemRun } from './references.js';
import type { Measurement } from './timing.js';

export const TARGET_RAW = 0.9;
export const TARGET_COPY = 0.6;
export const TARGET_LATENCY_US = 20;

export interface Row {
  id: string;
  label: string;
  pass: PassName;
  unit: Unit;
  graft?: number;
  raw?: number;
  /** oneDNN choosing its own (blocked) layouts, reorders to graft's included: convolutions only. */
  rawAny?: number;
  torch?: number;
  ort?: number;
  /** Copy bandwidth (GB/s) at this row's bytes (cache-resident): GB/s rows only. */
  copy?: number;
  /** Memory bandwidth (GB/s, a copy far beyond the caches): GB/s rows only. */
  memory?: number;
  /** graft's share of the machine's fp32 peak measured in the same run: GFLOP/s rows only. */
  peakShare?: number;
  target: string;
  /** null when the row has no target or graft did not run it. */
  met: boolean | null;
}

/** The value in the row's unit: GFLOP/s or GB/s from work and time, or µs per call. */
function rate(unit: Unit, work: number, ms: number | undefined): number | undefined {
  if (ms === undefined || !(ms > 0)) return undefined;
  return unit === 'µs' ? ms * 1e3 : work / ms / 1e6;
}

/** The fastest matching measurement's milliseconds. */
function bestMs(results: readonly Measurement[], id: string, pass: string, variant?: (v: string | undefined) => boolean): number | undefined {
  const ms = results
    .filter((m) => m.id === id && m.pass === pass && m.ms !== undefined && (!variant || variant(m.variant)))
    .map((m) => m.ms!);
  return ms.length ? Math.min(...ms) : undefined;
}

export function ratio(unit: Unit, graft: number | undefined, ref: number | undefined): number | undefined {
  if (graft === undefined || ref === undefined) return undefined;
  return unit === 'µs' ? ref / graft : graft / ref;
}

export function buildRows(cases: readonly BenchCase[], runs: Record<SystemName, SystemRun>, peakFp32?: number): Row[] {
  const rows: Row[] = [];
  for (const c of cases) {
    for (const p of c.passes) {
      const r = (system: SystemName, variant?: (v: string | undefined) => boolean) =>
        rate(p.unit, p.work, bestMs(runs[system].results, c.id, p.name, variant));
      const row: Row = {
        id: c.id, label: c.label, pass: p.name, unit: p.unit,
        graft: r('graft'), raw: r('raw', (v) => v !== 'any'), rawAny: r('raw', (v) => v === 'any'), torch: r('torch'), ort: r('ort'),
        target: '', met: null,
      };
      if (p.unit === 'GB/s') {
        row.copy = rate('GB/s', p.work, bestMs(runs.raw.results, copyId(p.work), 'copy'));
        row.memory = rate('GB/s', MEMORY_COPY_BYTES, bestMs(runs.raw.results, copyId(MEMORY_COPY_BYTES), 'copy'));
      }
      if (p.unit === 'GFLOP/s' && row.graft !== undefined && peakFp32) row.peakShare = row.graft / peakFp32;
      [row.target, row.met] = judge(c, row);
      rows.push(row);
    }
  }
  return rows;
}

function judge(c: BenchCase, row: Row): [string, boolean | null] {
  if (row.graft === undefined) return ['no graft result', null];
  switch (c.target) {
    case 'raw': {
      const x = ratio(row.unit, row.graft, row.raw);
      return x === undefined ? [`≥${TARGET_RAW}× raw: no raw`, null] : [`${x.toFixed(2)}× raw (≥${TARGET_RAW})`, x >= TARGET_RAW];
    }
    case 'copy': {
      if (row.memory === undefined) return [`≥${TARGET_COPY * 100}% of memory bandwidth: no copy`, null];
      // The same-size copy and oneDNN's own share show how close to the cache's limit it runs.
      const pct = (v: number, of: number | undefined) => (of === undefined ? '—' : `${((v / of) * 100).toFixed(0)}%`);
      const dnnl = row.raw === undefined ? '' : `; oneDNN ${pct(row.raw, row.memory)}`;
      const cache = `; ${pct(row.graft, row.copy)} of cached copy ${fmt(row.copy)}`;
      return [`${pct(row.graft, row.memory)} of memory ${fmt(row.memory)} (≥${TARGET_COPY * 100}%${dnnl})${cache}`, row.graft / row.memory >= TARGET_COPY];
    }
    case 'latency':
      return [`${fmt(row.graft)} µs (<${TARGET_LATENCY_US})`, row.graft < TARGET_LATENCY_US];
    case 'none':
      return ['', null];
  }
}

export function fmt(v: number | undefined): string {
  if (v === undefined) return '—';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const fmtRatio = (v: number | undefined) => (v === undefined ? '' : `${v.toFixed(2)}`);

/** A Markdown-compatible table with aligned columns. */
export function formatTable(rows: readonly Row[]): string {
  const header = ['op', 'shape', 'pass', 'unit', 'graft', '% peak', 'oneDNN', '×', 'dnnl any', '×', 'PyTorch', '×', 'ORT', '×', 'target', ''];
  const body = rows.map((r) => [
    r.id, r.label, r.pass, r.unit, fmt(r.graft), r.peakShare === undefined ? '' : `${(r.peakShare * 100).toFixed(0)}%`,
    fmt(r.raw), fmtRatio(ratio(r.unit, r.graft, r.raw)),
    r.rawAny === undefined ? '' : fmt(r.rawAny), fmtRatio(ratio(r.unit, r.graft, r.rawAny)),
    fmt(r.torch), fmtRatio(ratio(r.unit, r.graft, r.torch)),
    fmt(r.ort), fmtRatio(ratio(r.unit, r.graft, r.ort)),
    r.target, r.met === null ? '' : r.met ? 'ok' : 'MISS',
  ]);
  const all = [header, ...body];
  const numeric = new Set([4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
  const widths = header.map((_, i) => Math.max(...all.map((line) => line[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...body.map(line)].join('\n');
}
