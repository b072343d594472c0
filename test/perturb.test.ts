// Robustness perturbations (data/perturb.ts, `graft eval --perturb`): deterministic under their
// seed, and each changes images as documented: the noise's statistics, the crop box, the rotation
// angle range, the jitter factors; then the eval command's clean + per-perturbation table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as g from '../src/index.js';
import { drawPerturbation, preparePerturbed, PERTURBATION_DEFAULTS, type Perturbation } from '../src/data/perturb.js';
import { evalGeometry, prepareImage, writeNormalised } from '../src/data/transforms.js';
import { transformImage, type RgbImage } from '../src/data/image.js';
import { inMemoryDataset } from '../src/data/dataset.js';
import { ImageBatchSource } from '../src/data/loader.js';
import type { PreprocessConfig } from '../src/data/preprocess.js';

const PRE: PreprocessConfig = { inputSize: [3, 32, 32], mean: [0, 0, 0], std: [1, 1, 1], interpolation: 'bilinear', cropPct: 1 };

function image(w: number, h: number, f: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = f(x, y, c);
  return { data, width: w, height: h };
}
const pattern = image(40, 32, (x, y, c) => (x * 5 + y * 3 + c * 40) % 256);

async function render(img: RgbImage, p: Perturbation | null, seed: number): Promise<Float32Array> {
  const out = new Float32Array(3 * 32 * 32);
  if (p) await preparePerturbed(img, PRE, p, new g.Generator(seed), out, 0);
  else await prepareImage(img, PRE, null, new g.Generator(seed), out, 0);
  return out;
}

test('perturbations: the same seed gives the same images, another seed other ones (through the loader too)', async () => {
  for (const kind of ['noise', 'crop', 'jitter', 'rotation'] as const) {
    const p = { kind, severity: PERTURBATION_DEFAULTS[kind] };
    const a = await render(pattern, p, 1);
    assert.deepEqual(await render(pattern, p, 1), a, `${kind}: deterministic`);
    assert.notDeepEqual(await render(pattern, p, 2), a, `${kind}: the seed matters`);
    assert.notDeepEqual(a, await render(pattern, null, 1), `${kind}: the image is changed`);
  }
  const n = 6;
  const pixels = new Uint8Array(n * 32 * 32 * 3).map((_, i) => (i * 37) % 256);
  const ds = inMemoryDataset(['a', 'b'], pixels, [n, 32, 32, 3], [0, 1, 0, 1, 0, 1]);
  const batches = async (seed: number) => {
    const src = new ImageBatchSource(ds, ds.samples, { batchSize: 4, preprocess: PRE, perturb: { kind: 'rotation', severity: 30 }, seed });
    const out: number[][] = [];
    for await (const b of src.epoch(0, 0)) out.push(Array.from(b.x.toArray()));
    return out;
  };
  assert.deepEqual(await batches(5), await batches(5));
  assert.notDeepEqual(await batches(5), await batches(6));
});

test('noise: zero-mean Gaussian of the documented std on [0, 1] values, added to the clean image', async () => {
  const gray = image(32, 32, () => 128);
  const clean = await render(gray, null, 0);
  for (const sigma of [0.1, 0.03]) {
    const noisy = await render(gray, { kind: 'noise', severity: sigma }, 3);
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < noisy.length; i++) {
      const d = noisy[i]! - clean[i]!;
      s += d;
      s2 += d * d;
    }
    const mean = s / noisy.length;
    const std = Math.sqrt(s2 / noisy.length - mean * mean);
    assert.ok(Math.abs(mean) < 0.1 * sigma, `σ ${sigma}: mean ${mean}`);
    assert.ok(Math.abs(std - sigma) < 0.05 * sigma, `σ ${sigma}: std ${std}`);
  }
});

test('crop: a box of side f · the image sides at a uniform position, resized to the input', async () => {
  const lefts = new Set<number>();
  const tops = new Set<number>();
  for (let seed = 0; seed < 300; seed++) {
    const d = drawPerturbation({ kind: 'crop', severity: 0.7 }, pattern, new g.Generator(seed));
    const b = d.box!;
    assert.deepEqual([b.width, b.height], [28, 22]);
    assert.ok(b.left >= 0 && b.left + b.width <= 40 && b.top >= 0 && b.top + b.height <= 32);
    lefts.add(b.left);
    tops.add(b.top);
  }
  assert.deepEqual([Math.min(...lefts), Math.max(...lefts), lefts.size], [0, 12, 13], 'every left offset 0…12 occurs');
  assert.deepEqual([Math.min(...tops), Math.max(...tops), tops.size], [0, 10, 11]);
  // The image is that box resized to the input.
  const box = drawPerturbation({ kind: 'crop', severity: 0.5 }, pattern, new g.Generator(9)).box!;
  const want = new Float32Array(3 * 32 * 32);
  writeNormalised(await transformImage(pattern, { crop: box, resize: { width: 32, height: 32, kernel: 'bilinear' } }), PRE, null, 0, new g.Generator(0), want, 0);
  assert.deepEqual(await render(pattern, { kind: 'crop', severity: 0.5 }, 9), want);
  // f = 1 keeps the whole image.
  assert.deepEqual(drawPerturbation({ kind: 'crop', severity: 1 }, pattern, new g.Generator(1)).box, { left: 0, top: 0, width: 40, height: 32 });
});

test('rotation: a uniform angle in [−θ, θ] applied to the evaluation image; θ = 0 leaves it unchanged', async () => {
  const angles: number[] = [];
  for (let seed = 0; seed < 500; seed++) angles.push(drawPerturbation({ kind: 'rotation', severity: 30 }, pattern, new g.Generator(seed)).angle!);
  assert.ok(angles.every((a) => a >= -30 && a <= 30));
  assert.ok(Math.min(...angles) < -27 && Math.max(...angles) > 27, 'the whole range is used');
  const mean = angles.reduce((a, b) => a + b, 0) / angles.length;
  assert.ok(Math.abs(mean) < 2, `symmetric: mean ${mean}`);
  // Uniform: about a quarter of the angles in each quarter of the range.
  const inner = angles.filter((a) => Math.abs(a) < 15).length / angles.length;
  assert.ok(Math.abs(inner - 0.5) < 0.07, `half within ±15°: ${inner}`);
  const angle = drawPerturbation({ kind: 'rotation', severity: 30 }, pattern, new g.Generator(4)).angle!;
  const want = new Float32Array(3 * 32 * 32);
  writeNormalised(await transformImage(pattern, { ...evalGeometry(pattern, PRE), rotate: angle }), PRE, null, 0, new g.Generator(0), want, 0);
  assert.deepEqual(await render(pattern, { kind: 'rotation', severity: 30 }, 4), want);
  assert.deepEqual(await render(pattern, { kind: 'rotation', severity: 0 }, 4), await render(pattern, null, 4));
});

test('jitter: brightness, contrast and saturation factors uniform in [1 − j, 1 + j]; a gray image is scaled by the brightness', async () => {
  for (let seed = 0; seed < 200; seed++) {
    const f = drawPerturbation({ kind: 'jitter', severity: 0.4 }, pattern, new g.Generator(seed)).jitter!;
    for (const v of [f.brightness, f.contrast, f.saturation]) assert.ok(v >= 0.6 && v <= 1.4);
  }
  const gray = image(32, 32, () => 100);
  const f = drawPerturbation({ kind: 'jitter', severity: 0.4 }, gray, new g.Generator(7)).jitter!;
  const out = await render(gray, { kind: 'jitter', severity: 0.4 }, 7);
  for (const v of out) assert.ok(Math.abs(v - (100 / 255) * f.brightness) < 1e-5);
});

test('graft eval --perturb: a clean and a per-perturbation table of every metric in eval.md and eval.json; flags checked', async () => {
  const root = mkdtempSync(join(tmpdir(), 'graft-perturb-'));
  const data = join(root, 'images');
  for (const c of ['dark', 'light']) mkdirSync(join(data, c), { recursive: true });
  for (let i = 0; i < 3; i++) {
    for (const [c, v] of [['dark', 40], ['light', 210]] as const) {
      const px = Buffer.alloc(32 * 32 * 3);
      for (let k = 0; k < px.length; k++) px[k] = Math.max(0, Math.min(255, v + ((k * 11 + i * 5) % 30) - 15));
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, c, `${i}.png`));
    }
  }
  const graft = (...args: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 240_000 });
  const run = join(root, 'run');
  const t = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '2', '--method', 'linear-probe', '--epochs', '1', '--batch-size', '2', '--output', run);
  assert.equal(t.status, 0, t.stderr + t.stdout);
  const e = graft('eval', run, '--data', data, '--perturb', 'noise,crop,jitter,rotation', '--noise-std', '0.2', '--rotation', '15');
  assert.equal(e.status, 0, e.stderr);
  const md = readFileSync(join(run, 'eval.md'), 'utf8');
  assert.match(md, /## Robustness \(perturbation seed 0\)/);
  for (const row of [/\| clean \| — \| \d/, /\| noise \| 0\.2 \| /, /\| crop \| 0\.7 \| /, /\| jitter \| 0\.4 \| /, /\| rotation \| 15 \| /]) assert.match(md, row);
  const json = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as { metrics: { accuracy: number }; robustness: { seed: number; conditions: { perturbation: string; severity: number; metrics: { accuracy: number; mAP: number; confusion: number[][] } }[] } };
  assert.deepEqual(json.robustness.conditions.map((c) => [c.perturbation, c.severity]), [['noise', 0.2], ['crop', 0.7], ['jitter', 0.4], ['rotation', 15]]);
  for (const c of json.robustness.conditions) assert.equal(c.metrics.confusion.flat().reduce((a, b) => a + b, 0), 6);
  // The same seed: the same table.
  const again = graft('eval', run, '--data', data, '--perturb', 'noise,crop,jitter,rotation', '--noise-std', '0.2', '--rotation', '15');
  assert.equal(again.status, 0);
  assert.equal(readFileSync(join(run, 'eval.md'), 'utf8'), md);
  const bad = graft('eval', run, '--data', data, '--perturb', 'blur');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown perturbation 'blur'; one of noise, crop, jitter, rotation/);
  const orphan = graft('eval', run, '--data', data, '--rotation', '10');
  assert.equal(orphan.status, 2);
  assert.match(orphan.stderr, /--rotation sets the rotation perturbation's severity; add rotation to --perturb/);
  const range = graft('eval', run, '--data', data, '--perturb', 'crop', '--crop-fraction', '1.5');
  assert.equal(range.status, 2);
  assert.match(range.stderr, /crop: severity 1\.5 must be in \(0, 1\] \(--crop-fraction\)/);
});
