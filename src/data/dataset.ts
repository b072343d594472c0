// Labelled image collections: an image folder (one subfolder per class), a CSV or JSONL manifest
// (path, label), or images held in memory (IDX). Samples are loaded lazily as RGB.
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';
import sharp from 'sharp';
import { DataError } from '../errors.js';
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
  /** Why a sample cannot be read (its header does not decode), or null; absent for in-memory images. */
  check?(sample: Sample): Promise<string | null>;
}

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.bmp', '.avif']);

/** A bad data source: an alias kept for the data layer's callers. */
export class DatasetError extends DataError {
  override name = 'DatasetError';
}

/**
 * Samples read from files. `rawPaths` maps the printable name of a file whose name is not valid
 * UTF-8 (bytes shown as \xNN) to its path as bytes, which is how the file system knows it.
 */
const fileDataset = (classes: string[], samples: Sample[], skipped: { file: string; reason: string }[], rawPaths = new Map<string, Buffer>()): LabeledDataset => {
  const input = (s: Sample) => {
    const raw = rawPaths.get(s.source as string);
    return raw ? readFileSync(raw) : (s.source as string);
  };
  return {
    classes, samples, skipped,
    load: (s) => decodeImage(input(s), s.source as string),
    check: async (s) => {
      try {
        const meta = await sharp(input(s), { failOn: 'error' }).metadata();
        return meta.width && meta.height ? null : 'no image dimensions in the file';
      } catch (e) {
        return (e as Error).message;
      }
    },
  };
};

/** A file name as text: itself when it is valid UTF-8, else with each byte outside ASCII as \xNN. */
function printableName(name: Buffer): { text: string; exact: boolean } {
  const text = name.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(name)) return { text, exact: true };
  return { text: [...name].map((b) => (b < 0x80 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`)).join(''), exact: false };
}

/**
 * root/<class>/<image>: classes sorted by name, as torchvision's ImageFolder. Folders reached
 * through symbolic links are followed (each real folder once, so a link loop ends); names that
 * are not valid UTF-8 are read by their bytes and shown with \xNN escapes.
 */
export function imageFolder(root: string): LabeledDataset {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new DatasetError(`image folder ${root} does not exist or is not a directory`);
  const rawPaths = new Map<string, Buffer>();
  const entries = (dir: Buffer) => readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare).map((name) => {
    const path = Buffer.concat([dir, Buffer.from('/'), name]);
    let kind: 'dir' | 'file' | 'other' = 'other';
    try {
      const st = statSync(path);
      kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    } catch {
      // a dangling symbolic link: reported as unreadable below
    }
    return { name, path, kind, printable: printableName(name) };
  });
  const rootBuf = Buffer.from(root);
  const classDirs = entries(rootBuf).filter((e) => e.kind === 'dir' && e.name[0] !== 0x2e);
  if (classDirs.length === 0) throw new DatasetError(`image folder ${root} has no class subfolders; expected ${root}/<class name>/<images>`);
  const classes = classDirs.map((d) => d.printable.text);
  const samples: Sample[] = [];
  const skipped: { file: string; reason: string }[] = [];
  classDirs.forEach((c, label) => {
    // The real folders from the class folder down to here: a link back to one of them is a loop.
    const walk = (dir: Buffer, shown: string, ancestors: ReadonlySet<string>) => {
      // realpathSync.native keeps the bytes of a name that is not UTF-8 (the JS one does not).
      const real = realpathSync.native(dir, { encoding: 'buffer' }).toString('latin1');
      if (ancestors.has(real)) {
        skipped.push({ file: shown, reason: 'a symbolic link to a folder above it (a loop); not followed' });
        return;
      }
      const below = new Set(ancestors).add(real);
      for (const e of entries(dir)) {
        const p = join(shown, e.printable.text);
        if (e.name[0] === 0x2e) continue;
        if (e.kind === 'dir') walk(e.path, p, below);
        else if (e.kind !== 'file') skipped.push({ file: p, reason: 'not a readable file (a dangling link or a special file)' });
        else if (IMAGE_EXTENSIONS.has(extname(e.printable.text).toLowerCase())) {
          if (!e.printable.exact || p !== e.path.toString('utf8')) rawPaths.set(p, e.path);
          samples.push({ source: p, label });
        } else skipped.push({ file: p, reason: 'not an image file (extension)' });
      }
    };
    walk(c.path, join(root, c.printable.text), new Set());
  });
  classes.forEach((c, i) => {
    if (!samples.some((s) => s.label === i)) skipped.push({ file: join(root, c), reason: 'class folder holds no images' });
  });
  return fileDataset(classes, samples, skipped, rawPaths);
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
  // The classes are the labels given, sorted (numerically when all are integers): labels 0 and 5
  // make two classes, not six.
  const distinct = [...new Set(rows.map((r) => r.label))];
  const numeric = distinct.every((l) => /^\d+$/.test(l));
  const classes = numeric ? distinct.sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : 1)) : distinct.sort();
  const index = new Map(classes.map((c, i) => [c, i]));
  const samples = rows.map((r) => ({ source: isAbsolute(r.path) ? r.path : join(base, r.path), label: index.get(r.label)! }));
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
