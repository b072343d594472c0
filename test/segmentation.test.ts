// Semantic segmentation: the pixel metrics against a hand-computed example, the decode heads and
// the per-pixel cross-entropy against PyTorch (fixtures/segmentation/make_seg_fixtures.py), the
// three folder layouts (the committed VOC-layout sample among them) and bad pairs, masks moving
// with their images under augmentation, the backbones' feature maps, which tensors each method
// trains, and the command line end to end (train, eval on a reloaded run, predict).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as g from '../src/index.js';
import { PixelConfusion, segmentationReport } from '../src/eval/segmentation.js';
import { LinearDecodeHead, UperDecodeHead, SegmentationModel } from '../src/models/segmentation.js';
import { BadPairError, checkedPairs, loadMask, loadPair, segmentationFolder, splitSegmentation, VOC_CLASSES } from '../src/data/segmentation.js';
import { preparePair } from '../src/data/segmentation-loader.js';
import { composeCanvas, COMPOSED_CLASSES } from '../src/data/compose-segmentation.js';
import { decodeIndexedPng, encodeIndexedPng, vocPalette } from '../src/io/png.js';
import { createModel } from '../src/models/registry.js';
import { buildRunModel } from '../src/train/run.js';
import { runConfigSchema } from '../src/train/run-config.js';
import type { Module } from '../src/nn/module.js';
import '../src/models/all.js';

const FIXTURES = new URL('../../fixtures/segmentation/', import.meta.url).pathname;
const VOC_SAMPLE = join(FIXTURES, 'voc-sample');

function close(got: Float32Array, want: number[], what: string, atol = 2e-5, rtol = 2e-4): void {
  assert.equal(got.length, want.length, `${what} size`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= atol + rtol * Math.abs(want[i]!), `${what}[${i}]: graft ${got[i]}, PyTorch ${want[i]}`);
  }
}

test('pixel metrics: a hand-computed example with ignored pixels and a class absent everywhere', () => {
  const conf = new PixelConfusion(4);
  // labels 255 are ignored; class 3 appears in neither labels nor predictions.
  conf.add([0, 1, 1, 1, 0, 2, 2, 0, 0, 2], [0, 0, 1, 1, 1, 2, 255, 255, 0, 1]);
  const r = segmentationReport(conf, ['a', 'b', 'c', 'd']);
  // label 0: predicted 0,1,0 · label 1: 1,1,0,2 · label 2: 2. TP 2, 2, 1; predicted totals 3, 3, 2.
  const iou = [2 / (3 + 3 - 2), 2 / (4 + 3 - 2), 1 / (1 + 2 - 1)];
  const acc = [2 / 3, 2 / 4, 1];
  r.perClass.slice(0, 3).forEach((p, k) => {
    assert.ok(Math.abs(p.iou! - iou[k]!) < 1e-12, `IoU of class ${k}`);
    assert.ok(Math.abs(p.accuracy! - acc[k]!) < 1e-12, `accuracy of class ${k}`);
  });
  assert.deepEqual(r.perClass.map((p) => p.pixels), [3, 4, 1, 0]);
  assert.equal(r.perClass[3]!.iou, null);
  assert.equal(r.perClass[3]!.accuracy, null);
  assert.ok(Math.abs(r.mIoU - (0.5 + 0.4 + 0.5) / 3) < 1e-12);
  assert.ok(Math.abs(r.meanAccuracy - (2 / 3 + 0.5 + 1) / 3) < 1e-12);
  assert.ok(Math.abs(r.pixelAccuracy - 5 / 8) < 1e-12);
  assert.equal(r.pixels, 8);
  // A class predicted but never labelled has IoU 0 (it counts against mIoU) and no accuracy.
  const c2 = new PixelConfusion(2);
  c2.add([0, 1], [0, 0]);
  const r2 = segmentationReport(c2, ['x', 'y']);
  assert.equal(r2.perClass[1]!.iou, 0);
  assert.equal(r2.perClass[1]!.accuracy, null);
  assert.ok(Math.abs(r2.mIoU - 0.25) < 1e-12);
  assert.throws(() => new PixelConfusion(2).add([0], [7]), /label 7 is outside \[0, 2\)/);
});

interface T { shape: number[]; values: number[] }
interface HeadCase { name: string; state: Record<string, T>; maps: T[]; logits: T; image: [number, number]; upsampled: T; w: number[]; mapGrads: number[][] }
interface CeCase { smoothing: number; logits: T; labels: number[]; loss: number; grad: number[] }
const fx = JSON.parse(readFileSync(join(FIXTURES, 'heads.json'), 'utf8')) as { heads: HeadCase[]; crossEntropy: CeCase[] };

for (const c of fx.heads) {
  test(`decode head '${c.name}' against PyTorch: logits, upsampled logits, gradients of the input maps`, () => {
    const k = c.logits.shape[1]!;
    const channels = c.maps.map((m) => m.shape[1]!);
    const head = c.name === 'linear'
      ? new LinearDecodeHead(channels[0]!, k)
      : new UperDecodeHead({ channels, strides: c.name === 'uper same stride' ? [16, 16, 16, 16] : [4, 8, 16, 32] }, c.state['conv_seg.weight']!.shape[1]!, k);
    const state = Object.fromEntries(Object.entries(c.state).map(([name, t]) => [name, g.tensor(Float32Array.from(t.values), t.shape)]));
    const loaded = head.loadStateDict(state, { strict: false });
    assert.deepEqual(loaded.missingKeys.filter((n) => !n.endsWith('num_batches_tracked')), []);
    assert.deepEqual(loaded.unexpectedKeys, []);
    head.eval();
    const maps = c.maps.map((m) => g.tensor(Float32Array.from(m.values), m.shape).requiresGrad_(true));
    const logits = head.forwardMaps(maps);
    assert.deepEqual(logits.shape, c.logits.shape);
    close(logits.toArray() as Float32Array, c.logits.values, `${c.name} logits`);
    const up = g.interpolate(logits, { size: c.image, mode: 'bilinear', alignCorners: false });
    close(up.toArray() as Float32Array, c.upsampled.values, `${c.name} upsampled`);
    g.sum(g.mul(up, g.tensor(Float32Array.from(c.w), up.shape))).backward();
    maps.forEach((m, i) => close(m.grad!.toArray() as Float32Array, c.mapGrads[i]!, `${c.name} gradient of map ${i}`));
  });
}

test('per-pixel cross-entropy with ignore index 255 against PyTorch (label smoothing 0 and 0.1)', () => {
  for (const c of fx.crossEntropy) {
    const logits = g.tensor(Float32Array.from(c.logits.values), c.logits.shape).requiresGrad_(true);
    const labels = g.tensor(Int32Array.from(c.labels), [c.logits.shape[0]!, ...c.logits.shape.slice(2)]);
    const loss = g.crossEntropy(logits, labels, { ignoreIndex: 255, labelSmoothing: c.smoothing });
    assert.ok(Math.abs((loss.toArray() as Float32Array)[0]! - c.loss) < 1e-5, `loss (smoothing ${c.smoothing}): graft ${loss.toArray()[0]}, PyTorch ${c.loss}`);
    loss.backward();
    close(logits.grad!.toArray() as Float32Array, c.grad, `gradient (smoothing ${c.smoothing})`, 1e-6, 1e-4);
  }
});

test('the committed VOC-layout sample: palette masks, ImageSets split, classes.txt (else the 21 VOC classes)', async () => {
  const ds = segmentationFolder(VOC_SAMPLE);
  assert.equal(ds.layout, 'voc');
  assert.deepEqual(ds.classes, COMPOSED_CLASSES);
  assert.equal(ds.samples.length, 8);
  assert.equal(ds.splits!.train.length, 6);
  assert.deepEqual(ds.splits!.val.map((s) => s.name), ['fmnist_00006', 'fmnist_00007']);
  const pairs = await checkedPairs(ds, ds.samples, 'fatal', () => assert.fail('no pair of the sample is bad'));
  assert.equal(pairs.length, 8);
  // The mask's indices as PIL reads the palette PNG (np.unique(np.array(Image.open(f)), return_counts=True)).
  const m = await loadMask(join(VOC_SAMPLE, 'SegmentationClass', 'fmnist_00000.png'));
  const counts = new Map<number, number>();
  for (const v of m.data) counts.set(v, (counts.get(v) ?? 0) + 1);
  assert.deepEqual([...counts.entries()].sort((a, b) => a[0] - b[0]), [[0, 338], [1, 347], [2, 1], [5, 48], [10, 149], [255, 141]]);
  const split = splitSegmentation(pairs, { seed: 0, valFraction: 0, layoutSplit: ds.splits });
  assert.equal(split.testFrom, "the layout's validation split");
  assert.deepEqual(split.test.map((s) => s.name), ['fmnist_00006', 'fmnist_00007']);
  const bare = mkdtempSync(join(tmpdir(), 'graft-voc-'));
  cpSync(VOC_SAMPLE, bare, { recursive: true });
  rmSync(join(bare, 'classes.txt'));
  assert.deepEqual(segmentationFolder(bare).classes, VOC_CLASSES);
});

async function png(file: string, w: number, h: number, channels: 1 | 3, fill: (i: number) => number): Promise<void> {
  const px = Buffer.alloc(w * h * channels);
  for (let i = 0; i < px.length; i++) px[i] = fill(i);
  const img = sharp(px, { raw: { width: w, height: h, channels } });
  await (channels === 1 ? img.toColourspace('b-w') : img).png().toFile(file);
}

test('graft layout: bad pairs (no mask, size mismatch, index out of range, RGB mask) reported by file, or fatal', async () => {
  const root = mkdtempSync(join(tmpdir(), 'graft-seg-'));
  mkdirSync(join(root, 'images'));
  mkdirSync(join(root, 'masks'));
  writeFileSync(join(root, 'classes.txt'), 'background\nthing\n');
  for (const n of ['good', 'nomask', 'small', 'index', 'rgb']) await png(join(root, 'images', `${n}.png`), 8, 8, 3, (i) => i % 256);
  await png(join(root, 'masks', 'good.png'), 8, 8, 1, (i) => (i % 3 === 0 ? 255 : i % 2));
  await png(join(root, 'masks', 'small.png'), 4, 8, 1, () => 0);
  await png(join(root, 'masks', 'index.png'), 8, 8, 1, (i) => (i === 9 ? 7 : 0));
  await png(join(root, 'masks', 'rgb.png'), 8, 8, 3, (i) => i % 3);
  const ds = segmentationFolder(root);
  assert.equal(ds.layout, 'graft');
  assert.deepEqual(ds.skipped.map((s) => s.file), [join(root, 'images', 'nomask.png')]);
  const reported: [string, string][] = [];
  const ok = await checkedPairs(ds, ds.samples, 'skip', (f, r) => reported.push([f, r]));
  assert.deepEqual(ok.map((s) => s.name), ['good']);
  const why = Object.fromEntries(reported.map(([f, r]) => [f.slice(root.length + 7), r]));
  assert.match(why['index.png']!, /pixel \(1, 1\) has class index 7, but there are 2 classes/);
  assert.match(why['small.png']!, /mask is 4×8 but its image .* is 8×8/);
  assert.match(why['rgb.png']!, /colours, not class indices/);
  await assert.rejects(checkedPairs(ds, ds.samples, 'fatal', () => undefined), (e: unknown) => e instanceof BadPairError && /index\.png|rgb\.png|small\.png/.test(e.message) && /onBadImage/.test(e.message));
  const good = await loadPair(ds, ds.samples.find((s) => s.name === 'good')!);
  assert.equal(good.mask.data[0], 255);
  assert.equal(good.mask.data[1], 1);
  rmSync(join(root, 'classes.txt'));
  assert.throws(() => segmentationFolder(root), /no classes\.txt; add one class name per line/);
  assert.throws(() => segmentationFolder(join(root, 'images')), /not a segmentation folder: expected images\/ \+ masks\/ \+ classes\.txt/);
});

test('ADE20K layout: objectInfo150 class names, mask 0 ignored and k read as class k − 1, training / validation split', async () => {
  const root = mkdtempSync(join(tmpdir(), 'graft-ade-'));
  for (const part of ['training', 'validation']) {
    mkdirSync(join(root, 'images', part), { recursive: true });
    mkdirSync(join(root, 'annotations', part), { recursive: true });
    await png(join(root, 'images', part, `ADE_${part}_1.png`), 4, 4, 3, () => 100);
    await png(join(root, 'annotations', part, `ADE_${part}_1.png`), 4, 4, 1, (i) => i % 4);
  }
  writeFileSync(join(root, 'objectInfo150.txt'), 'Idx\tRatio\tTrain\tVal\tName\n1\t0.1\t1\t1\twall\n2\t0.1\t1\t1\tbuilding;edifice\n3\t0.1\t1\t1\tsky\n');
  const ds = segmentationFolder(root);
  assert.equal(ds.layout, 'ade20k');
  assert.deepEqual(ds.classes, ['wall', 'building', 'sky']);
  assert.equal(ds.splits!.val.length, 1);
  const { mask } = await loadPair(ds, ds.samples[0]!);
  assert.deepEqual([...mask.data.slice(0, 4)], [255, 0, 1, 2]);
});

test('augmentation moves the mask with the image: crop and flip keep every clearly coloured pixel on its own class', async () => {
  // Four vertical bands of pure colours, each its own class; bilinear resampling mixes colours only at band edges.
  const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
  const W = 48;
  const H = 40;
  const data = new Uint8Array(W * H * 3);
  const mask = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const band = Math.floor(x / 12);
    data.set(colours[band]!, (y * W + x) * 3);
    mask[y * W + x] = band;
  }
  const pre = { inputSize: [3, 24, 24] as [number, number, number], mean: [0, 0, 0] as [number, number, number], std: [1, 1, 1] as [number, number, number], interpolation: 'bilinear' as const, cropPct: 1 };
  let checked = 0;
  let flips = 0;
  for (let seed = 0; seed < 12; seed++) {
    const x = new Float32Array(3 * 24 * 24);
    const y = new Int32Array(24 * 24);
    await preparePair({ data, width: W, height: H }, { data: mask, width: W, height: H }, pre, { randomResizedCrop: { scale: [0.2, 0.6], ratio: [0.75, 1.33] }, hflip: 0.5 }, new g.Generator(seed), x, 0, y, 0);
    for (let i = 0; i < 24 * 24; i++) {
      const rgb = [x[i]!, x[576 + i]!, x[1152 + i]!].map((v) => v * 255);
      const band = colours.findIndex((c) => c.every((v, ch) => Math.abs(v - rgb[ch]!) < 8));
      if (band < 0) continue;
      assert.equal(y[i], band, `seed ${seed}, pixel ${i}: colour of class ${band}, mask ${y[i]}`);
      checked++;
    }
    // A flip shows in the mask: classes then fall from left to right.
    if (y[0]! > y[23]!) flips++;
  }
  assert.ok(checked > 12 * 24 * 24 * 0.6, `only ${checked} pixels had a clean colour`);
  assert.ok(flips > 0 && flips < 12, `flipped ${flips} of 12`);
});

test('indexed PNG: graft writes palette PNGs that sharp reads back with the VOC colours, and decodes them to the same indices', async () => {
  const idx = Uint8Array.from({ length: 35 }, (_, i) => (i * 7) % 21);
  idx[3] = 255;
  const file = encodeIndexedPng(idx, 7, 5, vocPalette());
  assert.deepEqual(decodeIndexedPng(file), { indices: idx, width: 7, height: 5 });
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 7);
  const pal = vocPalette();
  for (let i = 0; i < 35; i++) assert.deepEqual([...data.subarray(3 * i, 3 * i + 3)], pal[idx[i]!], `pixel ${i}`);
});

test('a composed canvas: each item is its own pixels, labelled by its class, its faint rim ignored', () => {
  // Two 28×28 items: item 0 a bright square (class 3), item 1 a faint frame with a bright centre (class 7).
  const images = new Uint8Array(2 * 784);
  for (let y = 4; y < 20; y++) for (let x = 4; x < 20; x++) images[y * 28 + x] = 200;
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) images[784 + y * 28 + x] = x > 10 && x < 18 && y > 10 && y < 18 ? 250 : 20;
  const labels = Uint8Array.from([3, 7]);
  const c = composeCanvas(images, labels, 40, 3, 48, new g.Generator(1));
  assert.equal(c.items.length, 3);
  for (let p = 0; p < 40 * 40; p++) {
    const v = c.image[p]!;
    const m = c.mask[p]!;
    if (v === 0) assert.equal(m, 0, 'background');
    else if (v < 48) assert.equal(m, 255, 'faint rim ignored');
    else assert.ok(m === 4 || m === 8, `bright pixel labelled ${m}`);
  }
});

const TINY_SWIN = { embedDim: 16, depths: [1, 1, 1, 1], numHeads: [1, 1, 1, 1] };

test('feature maps: Swin and ConvNeXt stages, ResNet layers, four ViT blocks (prefix tokens dropped, grid restored)', () => {
  const cases: [string, Record<string, unknown>, number[], number[]][] = [
    ['swin_tiny', TINY_SWIN, [16, 32, 64, 128], [4, 8, 16, 32]],
    ['convnext_tiny', { blockSetting: [[8, 16, 1], [16, 24, 1], [24, 32, 1], [32, null, 1]] }, [8, 16, 24, 32], [4, 8, 16, 32]],
    ['resnet18', { layers: [1, 1, 1, 1] }, [64, 128, 256, 512], [4, 8, 16, 32]],
    ['dinov2_small_reg', { numHiddenLayers: 4, hiddenSize: 24, numAttentionHeads: 2 }, [24, 24, 24, 24], [14, 14, 14, 14]],
  ];
  g.noGrad(() => {
    for (const [name, overrides, channels, strides] of cases) {
      const m = createModel(name, { numClasses: 0, overrides, imageSize: 64 });
      m.eval();
      const spec = m.featureMapSpec(4)!;
      assert.deepEqual(spec, { channels, strides }, name);
      const maps = m.forwardFeatureMaps(g.randn([2, 3, 64, 64], { generator: new g.Generator(0) }), 4);
      maps.forEach((t, i) => assert.deepEqual(t.shape, [2, channels[i], Math.floor(64 / strides[i]!), Math.floor(64 / strides[i]!)], `${name} map ${i}`));
      const one = m.forwardFeatureMaps(g.randn([1, 3, 64, 64], { generator: new g.Generator(0) }), 1);
      assert.equal(one.length, 1);
      assert.equal(one[0]!.shape[1], channels[3]);
    }
  });
  assert.throws(() => new SegmentationModel(createModel('mobilenet_v2', { numClasses: 0 }), { head: 'uper', numClasses: 3 }), /give no four-level feature maps; use a ViT/);
});

test('every method trains its own tensors and the decode head; the backbone stays frozen outside its adapters (full: everything)', async () => {
  const base = { task: 'segmentation', model: 'swin_tiny', modelOverrides: TINY_SWIN, data: { source: 'unused', imageSize: 32 }, segmentation: { head: 'uper', channels: 8 } };
  const want: Record<string, RegExp> = {
    'linear-probe': /(^|\.)decode_head\./,
    full: /./,
    lora: /(^|\.)decode_head\.|lora_[AB]/,
    dora: /(^|\.)decode_head\.|lora_[AB]|lora_magnitude_vector/,
    mona: /(^|\.)decode_head\.|mona/,
  };
  for (const [method, pattern] of Object.entries(want)) {
    const c = runConfigSchema().parse({ ...base, method, adapter: { r: 2, alpha: 4, targets: method === 'mona' ? 'all-blocks' : 'all-linear' } });
    const { model } = await buildRunModel(c, ['a', 'b', 'c']);
    const named = (model as Module).namedParameters();
    const trainable = named.filter(([, p]) => p.requiresGrad).map(([n]) => n);
    assert.ok(trainable.some((n) => n.includes('decode_head')), `${method}: the head trains`);
    for (const n of trainable) assert.match(n, pattern, `${method}: ${n} trains`);
    if (method === 'full') assert.equal(trainable.length, named.length);
    else assert.ok(trainable.length < named.length, `${method}: the backbone is frozen`);
    g.noGrad(() => {
      model.eval();
      assert.deepEqual(model.forward(g.randn([1, 3, 32, 32])).shape, [1, 3, 32, 32], `${method}: logits at the input size`);
    });
    model.dispose();
  }
});

function graft(...args: string[]) {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

test('command line: train --task segmentation (LoRA on a ViT, Mona on Swin), eval the reloaded run, predict masks and overlays', async () => {
  const root = mkdtempSync(join(tmpdir(), 'graft-seg-cli-'));
  const runs: [string, Record<string, unknown>][] = [
    ['vit-lora', { model: 'vit_small_patch16_224', modelOverrides: { depth: 4, embedDim: 32, numHeads: 2 }, method: 'lora', segmentation: { head: 'uper', channels: 16 } }],
    ['swin-mona', { model: 'swin_tiny', modelOverrides: TINY_SWIN, method: 'mona', mona: { dim: 8 }, segmentation: { head: 'linear' }, valFraction: 0.34 }],
  ];
  // The layout's validation pairs alone, as a graft-layout folder, to evaluate the reloaded run on.
  const val = join(root, 'val');
  mkdirSync(join(val, 'images'), { recursive: true });
  mkdirSync(join(val, 'masks'));
  cpSync(join(VOC_SAMPLE, 'classes.txt'), join(val, 'classes.txt'));
  for (const n of ['fmnist_00006', 'fmnist_00007']) {
    cpSync(join(VOC_SAMPLE, 'JPEGImages', `${n}.jpg`), join(val, 'images', `${n}.jpg`));
    cpSync(join(VOC_SAMPLE, 'SegmentationClass', `${n}.png`), join(val, 'masks', `${n}.png`));
  }
  for (const [name, { valFraction, ...cfg }] of runs) {
    const config = join(root, `${name}.json`);
    writeFileSync(config, JSON.stringify({ task: 'segmentation', ...cfg, data: { source: VOC_SAMPLE, imageSize: 32, valFraction }, train: { steps: 3, batchSize: 3, seed: 1 } }));
    const out = join(root, name);
    const t = graft('train', '--config', config, '--output', out);
    assert.equal(t.status, 0, t.err + t.out);
    const nVal = valFraction ? 2 : 0;
    assert.match(t.out, new RegExp(`voc layout · ${6 - nVal} training / ${nVal} validation / 2 test pairs \\(test: the layout's validation split\\), 11 classes`));
    if (nVal) {
      assert.match(t.out, /kept the best validation checkpoint: epoch \d+ of \d+ \(step \d+, validation mIoU \d+\.\d%\)/);
      assert.ok(!existsSync(join(out, 'best.safetensors')), 'the best checkpoint is the run\'s model now');
    }
    assert.match(t.out, /test mIoU \d+\.\d\d%, pixel accuracy/);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { summary: { mIoU: number; trainablePercent: number }; metrics: { perClass: unknown[] } };
    assert.equal(report.metrics.perClass.length, 11);
    assert.ok(report.summary.trainablePercent > 0 && report.summary.trainablePercent < 100);
    assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /mIoU/);
    const e = graft('eval', out, '--data', val);
    assert.equal(e.status, 0, e.err + e.out);
    const ev = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8')) as { pairs: number; metrics: { mIoU: number } };
    assert.equal(ev.pairs, 2);
    assert.equal(ev.metrics.mIoU, report.summary.mIoU, `${name}: the reloaded run scores what the trained one scored`);
    const p = graft('predict', out, join(val, 'images'), '--output-dir', join(root, `${name}-pred`));
    assert.equal(p.status, 0, p.err + p.out);
    const pred = JSON.parse(p.out) as { predictions: { mask: string; overlay: string; pixels: Record<string, number> }[] };
    assert.equal(pred.predictions.length, 2);
    for (const r of pred.predictions) {
      const m = decodeIndexedPng(readFileSync(r.mask))!;
      assert.equal(m.width, 32);
      assert.ok(m.indices.every((v) => v < 11));
      assert.equal(Object.values(r.pixels).reduce((a, b) => a + b, 0), 32 * 32);
      assert.ok(existsSync(r.overlay));
      assert.equal((await sharp(r.overlay).metadata()).width, 32);
    }
  }
  const ex = graft('export', join(root, 'vit-lora'), '--format', 'onnx', '--output', join(root, 'seg.onnx'));
  assert.equal(ex.status, 2, ex.err);
  assert.match(ex.err, /is a segmentation run; graft export writes classification models/);
  const bad = graft('train', '--task', 'segmentation', '--model', 'resnet18', '--data', VOC_SAMPLE, '--per-class', '2', '--output', join(root, 'bad'));
  assert.notEqual(bad.status, 0);
  assert.match(bad.err, /a segmentation set is split by its own layout/);
  const cls = graft('train', '--seg-head', 'linear', '--model', 'resnet18', '--data', VOC_SAMPLE, '--per-class', '2', '--output', join(root, 'bad2'));
  assert.notEqual(cls.status, 0);
  assert.match(cls.err, /add --task segmentation/);
});
