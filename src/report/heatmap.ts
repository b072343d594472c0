// A layer-similarity matrix (nn/similarity.ts) as JSON and as an SVG heatmap: one cell per pair
// of layers, white (0) to dark blue (1), the value written in cells large enough to read.
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import type { SimilarityMatrix } from '../nn/similarity.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The JSON form: NaN (undefined or not computed) written as null. */
export function similarityJson(s: SimilarityMatrix): Record<string, unknown> {
  return {
    layers: s.layers, n: s.n, channels: s.channels, estimators: s.estimators,
    matrix: s.matrix.map((row) => row.map((v) => (Number.isFinite(v) ? v : null))),
  };
}

function colour(v: number): string {
  if (!Number.isFinite(v)) return '#dddddd';
  const t = Math.min(Math.max(v, 0), 1);
  const mix = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 8)},${mix(255, 48)},${mix(255, 107)})`;
}

export function similarityHeatmapSvg(s: SimilarityMatrix, title = 'linear CKA between layers'): string {
  const L = s.layers.length;
  const cell = Math.max(12, Math.min(48, Math.floor(640 / Math.max(L, 1))));
  const label = Math.min(260, 8 + 6.5 * Math.max(...s.layers.map((l) => l.length), 1));
  const top = 30;
  const W = label + L * cell + 20;
  const H = top + L * cell + label;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">`, `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${label}" y="18" font-size="13">${esc(title)} (n = ${s.n})</text>`];
  for (let i = 0; i < L; i++) {
    const y = top + i * cell;
    out.push(`<text x="${label - 4}" y="${y + cell / 2 + 4}" font-size="11" text-anchor="end">${esc(s.layers[i]!)}</text>`);
    const x = label + i * cell + cell / 2;
    const ly = top + L * cell + 4;
    out.push(`<text x="${x}" y="${ly}" font-size="11" text-anchor="end" transform="rotate(-60 ${x} ${ly})">${esc(s.layers[i]!)}</text>`);
    for (let j = 0; j < L; j++) {
      const v = s.matrix[i]![j]!;
      const cx = label + j * cell;
      out.push(`<rect x="${cx}" y="${y}" width="${cell}" height="${cell}" fill="${colour(v)}" stroke="white"><title>${esc(s.layers[i]!)} · ${esc(s.layers[j]!)}: ${Number.isFinite(v) ? v.toFixed(4) : 'n/a'}</title></rect>`);
      if (cell >= 30 && Number.isFinite(v)) out.push(`<text x="${cx + cell / 2}" y="${y + cell / 2 + 4}" font-size="10" text-anchor="middle" fill="${v > 0.55 ? 'white' : 'black'}">${v.toFixed(2)}</text>`);
    }
  }
  out.push('</svg>', '');
  return out.join('\n');
}

/** Writes `<base>.json` and `<base>.svg` in `dir`. */
export function writeSimilarity(dir: string, s: SimilarityMatrix, base = 'similarity'): { json: string; svg: string } {
  const json = join(dir, `${base}.json`);
  const svg = join(dir, `${base}.svg`);
  writeFileAtomic(json, JSON.stringify(similarityJson(s), null, 2));
  writeFileAtomic(svg, similarityHeatmapSvg(s));
  return { json, svg };
}
