// The preprocessing a model expects, and reading it from a Hugging Face checkpoint's
// preprocessor_config.json (the image processors of transformers).
import { readFileSync } from 'node:fs';

/**
 * How evaluation resizes an image before the centre crop to `inputSize`:
 * - `shortest-edge`: the shorter side to `size` and the longer side to
 *   floor(size · long / short), as transformers' get_resize_output_image_size does;
 * - `fixed`: to exactly height × width, not keeping the aspect ratio;
 * - `none`: no resize.
 * After it, the image is centre-cropped to (H, W) of `inputSize` at offsets
 * floor((resized − crop) / 2), as transformers' center_crop. Without this field the transform is
 * timm's and torchvision's: the shorter side to min(H, W) / cropPct, then the centre crop.
 */
export type ResizeSpec =
  | { mode: 'shortest-edge'; size: number }
  | { mode: 'fixed'; height: number; width: number }
  | { mode: 'none' };

/** Preprocessing a model expects, as timm's pretrained_cfg / HF preprocessor_config.json give it. */
export interface PreprocessConfig {
  inputSize: [number, number, number]; // (C, H, W)
  mean: [number, number, number];
  std: [number, number, number];
  interpolation: 'bilinear' | 'bicubic' | 'nearest';
  cropPct: number;
  /** The smallest input side the network accepts (InceptionV3: 75); absent: any. */
  minSize?: number;
  /** The resize before the centre crop; absent: shorter side to min(H, W) / cropPct. */
  resize?: ResizeSpec;
  /** Factor from 8-bit pixel values to the values mean/std apply to (default 1/255; 1 when HF's do_rescale is false). */
  rescaleFactor?: number;
}

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
/** transformers' IMAGENET_STANDARD_MEAN / _STD (ViTImageProcessor's defaults). */
export const IMAGENET_STANDARD: [number, number, number] = [0.5, 0.5, 0.5];
/** transformers' OPENAI_CLIP_MEAN / _STD (BitImageProcessor's and CLIPImageProcessor's defaults). */
export const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/**
 * The preprocessing for another input size (H, W): the resize scales with the crop, so the
 * share of the image the crop keeps stays the same.
 */
export function withInputSize(pre: PreprocessConfig, size: [number, number]): PreprocessConfig {
  const [, h0, w0] = pre.inputSize;
  const [h, w] = size;
  const out: PreprocessConfig = { ...pre, inputSize: [pre.inputSize[0], h, w] };
  if (pre.resize?.mode === 'shortest-edge') out.resize = { mode: 'shortest-edge', size: Math.round((pre.resize.size * Math.min(h, w)) / Math.min(h0, w0)) };
  else if (pre.resize?.mode === 'fixed') out.resize = { mode: 'fixed', height: Math.round((pre.resize.height * h) / h0), width: Math.round((pre.resize.width * w) / w0) };
  return out;
}

export class PreprocessorConfigError extends Error {
  override name = 'PreprocessorConfigError';
}

// PIL resampling codes (PILImageResampling) → graft's kernels.
const RESAMPLE: Record<number, PreprocessConfig['interpolation']> = { 0: 'nearest', 1: 'bicubic', 2: 'bilinear', 3: 'bicubic' };
const RESAMPLE_NAMES: Record<number, string> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming' };

// Processors whose integer `size` means the shortest edge (default_to_square=False), and their defaults.
const SHORTEST_EDGE_PROCESSORS = new Set(['BitImageProcessor', 'CLIPImageProcessor', 'ConvNextImageProcessor', 'ConvNextFeatureExtractor']);
const DEFAULTS: Record<string, { resample: number; mean: [number, number, number]; std: [number, number, number] }> = {
  ViTImageProcessor: { resample: 2, mean: IMAGENET_STANDARD, std: IMAGENET_STANDARD },
  ViTFeatureExtractor: { resample: 2, mean: IMAGENET_STANDARD, std: IMAGENET_STANDARD },
  BitImageProcessor: { resample: 3, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD },
  CLIPImageProcessor: { resample: 3, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD },
  ConvNextImageProcessor: { resample: 2, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  DINOv3ViTImageProcessor: { resample: 2, mean: IMAGENET_MEAN, std: IMAGENET_STD },
  DeiTImageProcessor: { resample: 3, mean: IMAGENET_MEAN, std: IMAGENET_STD },
};

/**
 * graft's PreprocessConfig from the JSON of a transformers image processor
 * (preprocessor_config.json): ViTImageProcessor, BitImageProcessor (DINOv2),
 * DINOv3ViTImageProcessor(Fast), ConvNextImageProcessor, CLIP and DeiT processors, and others
 * with the same fields. Read: do_resize, size ({shortest_edge}, {height, width} or a number),
 * resample, do_center_crop, crop_size, do_rescale, rescale_factor, do_normalize, image_mean,
 * image_std and ConvNext's crop_pct (shortest_edge < 384: resize the shorter side to
 * floor(shortest_edge / crop_pct), crop shortest_edge²; else resize to shortest_edge², no crop).
 * Fields a processor leaves out take that processor class's defaults where graft knows them.
 *
 * resample is a PIL code: 0 nearest, 2 bilinear, 3 bicubic; 1 (lanczos) is read as bicubic,
 * the closest kernel graft resizes with; 4 (box) and 5 (hamming) are errors. Resizing uses
 * libvips' kernels of those names, which agree with PIL's to about one grey level. `source` names
 * the file in errors, which name the field and the value.
 */
export function preprocessFromHf(json: unknown, source = 'preprocessor_config.json'): PreprocessConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new PreprocessorConfigError(`${source}: expected a JSON object, got ${JSON.stringify(json)}`);
  const c = json as Record<string, unknown>;
  const bad = (field: string, want: string): never => {
    throw new PreprocessorConfigError(`${source}: '${field}' must be ${want}; got ${JSON.stringify(c[field])}`);
  };
  const typeField = c['image_processor_type'] ?? c['feature_extractor_type'];
  const type = typeof typeField === 'string' ? typeField.replace(/Fast$/, '') : '';
  const defaults = DEFAULTS[type];
  const bool = (field: string, dflt: boolean): boolean => {
    const v = c[field];
    if (v === undefined || v === null) return dflt;
    return typeof v === 'boolean' ? v : bad(field, 'true or false');
  };
  const positive = (field: string, v: unknown, integer: boolean): number =>
    typeof v === 'number' && Number.isFinite(v) && v > 0 && (!integer || Number.isInteger(v)) ? v : bad(field, integer ? 'a positive integer' : 'a positive number');
  const triple = (field: string, dflt: [number, number, number] | undefined, positiveOnly: boolean): [number, number, number] => {
    let v = c[field];
    if (v === undefined || v === null) return dflt ?? bad(field, `given (${type || 'this processor'} has no default graft knows)`);
    if (typeof v === 'number') v = [v, v, v];
    const ok = Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positiveOnly || x > 0));
    return ok ? (v as [number, number, number]) : bad(field, `3 ${positiveOnly ? 'positive ' : ''}numbers (one per RGB channel)`);
  };
  /** {height, width} or a number (a square); for `size`, {shortest_edge} too. */
  const dims = (field: string, allowShortest: boolean): { height: number; width: number } | { shortestEdge: number } => {
    const v = c[field];
    if (typeof v === 'number') {
      const n = positive(field, v, true);
      return allowShortest && SHORTEST_EDGE_PROCESSORS.has(type) ? { shortestEdge: n } : { height: n, width: n };
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(field, allowShortest ? '{"shortest_edge": N} or {"height": H, "width": W}' : '{"height": H, "width": W}');
    const o = v as Record<string, unknown>;
    const isInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x > 0;
    if (allowShortest && 'shortest_edge' in o) {
      if ('longest_edge' in o && o['longest_edge'] !== null) return bad(field, 'without longest_edge (graft resizes by the shortest edge alone)');
      return isInt(o['shortest_edge']) ? { shortestEdge: o['shortest_edge'] as number } : bad(field, 'a positive integer shortest_edge');
    }
    if (isInt(o['height']) && isInt(o['width'])) return { height: o['height'] as number, width: o['width'] as number };
    return bad(field, allowShortest ? '{"shortest_edge": N} or {"height": H, "width": W} with positive integers' : '{"height": H, "width": W} with positive integers');
  };

  const resampleCode = c['resample'] ?? defaults?.resample ?? 2;
  if (typeof resampleCode !== 'number' || !(resampleCode in RESAMPLE)) {
    const name = typeof resampleCode === 'number' ? RESAMPLE_NAMES[resampleCode] : undefined;
    bad('resample', `a PIL resampling code graft supports: 0 (nearest), 1 (lanczos, read as bicubic), 2 (bilinear) or 3 (bicubic)${name ? `, not ${name}` : ''}`);
  }
  const interpolation = RESAMPLE[resampleCode as number]!;

  let resize: ResizeSpec = { mode: 'none' };
  let crop: { height: number; width: number } | null = null;
  if (bool('do_resize', true)) {
    if (c['size'] === undefined || c['size'] === null) bad('size', 'given when do_resize is true');
    const size = dims('size', true);
    const convnext = type === 'ConvNextImageProcessor' || type === 'ConvNextFeatureExtractor';
    if (convnext && 'shortestEdge' in size) {
      // transformers ConvNextImageProcessor.resize: crop_pct applies below 384.
      const cropPct = c['crop_pct'] === undefined || c['crop_pct'] === null ? 224 / 256 : positive('crop_pct', c['crop_pct'], false);
      if (cropPct > 1) bad('crop_pct', 'at most 1');
      const s = size.shortestEdge;
      if (s < 384) {
        resize = { mode: 'shortest-edge', size: Math.floor(s / cropPct) };
        crop = { height: s, width: s };
      } else resize = { mode: 'fixed', height: s, width: s };
    } else if ('shortestEdge' in size) resize = { mode: 'shortest-edge', size: size.shortestEdge };
    else resize = { mode: 'fixed', height: size.height, width: size.width };
  }
  if (!crop && bool('do_center_crop', c['crop_size'] !== undefined && c['crop_size'] !== null)) {
    if (c['crop_size'] === undefined || c['crop_size'] === null) bad('crop_size', 'given when do_center_crop is true');
    crop = dims('crop_size', false) as { height: number; width: number };
  }
  let inputSize: [number, number, number];
  if (crop) inputSize = [3, crop.height, crop.width];
  else if (resize.mode === 'fixed') inputSize = [3, resize.height, resize.width];
  else {
    throw new PreprocessorConfigError(`${source}: ${resize.mode === 'none' ? "'do_resize' is false" : `'size' ${JSON.stringify(c['size'])} resizes by the shortest edge`} and there is no centre crop ('do_center_crop'/'crop_size'), ` +
      'so images would keep their own shapes; graft batches need one input size: give a crop_size with do_center_crop, or a size {"height", "width"}');
  }
  const short = resize.mode === 'shortest-edge' ? resize.size : resize.mode === 'fixed' ? Math.min(resize.height, resize.width) : Math.min(inputSize[1], inputSize[2]);
  const cropPct = Math.min(1, Math.min(inputSize[1], inputSize[2]) / short);

  const rescaleFactor = bool('do_rescale', true)
    ? c['rescale_factor'] === undefined || c['rescale_factor'] === null ? 1 / 255 : positive('rescale_factor', c['rescale_factor'], false)
    : 1;
  const normalize = bool('do_normalize', true);
  const mean = normalize ? triple('image_mean', defaults?.mean, false) : ([0, 0, 0] as [number, number, number]);
  const std = normalize ? triple('image_std', defaults?.std, true) : ([1, 1, 1] as [number, number, number]);
  return { inputSize, mean, std, interpolation, cropPct, resize, rescaleFactor };
}

/** preprocessFromHf of a preprocessor_config.json file; a JSON syntax error names the file. */
export function readPreprocessorConfig(path: string): PreprocessConfig {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PreprocessorConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return preprocessFromHf(json, path);
}
