// Labelled image collections: an image folder (one subfolder per class), a CSV or JSONL manifest
// (path, label), or images held in memory (IDX). Samples are loaded lazily as RGB.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { decodeImage, rawToRgb, type RgbImage } from './image.js';

export interface Sample {
  /** A file path, or an index into in-memory images. */
  source: string | number;
  label: number;
}

export interface LabeledDataset {
  readonly classes: string[];
  readonly samples: Sample[];
  load(sample: Sample): Promise<RgbImage>;
  /** Files that were found but left out (not an image by extension), with the reason. */
  readonly skipped: { file: string; reason: string }[];
}

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.bmp', '.avif']);

export class DatasetError extends Error {
  override name = 'DatasetError';
}

const fileDataset = (classes: string[], samples: Sample[], skipped: { file: string; reason: string }[]): LabeledDataset => ({
  classes, samples, skipped,
  load: (s) => decodeImage(s.source as string),
});

/** root/<class>/<image>: classes sorted by name, as torchvision's ImageFolder. */
export function imageFolder(root: string): LabeledDataset {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new DatasetError(`image folder ${root} does not exist or is not a directory`);
  const classes = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name).sort();
  if (classes.length === 0) throw new DatasetError(`image folder ${root} has no class subfolders; expected ${root}/<class name>/<images>`);
  const samples: Sample[] = [];
  const skipped: { file: string; reason: string }[] = [];
  classes.forEach((c, label) => {
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) samples.push({ source: p, label });
        else if (!e.name.startsWith('.')) skipped.push({ file: p, reason: 'not an image file (extension)' });
      }
    };
    walk(join(root, c));
  });
  const empty = classes.filter((_, i) => !samples.some((s) => s.label === i));
  for (const c of empty) skipped.push({ file: join(root, c), reason: 'class folder holds no images' });
  return fileDataset(classes, samples, skipped);
}

/** Splits a CSV line, honouring double-quoted fields. */
function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((f) => f.trim());
}

/**
 * A CSV (header with `path` and `label` columns) or JSONL ({"path": …, "label": …}) manifest.
 * Relative paths are relative to the manifest. Class names are the sorted distinct labels.
 */
export function manifest(file: string): LabeledDataset {
  if (!existsSync(file)) throw new DatasetError(`manifest ${file} does not exist`);
  const base = dirname(resolve(file));
  const rows: { path: string; label: string }[] = [];
  const lines = readFileSync(file, 'utf8').split(/\r?\n/);
  if (file.endsWith('.jsonl') || file.endsWith('.ndjson')) {
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        throw new DatasetError(`${file}:${i + 1}: not valid JSON`);
      }
      if (typeof obj['path'] !== 'string' || obj['label'] === undefined) throw new DatasetError(`${file}:${i + 1}: each line needs "path" (string) and "label"`);
      rows.push({ path: obj['path'], label: String(obj['label']) });
    });
  } else {
    const header = csvFields(lines[0] ?? '').map((h) => h.toLowerCase());
    const pi = header.indexOf('path');
    const li = header.indexOf('label');
    if (pi < 0 || li < 0) throw new DatasetError(`${file}: the CSV header must name 'path' and 'label' columns; got ${JSON.stringify(header)}`);
    lines.slice(1).forEach((line, i) => {
      if (!line.trim()) return;
      const f = csvFields(line);
      if (!f[pi] || f[li] === undefined || f[li] === '') throw new DatasetError(`${file}:${i + 2}: missing path or label`);
      rows.push({ path: f[pi]!, label: f[li]! });
    });
  }
  if (rows.length === 0) throw new DatasetError(`${file} lists no images`);
  const numeric = rows.every((r) => /^\d+$/.test(r.label));
  const classes = numeric
    ? Array.from({ length: Math.max(...rows.map((r) => Number(r.label))) + 1 }, (_, i) => String(i))
    : [...new Set(rows.map((r) => r.label))].sort();
  const samples = rows.map((r) => ({ source: isAbsolute(r.path) ? r.path : join(base, r.path), label: numeric ? Number(r.label) : classes.indexOf(r.label) }));
  return fileDataset(classes, samples, []);
}

/** Images held in memory as (N, H, W) grayscale or (N, H, W, 3) RGB bytes, e.g. Fashion-MNIST. */
export function inMemoryDataset(classes: string[], images: Uint8Array, shape: number[], labels: ArrayLike<number>): LabeledDataset {
  const [n, h, w] = shape as [number, number, number];
  const channels = shape.length === 4 ? 3 : 1;
  const px = h * w * channels;
  return {
    classes,
    skipped: [],
    samples: Array.from({ length: n }, (_, i) => ({ source: i, label: labels[i]! })),
    load: async (s) => rawToRgb(images.subarray((s.source as number) * px, (s.source as number + 1) * px), w, h, channels as 1 | 3),
  };
}
