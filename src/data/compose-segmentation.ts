// A segmentation set composed from real Fashion-MNIST images: each canvas holds several items
// (28×28 photographs of clothing from the IDX files) at random places on a black background;
// an item's mask is its own pixels (brighter than `threshold`) labelled by its class, its faint
// rim (1 … threshold − 1) is ignored (255), and an item drawn later covers the earlier ones, in
// the image and in the mask alike. The images are real; the scenes are a composition of them.
// Seeded: the same options give the same files.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { encodeIndexedPng, vocPalette } from '../io/png.js';
import { Generator } from '../tensor/random.js';
import { FASHION_MNIST_CLASSES, loadFashionMnist } from './idx.js';
import { IGNORE_INDEX } from './segmentation.js';

export interface ComposeOptions {
  output: string;
  /** Canvases to write. */
  count: number;
  /** Canvas side in pixels (default 64). */
  size?: number;
  /** Items per canvas, drawn uniformly from [min, max] (default [2, 4]). */
  items?: [number, number];
  seed?: number;
  /** Which Fashion-MNIST file the items come from (default 'train'). */
  split?: 'train' | 'test';
  /** Item pixels at or above it are the item; below it (but not 0) its ignored rim (default 48). */
  threshold?: number;
  /** 'graft' (images/, masks/, classes.txt) or 'voc' (JPEGImages/, SegmentationClass/, ImageSets/), default 'graft'. */
  layout?: 'graft' | 'voc';
  /** Fraction of canvases listed in VOC's val.txt (default 0.25; VOC layout only). */
  valFraction?: number;
  /** The IDX folder (default /usr/share/datasets/fashion-mnist). */
  dir?: string;
}

export const COMPOSED_CLASSES = ['background', ...FASHION_MNIST_CLASSES];

export interface ComposedCanvas {
  image: Uint8Array;
  mask: Uint8Array;
  /** Fashion-MNIST indices and classes of the items, in drawing order. */
  items: { index: number; label: number; left: number; top: number }[];
}

/** One canvas (grayscale bytes and mask) from the given item images. */
export function composeCanvas(images: Uint8Array, labels: Uint8Array, size: number, nItems: number, threshold: number, gen: Generator): ComposedCanvas {
  const side = 28;
  const image = new Uint8Array(size * size);
  const mask = new Uint8Array(size * size);
  const items: ComposedCanvas['items'] = [];
  const total = labels.length;
  for (let k = 0; k < nItems; k++) {
    const index = gen.int(total);
    const label = labels[index]!;
    const left = gen.int(size - side + 1);
    const top = gen.int(size - side + 1);
    items.push({ index, label, left, top });
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++) {
        const v = images[index * side * side + y * side + x]!;
        if (v === 0) continue;
        const p = (top + y) * size + left + x;
        image[p] = v;
        mask[p] = v >= threshold ? label + 1 : IGNORE_INDEX;
      }
  }
  return { image, mask, items };
}

/** Writes `count` composed canvases to `output` in the chosen layout; returns what was written. */
export async function composeFashionMnistSegmentation(o: ComposeOptions): Promise<{ files: number; classes: string[]; items: number }> {
  const size = o.size ?? 64;
  const [lo, hi] = o.items ?? [2, 4];
  const threshold = o.threshold ?? 48;
  const layout = o.layout ?? 'graft';
  if (size < 28) throw new RangeError(`compose: canvas size ${size} is smaller than a Fashion-MNIST item (28)`);
  if (!(lo >= 1 && hi >= lo)) throw new RangeError(`compose: items [${lo}, ${hi}] must be 1 ≤ min ≤ max`);
  const { images, labels } = loadFashionMnist(o.split ?? 'train', o.dir);
  const gen = new Generator(o.seed ?? 0);
  const imageDir = join(o.output, layout === 'voc' ? 'JPEGImages' : 'images');
  const maskDir = join(o.output, layout === 'voc' ? 'SegmentationClass' : 'masks');
  mkdirSync(imageDir, { recursive: true });
  mkdirSync(maskDir, { recursive: true });
  const palette = vocPalette();
  const names: string[] = [];
  const manifest: string[] = [];
  let itemCount = 0;
  for (let i = 0; i < o.count; i++) {
    const canvas = composeCanvas(images.data, labels, size, lo + gen.int(hi - lo + 1), threshold, gen);
    itemCount += canvas.items.length;
    const name = `fmnist_${String(i).padStart(5, '0')}`;
    names.push(name);
    const gray = sharp(Buffer.from(canvas.image), { raw: { width: size, height: size, channels: 1 } }).toColourspace('srgb');
    if (layout === 'voc') await gray.jpeg({ quality: 95 }).toFile(join(imageDir, `${name}.jpg`));
    else await gray.png().toFile(join(imageDir, `${name}.png`));
    writeFileSync(join(maskDir, `${name}.png`), encodeIndexedPng(canvas.mask, size, size, palette));
    manifest.push(JSON.stringify({ name, items: canvas.items.map((it) => ({ fashionMnistIndex: it.index, class: FASHION_MNIST_CLASSES[it.label], left: it.left, top: it.top })) }));
  }
  writeFileSync(join(o.output, 'classes.txt'), COMPOSED_CLASSES.join('\n') + '\n');
  writeFileSync(join(o.output, 'composition.jsonl'), manifest.join('\n') + '\n');
  writeFileSync(join(o.output, 'README.txt'),
    `A composition of real Fashion-MNIST images (${o.split ?? 'train'} file): ${o.count} canvases of ${size}×${size}, ` +
    `${lo}–${hi} items each, seed ${o.seed ?? 0}. Each item's mask is its own pixels (>= ${threshold}) labelled by its class; ` +
    `its rim (1–${threshold - 1}) is 255 (ignored); later items cover earlier ones. composition.jsonl lists the items.\n`);
  if (layout === 'voc') {
    const sets = join(o.output, 'ImageSets', 'Segmentation');
    mkdirSync(sets, { recursive: true });
    const nVal = Math.max(1, Math.round((o.valFraction ?? 0.25) * names.length));
    writeFileSync(join(sets, 'train.txt'), names.slice(0, names.length - nVal).join('\n') + '\n');
    writeFileSync(join(sets, 'val.txt'), names.slice(names.length - nVal).join('\n') + '\n');
  }
  return { files: o.count, classes: COMPOSED_CLASSES, items: itemCount };
}
