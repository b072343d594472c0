// Batches of segmentation pairs: images (B, 3, H, W) normalised as the model expects and masks
// (B, H, W) int32 of class indices (255 ignored). Training augmentation moves the mask with the
// image: one random resized crop and flip drawn per pair, the image resampled with the model's
// kernel and the mask by nearest neighbour, so every pixel keeps its class. Evaluation resizes the
// whole image to the input size (no crop: every pixel is scored). Randomness is seeded per
// (seed, epoch, position), as the classification loader's.
import { tensor } from '../ops/creation.js';
import { Generator } from '../tensor/random.js';
import type { Batch, BatchSource } from './batch.js';
import type { PreprocessConfig } from './preprocess.js';
import { transformImage, type RgbImage } from './image.js';
import { shuffled } from './splits.js';
import { writeNormalised } from './transforms.js';
import { BadPairError, loadPair, type Mask, type SegmentationDataset, type SegmentationSample } from './segmentation.js';

export interface SegmentationAugment {
  /** Area and aspect ranges of the random resized crop; false: the whole image. */
  randomResizedCrop: { scale: [number, number]; ratio: [number, number] } | false;
  hflip: number;
}

/** A milder crop than classification's (torchvision's 0.08 would often leave one class in view). */
export const DEFAULT_SEGMENTATION_AUGMENT: SegmentationAugment = { randomResizedCrop: { scale: [0.25, 1], ratio: [3 / 4, 4 / 3] }, hflip: 0.5 };

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** torchvision's RandomResizedCrop.get_params (10 tries, then the centre square). */
export function randomRegion(width: number, height: number, scale: [number, number], ratio: [number, number], gen: Generator): Region {
  const area = width * height;
  for (let i = 0; i < 10; i++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * gen.uniform());
    const aspect = Math.exp(Math.log(ratio[0]) + (Math.log(ratio[1]) - Math.log(ratio[0])) * gen.uniform());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) return { left: gen.int(width - w + 1), top: gen.int(height - h + 1), width: w, height: h };
  }
  const s = Math.min(width, height);
  return { left: Math.floor((width - s) / 2), top: Math.floor((height - s) / 2), width: s, height: s };
}

/**
 * The mask's `region` resized to outW × outH by nearest neighbour (PyTorch's 'nearest': source
 * index floor(dst · in / out)), mirrored when `flip`, into `out` at `offset` as int32.
 */
export function resizeMaskNearest(mask: Mask, region: Region, outW: number, outH: number, flip: boolean, out: Int32Array, offset: number): void {
  for (let y = 0; y < outH; y++) {
    const sy = region.top + Math.min(region.height - 1, Math.floor((y * region.height) / outH));
    for (let x = 0; x < outW; x++) {
      const dx = flip ? outW - 1 - x : x;
      const sx = region.left + Math.min(region.width - 1, Math.floor((dx * region.width) / outW));
      out[offset + y * outW + x] = mask.data[sy * mask.width + sx]!;
    }
  }
}

/** One pair into the batch buffers: the image normalised at `xOffset`, the mask at `yOffset`. */
export async function preparePair(image: RgbImage, mask: Mask, pre: PreprocessConfig, augment: SegmentationAugment | null, gen: Generator, x: Float32Array, xOffset: number, y: Int32Array, yOffset: number): Promise<void> {
  const [, h, w] = pre.inputSize;
  const region = augment?.randomResizedCrop
    ? randomRegion(image.width, image.height, augment.randomResizedCrop.scale, augment.randomResizedCrop.ratio, gen)
    : { left: 0, top: 0, width: image.width, height: image.height };
  const flip = !!augment && augment.hflip > 0 && gen.uniform() < augment.hflip;
  const whole = region.left === 0 && region.top === 0 && region.width === image.width && region.height === image.height;
  const res = await transformImage(image, { ...(whole ? {} : { crop: region }), resize: { width: w, height: h, kernel: pre.interpolation }, flip });
  writeNormalised(res, pre, null, 0, gen, x, xOffset);
  resizeMaskNearest(mask, region, w, h, flip, y, yOffset);
}

export interface SegmentationLoaderOptions {
  batchSize: number;
  preprocess: PreprocessConfig;
  augment?: SegmentationAugment | null;
  shuffle?: boolean;
  seed?: number;
  prefetch?: number;
  onBadImage?: 'skip' | 'fatal';
  /** Leave out a last batch of a single pair (default: when shuffling). */
  dropSingleLast?: boolean;
  report?: (file: string, reason: string) => void;
}

export class SegmentationBatchSource implements BatchSource {
  readonly size: number;
  readonly badPairs = new Map<string, string>();

  constructor(readonly dataset: SegmentationDataset, readonly samples: readonly SegmentationSample[], private readonly opts: SegmentationLoaderOptions) {
    if (samples.length === 0) throw new Error('segmentation loader: no pairs to load');
    if (!(opts.batchSize > 0)) throw new Error(`segmentation loader: batchSize must be positive; got ${opts.batchSize}`);
    this.size = samples.length;
  }

  /**
   * Batches per epoch. With `dropSingleLast` (training, BatchNorm recalibration) a last batch of
   * one pair is left out: BatchNorm in training mode cannot normalise a single 1×1 map.
   */
  batchesPerEpoch(): number {
    const n = this.samples.length;
    const bs = this.opts.batchSize;
    return (this.opts.dropSingleLast ?? this.opts.shuffle) && n > 1 && bs > 1 && n % bs === 1 ? Math.floor(n / bs) : Math.ceil(n / bs);
  }

  /** The samples in this epoch's order (shuffled by (seed, epoch) when asked). */
  order(epoch: number): readonly SegmentationSample[] {
    return this.opts.shuffle ? shuffled(this.samples, new Generator(((this.opts.seed ?? 0) * 7919 + epoch) >>> 0)) : this.samples;
  }

  private async makeBatch(items: readonly SegmentationSample[], epoch: number, first: number): Promise<Batch | null> {
    const [c, h, w] = this.opts.preprocess.inputSize;
    const per = c * h * w;
    const x = new Float32Array(items.length * per);
    const y = new Int32Array(items.length * h * w);
    const seed = this.opts.seed ?? 0;
    const ok = await Promise.all(items.map(async (s, i) => {
      try {
        const { image, mask } = await loadPair(this.dataset, s);
        await preparePair(image, mask, this.opts.preprocess, this.opts.augment ?? null, new Generator(((seed * 1_000_003 + epoch) * 1_000_033 + first + i) >>> 0), x, i * per, y, i * h * w);
        return true;
      } catch (e) {
        if (!(e instanceof BadPairError) || this.opts.onBadImage === 'fatal') throw e;
        if (!this.badPairs.has(e.file)) {
          this.badPairs.set(e.file, e.reason);
          this.opts.report?.(e.file, e.reason);
        }
        return false;
      }
    }));
    const keep = ok.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
    if (keep.length === 0) return null;
    const n = keep.length;
    const xs = n === items.length ? x : new Float32Array(n * per);
    const ys = n === items.length ? y : new Int32Array(n * h * w);
    if (n !== items.length) {
      keep.forEach((src, dst) => {
        xs.set(x.subarray(src * per, (src + 1) * per), dst * per);
        ys.set(y.subarray(src * h * w, (src + 1) * h * w), dst * h * w);
      });
    }
    return { x: tensor(xs, [n, c, h, w]), y: tensor(ys, [n, h, w]) };
  }

  async *epoch(epoch: number, skipBatches: number): AsyncIterable<Batch> {
    const order = this.order(epoch);
    const bs = this.opts.batchSize;
    const n = this.batchesPerEpoch();
    const ahead = Math.max(1, this.opts.prefetch ?? 3);
    const inflight: Promise<Batch | null>[] = [];
    let next = skipBatches;
    const launch = () => {
      if (next < n) {
        const b = next++;
        const p = this.makeBatch(order.slice(b * bs, (b + 1) * bs), epoch, b * bs);
        p.catch(() => undefined);
        inflight.push(p);
      }
    };
    for (let i = 0; i < ahead; i++) launch();
    while (inflight.length) {
      const batch = await inflight.shift()!;
      launch();
      if (batch) yield batch;
    }
  }
}
