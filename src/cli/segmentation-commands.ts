// `graft eval` and `graft predict` on a segmentation run: mIoU and per-class IoU on a folder of
// pairs; mask PNGs (class indices, VOC palette) and overlays for images.
import { mkdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import { DataError, writeError } from '../errors.js';
import { decodeImage, transformImage } from '../data/image.js';
import { resizeMaskNearest, SegmentationBatchSource } from '../data/segmentation-loader.js';
import { writeNormalised } from '../data/transforms.js';
import { evaluateSegmentation } from '../eval/segmentation.js';
import { writeFileAtomic } from '../io/atomic.js';
import { encodeIndexedPng, vocPalette } from '../io/png.js';
import { tensor } from '../ops/creation.js';
import { argmax } from '../ops/reduce.js';
import { segmentationMarkdown } from '../report/segmentation.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { Generator } from '../tensor/random.js';
import type { LoadedRun } from '../train/run.js';
import { openSegmentationData } from './train-segmentation.js';

/** eval.json / eval.md of a segmentation run on every usable pair of `source`. */
export async function evalSegmentationRun(run: LoadedRun, runDir: string, source: string, log: (l: string) => void): Promise<void> {
  const { dataset, pairs } = await openSegmentationData(source, 'skip', (f, r) => log(`warning: skipped ${f}: ${r}`));
  if (dataset.classes.join('\n') !== run.classes.join('\n')) {
    throw new DataError(`--data ${source} names other classes (${dataset.classes.join(', ')}) than the run (${run.classes.join(', ')}); the masks' indices would mean other things`);
  }
  const src = new SegmentationBatchSource(dataset, pairs, { batchSize: 8, preprocess: run.preprocess });
  const r = await evaluateSegmentation(run.model, src, run.classes);
  const md = segmentationMarkdown(`${run.config.model} · ${run.config.method} · ${run.config.segmentation?.head} head on ${source}`, r, { pairs: pairs.length });
  writeFileAtomic(join(runDir, 'eval.md'), md);
  writeFileAtomic(join(runDir, 'eval.json'), JSON.stringify({ source, pairs: pairs.length, metrics: r }, null, 2));
  log(md);
}

/** The predicted class of every pixel of `file`, at the image's own size. */
export async function predictMask(run: LoadedRun, file: string): Promise<{ mask: Uint8Array; width: number; height: number; image: Uint8Array }> {
  const img = await decodeImage(file);
  const [c, h, w] = run.preprocess.inputSize;
  const x = new Float32Array(c * h * w);
  writeNormalised(await transformImage(img, { resize: { width: w, height: h, kernel: run.preprocess.interpolation } }), run.preprocess, null, 0, new Generator(0), x, 0);
  const pred = noGrad(() => tidy(() => argmax(run.model.forward(tensor(x, [1, c, h, w])), 1).toArray() as Int32Array));
  const small = { data: Uint8Array.from(pred), width: w, height: h };
  const full = new Int32Array(img.width * img.height);
  resizeMaskNearest(small, { left: 0, top: 0, width: w, height: h }, img.width, img.height, false, full, 0);
  return { mask: Uint8Array.from(full), width: img.width, height: img.height, image: img.data };
}

/** `graft predict` on a segmentation run: `<out>/<name>.png` (indexed, VOC palette) and `<name>_overlay.png` per image. */
export async function predictSegmentation(run: LoadedRun, files: string[], outDir: string, write: (s: string) => void): Promise<{ errors: { file: string; error: string }[] }> {
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw writeError(e, outDir);
  }
  const palette = vocPalette();
  const rows: { file: string; mask: string; overlay: string; pixels: Record<string, number> }[] = [];
  const errors: { file: string; error: string }[] = [];
  for (const file of files) {
    try {
      const { mask, width, height, image } = await predictMask(run, file);
      const name = basename(file, extname(file));
      const maskFile = join(outDir, `${name}.png`);
      const overlayFile = join(outDir, `${name}_overlay.png`);
      writeFileAtomic(maskFile, encodeIndexedPng(mask, width, height, palette));
      const blend = Buffer.alloc(width * height * 3);
      const counts = new Array<number>(run.classes.length).fill(0);
      for (let i = 0; i < mask.length; i++) {
        const k = mask[i]!;
        counts[k]!++;
        const col = palette[k]!;
        for (let ch = 0; ch < 3; ch++) blend[3 * i + ch] = Math.round(0.5 * image[3 * i + ch]! + 0.5 * col[ch]!);
      }
      writeFileAtomic(overlayFile, await sharp(blend, { raw: { width, height, channels: 3 } }).png().toBuffer());
      rows.push({ file, mask: maskFile, overlay: overlayFile, pixels: Object.fromEntries(run.classes.map((c, i) => [c, counts[i]!]).filter(([, n]) => (n as number) > 0)) });
    } catch (e) {
      errors.push({ file, error: (e as Error).message });
    }
  }
  write(JSON.stringify({ classes: run.classes, palette: 'VOC', predictions: rows, errors }, null, 2) + '\n');
  return { errors };
}
