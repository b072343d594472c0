// Semantic segmentation data: image / mask pairs with class names. Three folder layouts are read
// as they are:
//   graft   DIR/images/<name>.<ext>, DIR/masks/<name>.png, DIR/classes.txt (one class per line)
//   VOC     DIR/JPEGImages/<id>.jpg, DIR/SegmentationClass/<id>.png (palette PNGs),
//           DIR/ImageSets/Segmentation/{train,val}.txt; the 21 VOC classes unless classes.txt
//   ADE20K  DIR/images/{training,validation}/*.jpg, DIR/annotations/{training,validation}/*.png,
//           class names from objectInfo150.txt (or .csv) or classes.txt; mask value 0 ("other")
//           is ignored and k becomes class k − 1, as the ADE20K benchmark counts its 150 classes
// A mask holds one class index per pixel (8-bit grayscale, or indexed PNG whose indices are the
// classes); 255 is ignored. Pairs that cannot be used (no mask, sizes differ, an index past the
// classes, an unreadable file) are reported by file and left out, or stop the run when asked.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import { DataError } from '../errors.js';
import { decodeIndexedPng } from '../io/png.js';
import { decodeImage, type RgbImage } from './image.js';
import { IMAGE_EXTENSIONS } from './dataset.js';
import { Generator } from '../tensor/random.js';

export const IGNORE_INDEX = 255;

export const VOC_CLASSES = [
  'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
  'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor',
];

export type SegmentationLayout = 'graft' | 'voc' | 'ade20k';

export interface SegmentationSample {
  image: string;
  mask: string;
  /** The pair's base name (what `graft predict` names its outputs by). */
  name: string;
}

/** A class-index mask, row-major (H, W); 255 is ignored. */
export interface Mask {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface SegmentationDataset {
  readonly root: string;
  readonly layout: SegmentationLayout;
  readonly classes: string[];
  readonly samples: SegmentationSample[];
  /** The layout's own split, where it has one (VOC's ImageSets, ADE20K's training / validation). */
  readonly splits: { train: SegmentationSample[]; val: SegmentationSample[] } | null;
  /** Files found but left out (no mask, not an image), with the reason. */
  readonly skipped: { file: string; reason: string }[];
  /** ADE20K: mask value 0 is ignored and k is class k − 1. */
  readonly reduceZeroLabel: boolean;
}

export class BadPairError extends DataError {
  override name = 'BadPairError';
  constructor(readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}; fix or remove the pair, or set data.onBadImage to 'skip' to leave such pairs out`);
  }
}

function readClassLines(file: string): string[] {
  const names = readFileSync(file, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  if (names.length < 2) throw new DataError(`${file} names ${names.length} class; a segmentation set needs at least two (one per line, background included)`);
  if (names.length > 255) throw new DataError(`${file} names ${names.length} classes; masks are 8-bit with 255 for ignored pixels, so at most 255 classes`);
  return names;
}

/** ADE20K's objectInfo150.txt (tab-separated, Name last) or .csv (Idx,Ratio,Train,Val,Name). */
function readAdeClassInfo(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split(/\r?\n/).filter((l) => l.trim());
  const rows = lines.slice(1).map((l) => {
    const f = file.endsWith('.csv') ? l.split(',') : l.split('\t');
    return (f[f.length - 1] ?? '').split(';')[0]!.trim();
  });
  if (rows.length < 2 || rows.some((r) => !r)) throw new DataError(`${file}: expected a header and one row per class with the name in the last column`);
  return rows;
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();

function imagesIn(dir: string): string[] {
  return readdirSync(dir).filter((f) => !f.startsWith('.') && IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
}

/** Pairs images in `imageDir` with `maskDir/<base>.png`; an image without a mask is skipped and reported. */
function pairFolder(imageDir: string, maskDir: string, skipped: SegmentationDataset['skipped'], only?: Set<string>): SegmentationSample[] {
  const out: SegmentationSample[] = [];
  for (const f of imagesIn(imageDir)) {
    const name = basename(f, extname(f));
    if (only && !only.has(name)) continue;
    const mask = join(maskDir, `${name}.png`);
    if (!existsSync(mask)) skipped.push({ file: join(imageDir, f), reason: `no mask ${mask}` });
    else out.push({ image: join(imageDir, f), mask, name });
  }
  return out;
}

function idList(file: string): Set<string> | null {
  if (!existsSync(file)) return null;
  return new Set(readFileSync(file, 'utf8').split(/\r?\n/).map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean));
}

/** The layout of a segmentation folder, or null when it is none of the three. */
export function segmentationLayout(root: string): SegmentationLayout | null {
  if (isDir(join(root, 'JPEGImages')) && isDir(join(root, 'SegmentationClass'))) return 'voc';
  if (isDir(join(root, 'images', 'training')) && isDir(join(root, 'annotations', 'training'))) return 'ade20k';
  if (isDir(join(root, 'images')) && isDir(join(root, 'masks'))) return 'graft';
  return null;
}

/** Opens a segmentation folder in any of the three layouts (see the top of this file). */
export function segmentationFolder(root: string): SegmentationDataset {
  if (!isDir(root)) throw new DataError(`segmentation data ${root} does not exist or is not a folder`);
  const layout = segmentationLayout(root);
  const skipped: SegmentationDataset['skipped'] = [];
  const classesTxt = join(root, 'classes.txt');
  if (layout === 'graft') {
    if (!existsSync(classesTxt)) throw new DataError(`${root} has images/ and masks/ but no classes.txt; add one class name per line (the first line names mask value 0)`);
    const classes = readClassLines(classesTxt);
    const samples = pairFolder(join(root, 'images'), join(root, 'masks'), skipped);
    return { root, layout, classes, samples, splits: null, skipped, reduceZeroLabel: false };
  }
  if (layout === 'voc') {
    const classes = existsSync(classesTxt) ? readClassLines(classesTxt) : VOC_CLASSES;
    const sets = join(root, 'ImageSets', 'Segmentation');
    const train = idList(join(sets, 'train.txt'));
    const val = idList(join(sets, 'val.txt'));
    const listed = train || val ? new Set([...(train ?? []), ...(val ?? [])]) : undefined;
    const samples = pairFolder(join(root, 'JPEGImages'), join(root, 'SegmentationClass'), skipped, listed);
    const splits = train && val ? { train: samples.filter((s) => train.has(s.name)), val: samples.filter((s) => val.has(s.name)) } : null;
    return { root, layout, classes, samples, splits, skipped, reduceZeroLabel: false };
  }
  if (layout === 'ade20k') {
    const info = ['objectInfo150.txt', 'objectInfo150.csv'].map((f) => join(root, f)).find(existsSync);
    const classes = existsSync(classesTxt) ? readClassLines(classesTxt) : info ? readAdeClassInfo(info) : null;
    if (!classes) throw new DataError(`${root} is an ADE20K folder without objectInfo150.txt or classes.txt; add either (150 class names, "other" left out)`);
    const train = pairFolder(join(root, 'images', 'training'), join(root, 'annotations', 'training'), skipped);
    const val = isDir(join(root, 'images', 'validation')) ? pairFolder(join(root, 'images', 'validation'), join(root, 'annotations', 'validation'), skipped) : [];
    return { root, layout, classes, samples: [...train, ...val], splits: val.length ? { train, val } : null, skipped, reduceZeroLabel: true };
  }
  throw new DataError(`${root} is not a segmentation folder: expected images/ + masks/ + classes.txt, a VOC folder (JPEGImages/, SegmentationClass/) or an ADE20K folder (images/training/, annotations/training/)`);
}

/**
 * A mask file as class indices: an indexed PNG gives its indices, an 8-bit grayscale image its
 * values; anything else (RGB colours, 16-bit) is an error naming the file.
 */
export async function loadMask(file: string, reduceZeroLabel = false): Promise<Mask> {
  const bytes = readFileSync(file);
  let mask: Mask;
  const indexed = bytes.subarray(0, 8).toString('latin1') === '\x89PNG\r\n\x1a\n' ? decodeIndexedPng(bytes) : null;
  if (indexed) mask = { data: indexed.indices, width: indexed.width, height: indexed.height };
  else {
    const meta = await sharp(bytes).metadata();
    if (meta.isPalette) throw new Error('an indexed PNG with other than 8 bits per index; save masks as 8-bit indexed or grayscale PNGs');
    if (meta.depth && meta.depth !== 'uchar') {
      throw new Error(`a mask must be an 8-bit grayscale or indexed PNG of class indices; this one has ${meta.channels} channels of ${meta.depth}`);
    }
    const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const ch = info.channels;
    const out = new Uint8Array(info.width * info.height);
    // A grayscale mask saved as RGB (every channel equal) is read as its gray values; real colours are not indices.
    for (let i = 0; i < out.length; i++) {
      const v = data[i * ch]!;
      if (ch === 3 && (data[i * ch + 1] !== v || data[i * ch + 2] !== v)) {
        throw new Error(`pixel (${i % info.width}, ${Math.floor(i / info.width)}) is an RGB colour (${v}, ${data[i * ch + 1]}, ${data[i * ch + 2]}): the mask holds colours, not class indices; save it as an 8-bit grayscale or indexed (palette) PNG whose values are the classes`);
      }
      out[i] = v;
    }
    mask = { data: out, width: info.width, height: info.height };
  }
  if (reduceZeroLabel) {
    const d = mask.data;
    for (let i = 0; i < d.length; i++) d[i] = d[i] === 0 ? IGNORE_INDEX : d[i] === IGNORE_INDEX ? IGNORE_INDEX : d[i]! - 1;
  }
  return mask;
}

export interface LoadedPair {
  image: RgbImage;
  mask: Mask;
}

/** Decodes a pair and checks it: equal sizes, every index a class or 255. Throws BadPairError naming the file. */
export async function loadPair(ds: Pick<SegmentationDataset, 'classes' | 'reduceZeroLabel'>, s: SegmentationSample): Promise<LoadedPair> {
  let image: RgbImage;
  try {
    image = await decodeImage(s.image);
  } catch (e) {
    throw new BadPairError(s.image, `unreadable image (${(e as { reason?: string }).reason ?? (e as Error).message})`);
  }
  let mask: Mask;
  try {
    mask = await loadMask(s.mask, ds.reduceZeroLabel);
  } catch (e) {
    throw new BadPairError(s.mask, `unreadable mask (${(e as Error).message})`);
  }
  if (mask.width !== image.width || mask.height !== image.height) {
    throw new BadPairError(s.mask, `mask is ${mask.width}×${mask.height} but its image ${s.image} is ${image.width}×${image.height}`);
  }
  const n = ds.classes.length;
  for (let i = 0; i < mask.data.length; i++) {
    const v = mask.data[i]!;
    if (v >= n && v !== IGNORE_INDEX) throw new BadPairError(s.mask, `pixel (${i % mask.width}, ${Math.floor(i / mask.width)}) has class index ${v}, but there are ${n} classes (0–${n - 1}, 255 ignored)`);
  }
  return { image, mask };
}

/**
 * The usable pairs of `samples`: each pair that fails loadPair is reported once (file and reason)
 * and left out, or, with onBadImage 'fatal', stops with its BadPairError.
 */
export async function checkedPairs(ds: SegmentationDataset, samples: readonly SegmentationSample[], onBad: 'skip' | 'fatal', report: (file: string, reason: string) => void): Promise<SegmentationSample[]> {
  const ok: SegmentationSample[] = [];
  const chunk = 16;
  for (let i = 0; i < samples.length; i += chunk) {
    const part = samples.slice(i, i + chunk);
    const res = await Promise.all(part.map((s) => loadPair(ds, s).then(() => null, (e: unknown) => e)));
    res.forEach((e, j) => {
      if (e === null) ok.push(part[j]!);
      else if (e instanceof BadPairError) {
        if (onBad === 'fatal') throw e;
        report(e.file, e.reason);
      } else throw e;
    });
  }
  return ok;
}

export interface SegmentationSplit {
  train: SegmentationSample[];
  val: SegmentationSample[];
  test: SegmentationSample[];
  /** Where the test pairs came from, for the run's log. */
  testFrom: string;
}

/**
 * Train / validation / test pairs: the test pairs are `test` when given, else the layout's own
 * validation split (VOC's val.txt, ADE20K's validation/), else `testFraction` of the pairs drawn by
 * the seed; validation is `valFraction` of what is left for training, drawn by the seed.
 */
export function splitSegmentation(pairs: readonly SegmentationSample[], o: { seed: number; valFraction: number; testFraction?: number; test?: readonly SegmentationSample[]; layoutSplit?: SegmentationDataset['splits'] }): SegmentationSplit {
  const shuffle = <T>(xs: readonly T[], salt: number): T[] => {
    const out = [...xs];
    const gen = new Generator((o.seed * 7919 + salt) >>> 0);
    for (let i = out.length - 1; i > 0; i--) {
      const j = gen.int(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
  let rest: SegmentationSample[];
  let test: SegmentationSample[];
  let testFrom: string;
  const usable = new Set(pairs);
  if (o.test) {
    [rest, test, testFrom] = [[...pairs], [...o.test], 'the test folder'];
  } else if (o.layoutSplit && o.layoutSplit.val.some((s) => usable.has(s))) {
    [rest, test, testFrom] = [o.layoutSplit.train.filter((s) => usable.has(s)), o.layoutSplit.val.filter((s) => usable.has(s)), "the layout's validation split"];
  } else {
    const all = shuffle(pairs, 1);
    const nTest = Math.max(1, Math.round((o.testFraction ?? 0.2) * all.length));
    if (all.length < 2) throw new DataError(`a segmentation set needs at least 2 usable pairs to split into training and test; it has ${all.length}`);
    [test, rest, testFrom] = [all.slice(0, nTest), all.slice(nTest), `${nTest} of ${all.length} pairs drawn by the seed`];
  }
  if (rest.length === 0) throw new DataError('no segmentation pairs are left for training after the test split');
  const shuffled = shuffle(rest, 2);
  const nVal = Math.min(rest.length - 1, Math.round(o.valFraction * rest.length));
  return { train: shuffled.slice(nVal), val: shuffled.slice(0, nVal), test, testFrom };
}
