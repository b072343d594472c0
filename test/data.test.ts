// Data: decoding every kind of image to upright RGB, folder and manifest datasets, stratified
// splits, and a loader that reports bad files instead of crashing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import '../src/backends/all.js';
import { decodeImage } from '../src/data/image.js';
import { imageFolder, manifest, inMemoryDataset } from '../src/data/dataset.js';
import { stratifiedSplit } from '../src/data/splits.js';
import { ImageBatchSource } from '../src/data/loader.js';
import { IMAGENET_MEAN, IMAGENET_STD, type PreprocessConfig } from '../src/data/preprocess.js';
import type { Batch } from '../src/data/batch.js';

const root = mkdtempSync(join(tmpdir(), 'graft-data-'));
const pre: PreprocessConfig = { inputSize: [3, 16, 16], mean: IMAGENET_MEAN, std: IMAGENET_STD, interpolation: 'bilinear', cropPct: 0.875 };

/** A 12×8 (W×H) image: red left half, blue right half. */
function halves(): Buffer {
  const data = Buffer.alloc(12 * 8 * 3);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 12; x++) data.set(x < 6 ? [255, 0, 0] : [0, 0, 255], (y * 12 + x) * 3);
  return data;
}
const raw = { raw: { width: 12, height: 8, channels: 3 as const } };

async function makeFolder(): Promise<string> {
  const dir = join(root, 'folder');
  for (const c of ['cat', 'dog', 'empty']) mkdirSync(join(dir, c), { recursive: true });
  await sharp(halves(), raw).jpeg().toFile(join(dir, 'cat', 'a.jpg'));
  await sharp(halves(), raw).png().toFile(join(dir, 'cat', 'b.png'));
  await sharp(halves(), raw).webp({ lossless: true }).toFile(join(dir, 'cat', 'c.webp'));
  await sharp(halves(), raw).toColourspace('b-w').png().toFile(join(dir, 'dog', 'gray.png'));
  await sharp(halves(), raw).ensureAlpha(0.5).png().toFile(join(dir, 'dog', 'rgba.png'));
  await sharp(halves(), raw).toColourspace('rgb16').png().toFile(join(dir, 'dog', 'deep.png'));
  await sharp(halves(), raw).jpeg().withMetadata({ orientation: 6 }).toFile(join(dir, 'dog', 'rotated.jpg'));
  writeFileSync(join(dir, 'dog', 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
  writeFileSync(join(dir, 'dog', 'notes.txt'), 'not an image');
  return dir;
}

test('data: every image kind decodes to upright 8-bit RGB', async () => {
  const dir = await makeFolder();
  const png = await decodeImage(join(dir, 'cat', 'b.png'));
  assert.deepEqual([png.width, png.height], [12, 8]);
  assert.deepEqual([...png.data.subarray(0, 3)], [255, 0, 0]);
  const gray = await decodeImage(join(dir, 'dog', 'gray.png'));
  assert.equal(gray.data.length, 12 * 8 * 3);
  assert.equal(gray.data[0], gray.data[1]);
  const deep = await decodeImage(join(dir, 'dog', 'deep.png'));
  assert.deepEqual([...deep.data.subarray(0, 3)], [255, 0, 0]);
  const rgba = await decodeImage(join(dir, 'dog', 'rgba.png'));
  assert.ok(Math.abs(rgba.data[0]! - 128) <= 1, `half-transparent red over black: ${rgba.data[0]}`);
  // EXIF orientation 6 (rotate 90° clockwise to display): 12×8 stored becomes 8×12 upright.
  const rotated = await decodeImage(join(dir, 'dog', 'rotated.jpg'));
  assert.deepEqual([rotated.width, rotated.height], [8, 12]);
  await assert.rejects(decodeImage(join(dir, 'dog', 'broken.jpg')), /cannot decode image .*broken\.jpg/);
});

test('data: image folder lists classes, skips non-images and reports empty classes', async () => {
  const dir = join(root, 'folder');
  const ds = imageFolder(dir);
  assert.deepEqual(ds.classes, ['cat', 'dog', 'empty']);
  assert.equal(ds.samples.filter((s) => s.label === 0).length, 3);
  assert.equal(ds.samples.filter((s) => s.label === 1).length, 5);
  assert.deepEqual(ds.skipped.map((s) => s.reason).sort(), ['class folder holds no images', 'not an image file (extension)']);
  assert.throws(() => imageFolder(join(root, 'nope')), /does not exist/);
});

test('data: the loader skips and reports a corrupt image, or stops on it when fatal', async () => {
  const ds = imageFolder(join(root, 'folder'));
  const reports: string[] = [];
  const src = new ImageBatchSource(ds, ds.samples, { batchSize: 3, preprocess: pre, report: (f, r) => reports.push(`${f}: ${r}`) });
  const batches: Batch[] = [];
  for await (const b of src.epoch(0, 0)) batches.push(b);
  assert.equal(batches.reduce((n, b) => n + b.x.shape[0]!, 0), 7);
  assert.deepEqual(batches[0]!.x.shape.slice(1), [3, 16, 16]);
  assert.equal(reports.length, 1);
  assert.match(reports[0]!, /broken\.jpg/);
  const fatal = new ImageBatchSource(ds, ds.samples, { batchSize: 3, preprocess: pre, onBadImage: 'fatal' });
  await assert.rejects(async () => {
    for await (const b of fatal.epoch(0, 0)) void b;
  }, /cannot decode image .*broken\.jpg/);
});

test('data: augmentation is reproducible per (seed, epoch) and differs across epochs', async () => {
  const ds = imageFolder(join(root, 'folder'));
  const good = ds.samples.filter((s) => !String(s.source).includes('broken'));
  const opts = { batchSize: 4, preprocess: pre, shuffle: true, seed: 3, augment: { randomResizedCrop: { scale: [0.3, 1] as [number, number], ratio: [0.75, 1.33] as [number, number] }, hflip: 0.5, colorJitter: { brightness: 0.3, contrast: 0.3, saturation: 0.3 }, rotation: 15, gaussianNoise: 0.05 } };
  const first = async (epoch: number) => {
    for await (const b of new ImageBatchSource(ds, good, opts).epoch(epoch, 0)) return Array.from(b.x.toArray());
    return [];
  };
  const a = await first(0);
  assert.deepEqual(await first(0), a);
  assert.notDeepEqual(await first(1), a);
});

test('data: CSV and JSONL manifests, in-memory images, and stratified splits', () => {
  const csv = join(root, 'm.csv');
  writeFileSync(csv, 'path,label\nfolder/cat/a.jpg,cat\n"folder/dog/gray.png",dog\n');
  const m = manifest(csv);
  assert.deepEqual(m.classes, ['cat', 'dog']);
  assert.equal(m.samples[1]!.source, join(root, 'folder/dog/gray.png'));
  const jsonl = join(root, 'm.jsonl');
  writeFileSync(jsonl, '{"path": "folder/cat/a.jpg", "label": 1}\n{"path": "folder/cat/b.png", "label": 0}\n');
  assert.deepEqual(manifest(jsonl).samples.map((s) => s.label), [1, 0]);
  writeFileSync(csv, 'file,class\na.jpg,cat\n');
  assert.throws(() => manifest(csv), /must name 'path' and 'label' columns/);
  const labels = Array.from({ length: 300 }, (_, i) => i % 3);
  const mem = inMemoryDataset(['a', 'b', 'c'], new Uint8Array(300 * 4), [300, 2, 2], labels);
  const k = stratifiedSplit(mem.samples, { seed: 1, perClass: 5, valFraction: 0.4 });
  assert.equal(k.train.length, 9);
  assert.equal(k.val.length, 6);
  assert.equal(k.test.length, 285);
  for (const c of [0, 1, 2]) assert.equal(k.train.filter((s) => s.label === c).length, 3);
  const r = stratifiedSplit(mem.samples, { seed: 1, ratio: [98, 1] });
  assert.equal(r.train.length, 3);
  assert.equal(r.test.length, 297);
  assert.deepEqual(stratifiedSplit(mem.samples, { seed: 1, perClass: 5 }).train, stratifiedSplit(mem.samples, { seed: 1, perClass: 5 }).train);
});
