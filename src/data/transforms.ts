// Preprocessing (the model's own resize / crop / normalise) and training augmentation
// (random resized crop, flip, colour jitter, rotation, Gaussian noise), from RGB bytes to a
// normalised float32 (3, H, W) image. Randomness comes from the caller's seeded generator.
import type { Generator } from '../tensor/random.js';
import type { PreprocessConfig } from './preprocess.js';
import { transformImage, type GeometryOps, type RgbImage } from './image.js';

export interface AugmentConfig {
  /** Random resized crop area range and aspect range (torchvision's defaults [0.08, 1], [3/4, 4/3]); false to disable. */
  randomResizedCrop?: { scale: [number, number]; ratio: [number, number] } | false;
  hflip?: number;
  colorJitter?: { brightness: number; contrast: number; saturation: number };
  /** Maximum rotation in degrees (uniform in ±). */
  rotation?: number;
  /** Standard deviation of Gaussian noise on [0, 1] pixel values. */
  gaussianNoise?: number;
}

export const DEFAULT_AUGMENT: AugmentConfig = { randomResizedCrop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] }, hflip: 0.5 };

/**
 * The evaluation transform's geometry for an image of width × height: with `pre.resize` (from a
 * Hugging Face image processor) resize as it says, then centre-crop (H, W) at offsets
 * floor((resized − crop) / 2), in two steps as transformers does; an image the resize leaves
 * smaller than the crop is scaled up to cover it (transformers pads it with zeros). Without it,
 * timm's and torchvision's transform: shorter side → min(H, W) / cropPct, then the centre crop,
 * cut in source pixels so resize and crop are one resampling.
 */
export function evalGeometry(img: { width: number; height: number }, pre: PreprocessConfig): GeometryOps {
  const [, h, w] = pre.inputSize;
  if (pre.resize) {
    let rw = img.width;
    let rh = img.height;
    if (pre.resize.mode === 'fixed') [rw, rh] = [pre.resize.width, pre.resize.height];
    else if (pre.resize.mode === 'shortest-edge') {
      const s = pre.resize.size;
      if (img.width <= img.height) [rw, rh] = [s, Math.floor((s * img.height) / img.width)];
      else [rw, rh] = [Math.floor((s * img.width) / img.height), s];
    }
    if (rw < w || rh < h) {
      const up = Math.max(w / rw, h / rh);
      [rw, rh] = [Math.max(w, Math.round(rw * up)), Math.max(h, Math.round(rh * up))];
    }
    const ops: GeometryOps = {};
    if (rw !== img.width || rh !== img.height) ops.resize = { width: rw, height: rh, kernel: pre.interpolation };
    if (rw !== w || rh !== h) ops.cropAfterResize = { left: Math.floor((rw - w) / 2), top: Math.floor((rh - h) / 2), width: w, height: h };
    return ops;
  }
  const scale = Math.min(h, w) / pre.cropPct / Math.min(img.height, img.width);
  const rw = Math.max(w, Math.round(img.width * scale));
  const rh = Math.max(h, Math.round(img.height * scale));
  // Crop in source pixels so resize and crop are one resampling.
  const cw = (w / rw) * img.width;
  const ch = (h / rh) * img.height;
  const left = Math.round((img.width - cw) / 2);
  const top = Math.round((img.height - ch) / 2);
  return {
    crop: { left, top, width: Math.max(1, Math.min(img.width - left, Math.round(cw))), height: Math.max(1, Math.min(img.height - top, Math.round(ch))) },
    resize: { width: w, height: h, kernel: pre.interpolation },
  };
}

/** torchvision's RandomResizedCrop.get_params: 10 tries at a random area and aspect, then a centre crop. */
function randomCrop(img: RgbImage, scale: [number, number], ratio: [number, number], gen: Generator) {
  const area = img.width * img.height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let i = 0; i < 10; i++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * gen.uniform());
    const aspect = Math.exp(logRatio[0] + (logRatio[1] - logRatio[0]) * gen.uniform());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= img.width && h <= img.height) {
      return { left: gen.int(img.width - w + 1), top: gen.int(img.height - h + 1), width: w, height: h };
    }
  }
  const s = Math.min(img.width, img.height);
  return { left: Math.floor((img.width - s) / 2), top: Math.floor((img.height - s) / 2), width: s, height: s };
}

/** RGB bytes → normalised float (3, H, W) written into `out` at `offset`. */
export async function prepareImage(img: RgbImage, pre: PreprocessConfig, augment: AugmentConfig | null, gen: Generator, out: Float32Array, offset: number): Promise<void> {
  const [, h, w] = pre.inputSize;
  let ops: GeometryOps;
  if (augment?.randomResizedCrop) {
    ops = { crop: randomCrop(img, augment.randomResizedCrop.scale, augment.randomResizedCrop.ratio, gen), resize: { width: w, height: h, kernel: pre.interpolation } };
  } else ops = evalGeometry(img, pre);
  if (augment?.hflip && gen.uniform() < augment.hflip) ops.flip = true;
  if (augment?.rotation) ops.rotate = (2 * gen.uniform() - 1) * augment.rotation;
  const res = await transformImage(img, ops);
  let jitter: JitterFactors | null = null;
  if (augment?.colorJitter) {
    const j = augment.colorJitter;
    jitter = { brightness: 1 + j.brightness * (2 * gen.uniform() - 1), contrast: 1 + j.contrast * (2 * gen.uniform() - 1), saturation: 1 + j.saturation * (2 * gen.uniform() - 1) };
  }
  writeNormalised(res, pre, jitter, augment?.gaussianNoise ?? 0, gen, out, offset);
}

/** Colour jitter factors: brightness, contrast and saturation multipliers (1 = unchanged). */
export interface JitterFactors {
  brightness: number;
  contrast: number;
  saturation: number;
}

/**
 * RGB bytes of the model's input size → normalised float (3, H, W) at `offset`, with colour
 * jitter (brightness, then contrast about the mean gray, then saturation, clipped to [0, 1]) and
 * Gaussian noise of std `noise` on [0, 1] values (drawn from `gen`, not clipped) applied first.
 */
export function writeNormalised(res: RgbImage, pre: PreprocessConfig, jitterFactors: JitterFactors | null, noise: number, gen: Generator, out: Float32Array, offset: number): void {
  const plane = res.width * res.height;
  const brightness = jitterFactors?.brightness ?? 1;
  const contrast = jitterFactors?.contrast ?? 1;
  const saturation = jitterFactors?.saturation ?? 1;
  const jitter = brightness !== 1 || contrast !== 1 || saturation !== 1;
  let meanGray = 0;
  if (jitter) {
    for (let i = 0; i < plane; i++) meanGray += 0.299 * res.data[3 * i]! + 0.587 * res.data[3 * i + 1]! + 0.114 * res.data[3 * i + 2]!;
    meanGray = (meanGray / plane / 255) * brightness;
  }
  // Colour jitter and noise work on [0, 1] values; rescaleFactor (default 1/255) then sets the scale mean/std see.
  const rescale = (pre.rescaleFactor ?? 1 / 255) * 255;
  if (!jitter && !noise) {
    // Each byte's normalised value per channel, computed as the loop below computes it.
    const lut = [0, 1, 2].map((c) => Float32Array.from({ length: 256 }, (_, v) => ((v / 255) * rescale - pre.mean[c]!) / pre.std[c]!));
    const [l0, l1, l2] = lut as [Float32Array, Float32Array, Float32Array];
    const d = res.data;
    for (let i = 0, j = 0; i < plane; i++, j += 3) {
      out[offset + i] = l0[d[j]!]!;
      out[offset + plane + i] = l1[d[j + 1]!]!;
      out[offset + 2 * plane + i] = l2[d[j + 2]!]!;
    }
    return;
  }
  for (let i = 0; i < plane; i++) {
    let r = res.data[3 * i]! / 255;
    let g = res.data[3 * i + 1]! / 255;
    let b = res.data[3 * i + 2]! / 255;
    if (jitter) {
      r *= brightness;
      g *= brightness;
      b *= brightness;
      r = meanGray + contrast * (r - meanGray);
      g = meanGray + contrast * (g - meanGray);
      b = meanGray + contrast * (b - meanGray);
      const gray = 0.299 * r + 0.587 * g + 0.114 * b;
      r = clamp01(gray + saturation * (r - gray));
      g = clamp01(gray + saturation * (g - gray));
      b = clamp01(gray + saturation * (b - gray));
    }
    if (noise) {
      r += noise * gen.normal();
      g += noise * gen.normal();
      b += noise * gen.normal();
    }
    out[offset + i] = (r * rescale - pre.mean[0]) / pre.std[0];
    out[offset + plane + i] = (g * rescale - pre.mean[1]) / pre.std[1];
    out[offset + 2 * plane + i] = (b * rescale - pre.mean[2]) / pre.std[2];
  }
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
