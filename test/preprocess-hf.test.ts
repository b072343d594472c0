// Preprocessing from a checkpoint's preprocessor_config.json (transformers' image processors):
// parsing the Hub's files of facebook/dinov2-small and google/vit-base-patch16-224, the resize /
// crop / normalise an image then goes through against hand-computed values, errors naming the
// field, and buildModel taking the file from a checkpoint folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preprocessFromHf, readPreprocessorConfig, withInputSize, IMAGENET_MEAN, IMAGENET_STD, type PreprocessConfig } from '../src/data/preprocess.js';
import { evalGeometry, prepareImage } from '../src/data/transforms.js';
import type { RgbImage } from '../src/data/image.js';
import { Generator } from '../src/tensor/random.js';
import { createModel } from '../src/models/registry.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { buildModel } from '../src/models/build-model.js';
import '../src/backends/all.js';
import '../src/models/all.js';

// facebook/dinov2-small/preprocessor_config.json
const DINOV2_SMALL = {
  crop_size: { height: 224, width: 224 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.485, 0.456, 0.406],
  image_processor_type: 'BitImageProcessor',
  image_std: [0.229, 0.224, 0.225],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 256 },
};

// google/vit-base-patch16-224/preprocessor_config.json (its legacy feature-extractor form) and
// the same processor as transformers saves it today.
const VIT_BASE_LEGACY = {
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: 'ViTFeatureExtractor',
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 2,
  size: 224,
};
const VIT_BASE = {
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_processor_type: 'ViTImageProcessor',
  image_std: [0.5, 0.5, 0.5],
  resample: 2,
  rescale_factor: 0.00392156862745098,
  size: { height: 224, width: 224 },
};

// facebook/convnext-tiny-224
const CONVNEXT_TINY = {
  crop_pct: 0.875,
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: 'ConvNextFeatureExtractor',
  image_mean: [0.485, 0.456, 0.406],
  image_std: [0.229, 0.224, 0.225],
  resample: 3,
  size: 224,
};

/** An RGB image whose channels are functions of the pixel position. */
function image(width: number, height: number, f: (x: number, y: number) => [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(f(x, y), 3 * (y * width + x));
  }
  return { data, width, height };
}

async function prepared(img: RgbImage, pre: PreprocessConfig): Promise<Float32Array> {
  const [c, h, w] = pre.inputSize;
  const out = new Float32Array(c * h * w);
  await prepareImage(img, pre, null, new Generator(0), out, 0);
  return out;
}

const at = (out: Float32Array, pre: PreprocessConfig, c: number, y: number, x: number) => out[c * pre.inputSize[1] * pre.inputSize[2] + y * pre.inputSize[2] + x]!;

test("dinov2-small's BitImageProcessor: shortest edge 256 (bicubic), centre crop 224, rescale 1/255, ImageNet mean/std", () => {
  const pre = preprocessFromHf(DINOV2_SMALL);
  assert.deepEqual(pre.inputSize, [3, 224, 224]);
  assert.deepEqual(pre.resize, { mode: 'shortest-edge', size: 256 });
  assert.equal(pre.interpolation, 'bicubic');
  assert.equal(pre.cropPct, 0.875);
  assert.equal(pre.rescaleFactor, 0.00392156862745098);
  assert.deepEqual(pre.mean, IMAGENET_MEAN);
  assert.deepEqual(pre.std, IMAGENET_STD);
});

test("vit-base-patch16-224's ViTImageProcessor: 224×224 (bilinear), no crop, mean = std = 0.5; its legacy form reads the same", () => {
  for (const json of [VIT_BASE, VIT_BASE_LEGACY]) {
    const pre = preprocessFromHf(json);
    assert.deepEqual(pre.inputSize, [3, 224, 224]);
    assert.deepEqual(pre.resize, { mode: 'fixed', height: 224, width: 224 });
    assert.equal(pre.interpolation, 'bilinear');
    assert.deepEqual(pre.mean, [0.5, 0.5, 0.5]);
    assert.deepEqual(pre.std, [0.5, 0.5, 0.5]);
    assert.ok(Math.abs(pre.rescaleFactor! - 1 / 255) < 1e-15);
  }
});

test("ConvNext's crop_pct: shortest edge 224 → resize floor(224 / 0.875) = 256, crop 224; 384 and up: resize 384², no crop", () => {
  const pre = preprocessFromHf(CONVNEXT_TINY);
  assert.deepEqual(pre.resize, { mode: 'shortest-edge', size: 256 });
  assert.deepEqual(pre.inputSize, [3, 224, 224]);
  assert.equal(pre.interpolation, 'bicubic');
  const big = preprocessFromHf({ ...CONVNEXT_TINY, size: { shortest_edge: 384 } });
  assert.deepEqual(big.resize, { mode: 'fixed', height: 384, width: 384 });
  assert.deepEqual(big.inputSize, [3, 384, 384]);
});

test('DINOv3 processor, lanczos read as bicubic, and the switches: no rescale, no normalise', () => {
  const pre = preprocessFromHf({ image_processor_type: 'DINOv3ViTImageProcessorFast', do_resize: true, size: { height: 224, width: 224 }, resample: 1, do_rescale: false, do_normalize: false });
  assert.equal(pre.interpolation, 'bicubic');
  assert.equal(pre.rescaleFactor, 1);
  assert.deepEqual(pre.mean, [0, 0, 0]);
  assert.deepEqual(pre.std, [1, 1, 1]);
  assert.equal(preprocessFromHf({ ...VIT_BASE, resample: 0 }).interpolation, 'nearest');
});

test('the resize and crop geometry: shorter side to 256 with the longer side floored, crop offsets floored', () => {
  const pre = preprocessFromHf(DINOV2_SMALL);
  // 303 × 200 (W × H): H → 256, W → floor(256 · 303 / 200) = floor(387.84) = 387; crop at ((387 − 224) // 2, (256 − 224) // 2).
  assert.deepEqual(evalGeometry({ width: 303, height: 200 }, pre), {
    resize: { width: 387, height: 256, kernel: 'bicubic' },
    cropAfterResize: { left: 81, top: 16, width: 224, height: 224 },
  });
  // Portrait: W → 256, H → floor(256 · 500 / 300) = 426.
  assert.deepEqual(evalGeometry({ width: 300, height: 500 }, pre), {
    resize: { width: 256, height: 426, kernel: 'bicubic' },
    cropAfterResize: { left: 16, top: 101, width: 224, height: 224 },
  });
  // Already 256 on the short side: crop only.
  assert.deepEqual(evalGeometry({ width: 320, height: 256 }, pre), { cropAfterResize: { left: 48, top: 16, width: 224, height: 224 } });
  const vit = preprocessFromHf(VIT_BASE);
  assert.deepEqual(evalGeometry({ width: 640, height: 480 }, vit), { resize: { width: 224, height: 224, kernel: 'bilinear' } });
  assert.deepEqual(evalGeometry({ width: 224, height: 224 }, vit), {});
});

test('dinov2-small: a 320 × 256 image is cropped at (48, 16) and normalised, value for value', async () => {
  const pre = preprocessFromHf(DINOV2_SMALL);
  const f = (x: number, y: number): [number, number, number] => [x % 256, y, (3 * x + 5 * y) % 256];
  const out = await prepared(image(320, 256, f), pre);
  let worst = 0;
  for (let y = 0; y < 224; y++) {
    for (let x = 0; x < 224; x++) {
      const src = f(x + 48, y + 16);
      for (let c = 0; c < 3; c++) {
        const want = (src[c]! * 0.00392156862745098 - pre.mean[c]!) / pre.std[c]!;
        worst = Math.max(worst, Math.abs(at(out, pre, c, y, x) - want));
      }
    }
  }
  assert.ok(worst < 1e-5, `max difference ${worst}`);
});

test('dinov2-small: a 640 × 512 image is halved (bicubic keeps a linear ramp) and cropped at (48, 16)', async () => {
  const pre = preprocessFromHf(DINOV2_SMALL);
  // R rises 0.375 per column, G 0.45 per row; halving puts output pixel j at source 2j + 0.5.
  const out = await prepared(image(640, 512, (x, y) => [Math.round(0.375 * x), Math.round(0.45 * y), 77]), pre);
  let worst = 0;
  for (let y = 0; y < 224; y++) {
    for (let x = 0; x < 224; x++) {
      const want = [0.375 * (2 * (x + 48) + 0.5), 0.45 * (2 * (y + 16) + 0.5), 77];
      for (let c = 0; c < 3; c++) {
        const grey = at(out, pre, c, y, x) * pre.std[c]! / (1 / 255) + pre.mean[c]! * 255;
        worst = Math.max(worst, Math.abs(grey - want[c]!));
      }
    }
  }
  assert.ok(worst <= 1.01, `max difference ${worst} grey levels`);
});

test('vit-base-patch16-224: 224² passes through as (v / 255 − 0.5) / 0.5; a 448 × 300 flat image stays flat at 224²', async () => {
  const pre = preprocessFromHf(VIT_BASE);
  const f = (x: number, y: number): [number, number, number] => [x, y, 255 - x];
  const out = await prepared(image(224, 224, f), pre);
  for (const [x, y] of [[0, 0], [223, 0], [17, 200], [223, 223]] as const) {
    const src = f(x, y);
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(at(out, pre, c, y, x) - (src[c]! / 255 - 0.5) / 0.5) < 1e-6, `(${x}, ${y}) channel ${c}`);
  }
  const flat = await prepared(image(448, 300, () => [51, 102, 204]), pre);
  const want = [51, 102, 204].map((v) => (v / 255 - 0.5) / 0.5);
  for (let c = 0; c < 3; c++) {
    for (const i of [0, 1000, 224 * 224 - 1]) assert.ok(Math.abs(flat[c * 224 * 224 + i]! - want[c]!) < 1e-6);
  }
});

test('bad values: errors name the field and the value', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...VIT_BASE, resample: 4 }, /'resample' must be .*not box; got 4/],
    [{ ...VIT_BASE, resample: 'bicubic' }, /'resample'/],
    [{ ...VIT_BASE, size: { height: 224 } }, /'size' must be/],
    [{ ...VIT_BASE, size: -3 }, /'size' must be a positive integer; got -3/],
    [{ ...DINOV2_SMALL, size: { shortest_edge: 256, longest_edge: 1333 } }, /'size' must be .*longest_edge/],
    [{ ...VIT_BASE, image_mean: [0.5, 0.5] }, /'image_mean' must be 3 numbers/],
    [{ ...VIT_BASE, image_std: [0.5, 0, 0.5] }, /'image_std' must be 3 positive numbers/],
    [{ ...VIT_BASE, rescale_factor: 0 }, /'rescale_factor' must be a positive number; got 0/],
    [{ ...VIT_BASE, do_resize: 'yes' }, /'do_resize' must be true or false/],
    [{ ...DINOV2_SMALL, crop_size: 'big' }, /'crop_size' must be \{"height": H, "width": W\}/],
    [{ ...CONVNEXT_TINY, crop_pct: 1.5 }, /'crop_pct' must be at most 1/],
    [{ ...DINOV2_SMALL, do_center_crop: false }, /shortest edge and there is no centre crop/],
    [{ do_resize: true }, /'size' must be given when do_resize is true/],
    [{ image_processor_type: 'SomeProcessor', size: { height: 32, width: 32 } }, /'image_mean' must be given/],
  ];
  for (const [json, re] of cases) assert.throws(() => preprocessFromHf(json, 'x/preprocessor_config.json'), (e: unknown) => {
    assert.match((e as Error).message, /^x\/preprocessor_config\.json: /);
    assert.match((e as Error).message, re);
    return true;
  }, JSON.stringify(json));
  const dir = mkdtempSync(join(tmpdir(), 'graft-pre-'));
  writeFileSync(join(dir, 'preprocessor_config.json'), '{ "size": ');
  assert.throws(() => readPreprocessorConfig(join(dir, 'preprocessor_config.json')), /preprocessor_config\.json: not valid JSON/);
});

test('another input size scales the resize with the crop', () => {
  assert.deepEqual(withInputSize(preprocessFromHf(DINOV2_SMALL), [448, 448]).resize, { mode: 'shortest-edge', size: 512 });
  assert.deepEqual(withInputSize(preprocessFromHf(VIT_BASE), [384, 384]).resize, { mode: 'fixed', height: 384, width: 384 });
  const vit = createModel('vit_small_patch16_224', { overrides: { depth: 1, embedDim: 32, numHeads: 2 }, preprocess: preprocessFromHf(DINOV2_SMALL), imageSize: 448 });
  assert.deepEqual(vit.preprocess.inputSize, [3, 448, 448]);
  assert.deepEqual(vit.preprocess.resize, { mode: 'shortest-edge', size: 512 });
  vit.dispose();
});

test("buildModel takes a checkpoint folder's preprocessor_config.json; without one the family's default", async () => {
  const overrides = { widthMult: 0.5, invertedResidualSetting: [[1, 16, 1, 1], [6, 24, 2, 2]] };
  const source = createModel('mobilenet_v2', { overrides, numClasses: 10 });
  const dir = mkdtempSync(join(tmpdir(), 'graft-pre-model-'));
  saveSafetensors(join(dir, 'model.safetensors'), source.stateDict());
  const plain = await buildModel({ name: 'mobilenet_v2', weights: dir, overrides });
  assert.deepEqual(plain.preprocess, createModel('mobilenet_v2', { overrides }).preprocess);
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(DINOV2_SMALL));
  const model = await buildModel({ name: 'mobilenet_v2', weights: dir, overrides });
  assert.deepEqual(model.preprocess, preprocessFromHf(DINOV2_SMALL));
  const sized = await buildModel({ name: 'mobilenet_v2', weights: dir, overrides, imageSize: 112 });
  assert.deepEqual(sized.preprocess.inputSize, [3, 112, 112]);
  assert.deepEqual(sized.preprocess.resize, { mode: 'shortest-edge', size: 128 });
  // A file path is only the weights.
  const file = await buildModel({ name: 'mobilenet_v2', weights: join(dir, 'model.safetensors'), overrides });
  assert.equal(file.preprocess.resize, undefined);
  for (const m of [source, plain, model, sized, file]) m.dispose();
});
