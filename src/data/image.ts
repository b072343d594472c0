// Decoding and geometric transforms on 8-bit RGB images with sharp (libvips): every input
// (JPEG, PNG, WebP, grayscale, RGBA, 16-bit, EXIF-rotated) becomes upright 8-bit RGB.
import sharp from 'sharp';
import type { KernelEnum, Sharp } from 'sharp';

/** Interleaved 8-bit RGB, row-major (H, W, 3). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
  constructor(readonly file: string, readonly reason: string) {
    super(`cannot decode image ${file}: ${reason}`);
  }
}

async function toRgb(pipeline: Sharp): Promise<RgbImage> {
  const { data, info } = await pipeline.toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}

/** Decodes a file (or encoded bytes) to upright RGB; transparent pixels are composited on black as PIL's convert('RGB') does. */
export async function decodeImage(file: string | Buffer, name = typeof file === 'string' ? file : '<buffer>'): Promise<RgbImage> {
  try {
    // rotate() with no angle applies the EXIF orientation.
    return await toRgb(sharp(file, { failOn: 'error' }).rotate().flatten({ background: '#000000' }));
  } catch (e) {
    throw new ImageDecodeError(name, (e as Error).message);
  }
}

/** Wraps raw grayscale or RGB bytes (e.g. an IDX image) as RGB. */
export function rawToRgb(data: Uint8Array, width: number, height: number, channels: 1 | 3): RgbImage {
  if (channels === 3) return { data, width, height };
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = data[i]!;
  return { data: rgb, width, height };
}

export type ResizeKernel = 'bilinear' | 'bicubic' | 'nearest' | 'lanczos3';
const KERNELS: Record<ResizeKernel, keyof KernelEnum> = { bilinear: 'linear', bicubic: 'cubic', nearest: 'nearest', lanczos3: 'lanczos3' };

export interface GeometryOps {
  /** Crop (left, top, width, height) before resizing. */
  crop?: { left: number; top: number; width: number; height: number };
  resize?: { width: number; height: number; kernel: ResizeKernel };
  /** Crop (left, top, width, height) of the resized image. */
  cropAfterResize?: { left: number; top: number; width: number; height: number };
  flip?: boolean;
  /** Degrees, counter-clockwise as torchvision's rotate; corners filled with black. */
  rotate?: number;
}

/** Applies crop → resize → crop after resize → flip → rotate (keeping the size) in one sharp pipeline. */
export async function transformImage(img: RgbImage, ops: GeometryOps): Promise<RgbImage> {
  let p = sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
  if (ops.crop) p = p.extract(ops.crop);
  if (ops.resize) p = p.resize(ops.resize.width, ops.resize.height, { kernel: KERNELS[ops.resize.kernel], fit: 'fill' });
  // sharp runs an extract called after resize on the resized image.
  if (ops.cropAfterResize) p = p.extract(ops.cropAfterResize);
  if (ops.flip) p = p.flop();
  let out = await toRgb(p);
  if (ops.rotate) {
    const rotated = await toRgb(sharp(out.data, { raw: { width: out.width, height: out.height, channels: 3 } }).rotate(-ops.rotate, { background: '#000000' }));
    // sharp grows the canvas to hold the rotated image; cut the centre back to the original size.
    const left = Math.floor((rotated.width - out.width) / 2);
    const top = Math.floor((rotated.height - out.height) / 2);
    out = await toRgb(sharp(rotated.data, { raw: { width: rotated.width, height: rotated.height, channels: 3 } }).extract({ left, top, width: out.width, height: out.height }));
  }
  return out;
}
