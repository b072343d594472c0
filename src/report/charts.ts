// Pictures of runs and studies as hand-written SVG (no browser, no network), and PNG rendered
// from the same SVG by sharp (librsvg): training and validation curves, the confusion matrix as
// a heatmap, accuracy against trainable parameters (log scale) with the Pareto front, kept rank
// per layer (AdaLoRA, DyLoRA), and accuracy under perturbations as bars.
import { join } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../io/atomic.js';

export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const color = (i: number) => PALETTE[i % PALETTE.length]!;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const f1 = (v: number) => (Math.round(v * 10) / 10).toString();

export interface Figure {
  /** File name without extension. */
  name: string;
  title: string;
  svg: string;
  width: number;
  height: number;
}

function frame(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="18" font-size="13" font-weight="bold" text-anchor="middle">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** About five round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const tickText = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(0) : String(Number(v.toPrecision(4))));

interface Axes {
  x: (v: number) => number;
  y: (v: number) => number;
  body: string[];
}

/** A plot area with ticks, grid lines and axis labels; `logX` puts x on a log10 scale. */
function axes(width: number, height: number, xr: [number, number], yr: [number, number], xLabel: string, yLabel: string, logX = false): Axes {
  const L = 64;
  const R = 150;
  const T = 32;
  const B = 44;
  const tx = (v: number) => (logX ? Math.log10(v) : v);
  let [x0, x1] = [tx(xr[0]), tx(xr[1])];
  if (!(x1 > x0)) [x0, x1] = [x0 - 0.5, x0 + 0.5];
  let [y0, y1] = yr;
  if (!(y1 > y0)) [y0, y1] = [y0 - 0.5, y0 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const x = (v: number) => L + ((tx(v) - x0) / (x1 - x0)) * (width - L - R);
  const y = (v: number) => height - B - ((v - y0) / (y1 - y0)) * (height - T - B);
  const body: string[] = [];
  body.push(`<rect x="${L}" y="${T}" width="${width - L - R}" height="${height - T - B}" fill="none" stroke="#444"/>`);
  for (const v of niceTicks(y0, y1)) {
    body.push(`<line x1="${L}" x2="${width - R}" y1="${f1(y(v))}" y2="${f1(y(v))}" stroke="#e5e5e5"/>`);
    body.push(`<text x="${L - 6}" y="${f1(y(v) + 4)}" text-anchor="end">${tickText(v)}</text>`);
  }
  const xt = logX ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => 10 ** (Math.ceil(x0) + i)) : niceTicks(x0, x1);
  for (const v of xt) {
    body.push(`<line x1="${f1(x(v))}" x2="${f1(x(v))}" y1="${T}" y2="${height - B}" stroke="#e5e5e5"/>`);
    body.push(`<text x="${f1(x(v))}" y="${height - B + 15}" text-anchor="middle">${logX ? `1e${Math.round(Math.log10(v))}` : tickText(v)}</text>`);
  }
  body.push(`<text x="${(L + width - R) / 2}" y="${height - 8}" text-anchor="middle">${esc(xLabel)}</text>`);
  body.push(`<text x="14" y="${(T + height - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(T + height - B) / 2})">${esc(yLabel)}</text>`);
  return { x, y, body };
}

function legend(width: number, names: readonly string[], dashed: readonly boolean[] = []): string[] {
  return names.flatMap((n, i) => {
    const yy = 40 + i * 16;
    return [
      `<line x1="${width - 140}" x2="${width - 118}" y1="${yy}" y2="${yy}" stroke="${color(i)}" stroke-width="2"${dashed[i] ? ' stroke-dasharray="5 3"' : ''}/>`,
      `<text x="${width - 112}" y="${yy + 4}">${esc(n.length > 22 ? `${n.slice(0, 21)}…` : n)}</text>`,
    ];
  });
}

export interface Series {
  name: string;
  points: [number, number][];
  dashed?: boolean;
}

/** Lines over a shared x axis (steps or epochs). */
export function lineChart(name: string, title: string, xLabel: string, yLabel: string, series: readonly Series[], width = 640, height = 360): Figure {
  const pts = series.flatMap((s) => s.points).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const a = axes(width, height, [Math.min(...xs, 0), Math.max(...xs, 1)], [pts.length ? Math.min(...ys) : 0, pts.length ? Math.max(...ys) : 1], xLabel, yLabel);
  const lines = series.map((s, i) => {
    const p = s.points.filter(([u, v]) => Number.isFinite(u) && Number.isFinite(v));
    const poly = `<polyline fill="none" stroke="${color(i)}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''} points="${p.map(([u, v]) => `${f1(a.x(u))},${f1(a.y(v))}`).join(' ')}"/>`;
    const dots = p.length <= 30 ? p.map(([u, v]) => `<circle cx="${f1(a.x(u))}" cy="${f1(a.y(v))}" r="2.5" fill="${color(i)}"/>`) : [];
    return [poly, ...dots].join('\n');
  });
  return { name, title, width, height, svg: frame(width, height, title, [...a.body, ...lines, ...legend(width, series.map((s) => s.name), series.map((s) => s.dashed ?? false))]) };
}

/** White → blue by each row's share (recall per class), the counts written in the cells. */
export function confusionHeatmap(name: string, title: string, classes: readonly string[], matrix: readonly (readonly number[])[]): Figure {
  const n = classes.length;
  const cell = Math.max(18, Math.min(48, Math.floor(420 / Math.max(n, 1))));
  const L = 130;
  const T = 40;
  const width = Math.max(L + n * cell + 30, 8 * title.length + 20);
  const height = T + n * cell + 110;
  const body: string[] = [];
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((v, j) => {
      const share = v / total;
      const shade = (c0: number, c1: number) => Math.round(c0 + (c1 - c0) * share);
      const fill = `rgb(${shade(255, 8)},${shade(255, 69)},${shade(255, 148)})`;
      body.push(`<rect x="${L + j * cell}" y="${T + i * cell}" width="${cell}" height="${cell}" fill="${fill}" stroke="#ddd"><title>${esc(`${classes[i]} → ${classes[j]}: ${v}`)}</title></rect>`);
      if (cell >= 22) body.push(`<text x="${L + j * cell + cell / 2}" y="${T + i * cell + cell / 2 + 4}" text-anchor="middle" font-size="${cell >= 36 ? 11 : 9}" fill="${share > 0.5 ? 'white' : 'black'}">${v}</text>`);
    });
  });
  const label = (s: string) => esc(s.length > 16 ? `${s.slice(0, 15)}…` : s);
  classes.forEach((c, i) => {
    body.push(`<text x="${L - 6}" y="${T + i * cell + cell / 2 + 4}" text-anchor="end">${label(c)}</text>`);
    const x = L + i * cell + cell / 2;
    const y = T + n * cell + 8;
    body.push(`<text x="${x}" y="${y}" text-anchor="end" transform="rotate(-60 ${x} ${y})">${label(c)}</text>`);
  });
  body.push(`<text x="12" y="${T + (n * cell) / 2}" text-anchor="middle" transform="rotate(-90 12 ${T + (n * cell) / 2})">true class</text>`);
  body.push(`<text x="${L + (n * cell) / 2}" y="${height - 6}" text-anchor="middle">predicted class</text>`);
  return { name, title, width, height, svg: frame(width, height, title, body) };
}

export interface ParetoPoint {
  label: string;
  params: number;
  accuracy: number;
  std?: number | null;
}

/** The points no other point beats on both axes (fewer or equal parameters and higher or equal accuracy, one strictly). */
export function paretoFront(points: readonly ParetoPoint[]): ParetoPoint[] {
  return points
    .filter((p) => !points.some((q) => q !== p && q.params <= p.params && q.accuracy >= p.accuracy && (q.params < p.params || q.accuracy > p.accuracy)))
    .sort((a, b) => a.params - b.params);
}

/** Accuracy (%) against trainable parameters on a log axis, error bars of one std, the Pareto front drawn. */
export function paretoChart(name: string, title: string, points: readonly ParetoPoint[], width = 640, height = 380): Figure {
  const ps = points.filter((p) => p.params > 0 && Number.isFinite(p.accuracy));
  const xs = ps.map((p) => p.params);
  const ys = ps.flatMap((p) => [100 * (p.accuracy - (p.std ?? 0)), 100 * (p.accuracy + (p.std ?? 0))]);
  const lo = xs.length ? 10 ** Math.floor(Math.log10(Math.min(...xs))) : 1;
  const hi = xs.length ? 10 ** Math.ceil(Math.log10(Math.max(...xs)) + 1e-9) : 10;
  const a = axes(width, height, [lo, hi > lo ? hi : lo * 10], [ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 100], 'trainable parameters (log scale)', 'test accuracy (%)', true);
  const front = paretoFront(ps);
  const body = [...a.body];
  if (front.length > 1) {
    const pts: string[] = [];
    front.forEach((p, i) => {
      if (i > 0) pts.push(`${f1(a.x(p.params))},${f1(a.y(100 * front[i - 1]!.accuracy))}`);
      pts.push(`${f1(a.x(p.params))},${f1(a.y(100 * p.accuracy))}`);
    });
    body.push(`<polyline fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 3" points="${pts.join(' ')}"/>`);
  }
  ps.forEach((p, i) => {
    const cx = a.x(p.params);
    const cy = a.y(100 * p.accuracy);
    if (p.std) body.push(`<line x1="${f1(cx)}" x2="${f1(cx)}" y1="${f1(a.y(100 * (p.accuracy - p.std)))}" y2="${f1(a.y(100 * (p.accuracy + p.std)))}" stroke="${color(i)}"/>`);
    const onFront = front.includes(p);
    body.push(`<circle cx="${f1(cx)}" cy="${f1(cy)}" r="${onFront ? 5 : 4}" fill="${color(i)}"${onFront ? ' stroke="#d62728" stroke-width="2"' : ''}><title>${esc(`${p.label}: ${p.params.toLocaleString('en-US')} params, ${(100 * p.accuracy).toFixed(2)}%`)}</title></circle>`);
  });
  body.push(...legend(width, ps.map((p) => p.label)).map((s) => s.replace(/<line ([^>]*)stroke-width="2"\/>/, '<line $1stroke-width="6"/>')));
  body.push(`<line x1="${width - 140}" x2="${width - 118}" y1="${44 + ps.length * 16}" y2="${44 + ps.length * 16}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 3"/><text x="${width - 112}" y="${48 + ps.length * 16}" fill="#d62728">Pareto front</text>`);
  return { name, title, width, height, svg: frame(width, height, title, body) };
}

export interface Bar {
  label: string;
  value: number;
  /** The bar's full length (a maximum rank), drawn behind it. */
  max?: number;
  group?: number;
}

/** Horizontal bars (rank per layer, accuracy per perturbation). */
export function barChart(name: string, title: string, valueLabel: string, bars: readonly Bar[], opts: { percent?: boolean } = {}): Figure {
  const rowH = 18;
  const L = 200;
  const width = 640;
  const height = 60 + bars.length * rowH + 30;
  const top = Math.max(1e-9, ...bars.map((b) => Math.max(b.value, b.max ?? 0)));
  const sx = (v: number) => (v / top) * (width - L - 60);
  const body: string[] = [];
  const k = opts.percent ? 100 : 1;
  bars.forEach((b, i) => {
    const y = 36 + i * rowH;
    if (b.max !== undefined) body.push(`<rect x="${L}" y="${y}" width="${f1(sx(b.max))}" height="${rowH - 4}" fill="#eee" stroke="#ccc"/>`);
    body.push(`<rect x="${L}" y="${y}" width="${f1(sx(b.value))}" height="${rowH - 4}" fill="${color(b.group ?? 0)}"><title>${esc(`${b.label}: ${b.value}`)}</title></rect>`);
    body.push(`<text x="${L - 6}" y="${y + rowH - 7}" text-anchor="end">${esc(b.label.length > 30 ? `…${b.label.slice(-29)}` : b.label)}</text>`);
    body.push(`<text x="${f1(L + sx(Math.max(b.value, b.max ?? 0)) + 4)}" y="${y + rowH - 7}">${opts.percent ? (k * b.value).toFixed(1) : b.max !== undefined ? `${b.value}/${b.max}` : String(b.value)}</text>`);
  });
  body.push(`<text x="${L + (width - L - 60) / 2}" y="${height - 8}" text-anchor="middle">${esc(valueLabel)}</text>`);
  return { name, title, width, height, svg: frame(width, height, title, body) };
}

/** The PNG of a figure, at its SVG's size. */
export async function figurePng(f: Figure): Promise<Buffer> {
  return sharp(Buffer.from(f.svg), { density: 72 }).png().toBuffer();
}

/** <dir>/<name>.svg and <name>.png; returns the two paths. */
export async function writeFigure(dir: string, f: Figure): Promise<[string, string]> {
  const svg = join(dir, `${f.name}.svg`);
  const png = join(dir, `${f.name}.png`);
  writeFileAtomic(svg, f.svg);
  writeFileAtomic(png, await figurePng(f));
  return [svg, png];
}
