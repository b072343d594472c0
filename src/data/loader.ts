// Batches of decoded, transformed images, prepared ahead of the training loop: decoding runs on
// libuv's thread pool (sharp) while the model computes, so training never waits on JPEGs.
// Augmentation randomness is seeded per (seed, epoch, position), so an epoch is reproducible
// whatever the decode order.
import { poolAlloc, poolFree } from '../tensor/host-pool.js';
import { tensor } from '../ops/creation.js';
import { Generator } from '../tensor/random.js';
import type { PreprocessConfig } from './preprocess.js';
import type { Batch, BatchSource } from './batch.js';
import type { LabeledDataset, Sample } from './dataset.js';
import { ImageDecodeError } from './image.js';
import { shuffled } from './splits.js';
import { prepareImage, type AugmentConfig } from './transforms.js';
import { preparePerturbed, type Perturbation } from './perturb.js';

export interface LoaderOptions {
  batchSize: number;
  preprocess: PreprocessConfig;
  augment?: AugmentConfig | null;
  shuffle?: boolean;
  seed?: number;
  /** Batches prepared ahead (default 3). */
  prefetch?: number;
  /** A test-time perturbation applied to every image (robustness evaluation, data/perturb.ts), drawn per image from the seeded generator. */
  perturb?: Perturbation | null;
  /** What an unreadable image does: skipped and reported (default), or fatal. */
  onBadImage?: 'skip' | 'fatal';
  report?: (file: string, reason: string) => void;
}

export class ImageBatchSource implements BatchSource {
  readonly size: number;
  /** Files that could not be decoded, with the reason (each once). */
  readonly badImages = new Map<string, string>();

  constructor(private readonly dataset: LabeledDataset, private readonly samples: readonly Sample[], private readonly opts: LoaderOptions) {
    if (samples.length === 0) throw new Error('loader: no samples to load');
    if (!(opts.batchSize > 0)) throw new Error(`loader: batchSize must be positive; got ${opts.batchSize}`);
    this.size = samples.length;
  }

  batchesPerEpoch(): number {
    return Math.ceil(this.samples.length / this.opts.batchSize);
  }

  private async prepare(sample: Sample, gen: Generator, out: Float32Array, offset: number): Promise<boolean> {
    try {
      const img = await this.dataset.load(sample);
      if (this.opts.perturb) await preparePerturbed(img, this.opts.preprocess, this.opts.perturb, gen, out, offset);
      else await prepareImage(img, this.opts.preprocess, this.opts.augment ?? null, gen, out, offset);
      return true;
    } catch (e) {
      const file = String(sample.source);
      const reason = e instanceof ImageDecodeError ? e.reason : (e as Error).message;
      if ((this.opts.onBadImage ?? 'skip') === 'fatal') throw new ImageDecodeError(file, reason);
      if (!this.badImages.has(file)) {
        this.badImages.set(file, reason);
        this.opts.report?.(file, reason);
      }
      return false;
    }
  }

  private async makeBatch(items: readonly Sample[], epoch: number, first: number): Promise<{ data: Float32Array; labels: number[] } | null> {
    const [c, h, w] = this.opts.preprocess.inputSize;
    const per = c * h * w;
    // A pooled staging buffer, given back once the batch tensor holds its copy.
    const data = poolAlloc('float32', items.length * per, false) as Float32Array;
    const seed = this.opts.seed ?? 0;
    const ok = await Promise.all(items.map((s, i) => this.prepare(s, new Generator(((seed * 1_000_003 + epoch) * 1_000_033 + first + i) >>> 0), data, i * per)));
    const keep = ok.map((v, i) => (v ? i : -1)).filter((i) => i >= 0);
    if (keep.length === 0) return null;
    if (keep.length === items.length) return { data, labels: items.map((s) => s.label) };
    const packed = poolAlloc('float32', keep.length * per, false) as Float32Array;
    keep.forEach((src, dst) => packed.set(data.subarray(src * per, (src + 1) * per), dst * per));
    poolFree(data, 'float32');
    return { data: packed, labels: keep.map((i) => items[i]!.label) };
  }

  async *epoch(epoch: number, skipBatches: number): AsyncIterable<Batch> {
    const seed = this.opts.seed ?? 0;
    const order = this.opts.shuffle ? shuffled(this.samples, new Generator((seed * 7919 + epoch) >>> 0)) : this.samples;
    const bs = this.opts.batchSize;
    const n = this.batchesPerEpoch();
    const ahead = Math.max(1, this.opts.prefetch ?? 3);
    const inflight: Promise<{ data: Float32Array; labels: number[] } | null>[] = [];
    let next = skipBatches;
    const launch = () => {
      if (next < n) {
        const b = next++;
        const p = this.makeBatch(order.slice(b * bs, (b + 1) * bs), epoch, b * bs);
        p.catch(() => undefined); // surfaced when awaited
        inflight.push(p);
      }
    };
    for (let i = 0; i < ahead; i++) launch();
    while (inflight.length) {
      const batch = await inflight.shift()!;
      launch();
      if (!batch) continue;
      const [c, h, w] = this.opts.preprocess.inputSize;
      const x = tensor(batch.data, [batch.labels.length, c, h, w]);
      poolFree(batch.data, 'float32');
      yield { x, y: tensor(Int32Array.from(batch.labels), [batch.labels.length]) };
    }
  }
}
