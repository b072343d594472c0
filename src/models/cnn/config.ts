// A row of a torchvision family's config table (ConfigEntry: its architecture as data and the
// preprocessing of its DEFAULT weights), how createModel's options apply to it, and the one call
// that turns a table into registry entries (registerFamily).
import { IMAGENET_MEAN, IMAGENET_STD, type CreateModelOptions, type PreprocessConfig, type VisionModel } from '../model.js';
import { withInputSize } from '../../data/preprocess.js';
import { registerModel } from '../registry.js';

/** One named configuration of a family's table (RESNET_MODELS['resnet18']); registerFamily makes each a registry ModelEntry. */
export interface ConfigEntry<C> {
  config: C;
  preprocess: PreprocessConfig;
}

/**
 * The evaluation transform of torchvision's DEFAULT weights (transforms/_presets.py
 * ImageClassification): resize the shorter side to `resize`, centre-crop `crop`, ImageNet
 * mean/std; cropPct = crop / resize.
 */
export function torchvisionPreprocess(resize: number, interpolation: 'bilinear' | 'bicubic' = 'bilinear', crop = 224): PreprocessConfig {
  return { inputSize: [3, crop, crop], mean: IMAGENET_MEAN, std: IMAGENET_STD, interpolation, cropPct: crop / resize };
}

/** The config with `overrides` applied; an unknown field or a value of another type is an error naming the fields. */
export function withOverrides<C extends object>(model: string, base: C, overrides: Record<string, unknown> = {}): C {
  const out = { ...base } as Record<string, unknown>;
  const fields = Object.keys(base);
  for (const [key, value] of Object.entries(overrides)) {
    if (!(key in base)) throw new Error(`${model}: unknown config field '${key}'. Fields: ${fields.join(', ')}`);
    const was = (base as Record<string, unknown>)[key];
    const sameKind = Array.isArray(was) ? Array.isArray(value) : was === null || value === null || typeof value === typeof was;
    if (!sameKind) throw new Error(`${model}: config field '${key}' must be ${Array.isArray(was) ? 'an array' : `a ${typeof was}`} like ${JSON.stringify(was)}; got ${JSON.stringify(value)}`);
    out[key] = value;
  }
  return out as C;
}

/** The entry's preprocessing (or createModel's), with the input size replaced when createModel was given one. */
export function preprocessFor(entry: ConfigEntry<unknown>, opts: CreateModelOptions): PreprocessConfig {
  const pre = opts.preprocess ?? entry.preprocess;
  if (opts.imageSize === undefined) return pre;
  const [h, w] = typeof opts.imageSize === 'number' ? [opts.imageSize, opts.imageSize] : opts.imageSize;
  return withInputSize(pre, [h, w]);
}

/** Which config fields createModel's dropRate / dropPathRate set (torchvision's defaults otherwise). */
export interface RateFields<C> {
  dropRate?: keyof C;
  dropPathRate?: keyof C;
}

/** Registers every entry of a family: overrides, then the rate options, then the model's constructor. */
export function registerFamily<C extends object>(family: string, models: Record<string, ConfigEntry<C>>, rates: RateFields<C>,
  create: (config: C, numClasses: number, preprocess: PreprocessConfig) => VisionModel): void {
  for (const [name, entry] of Object.entries(models)) {
    registerModel(name, {
      family,
      create: (opts) => {
        const config = { ...withOverrides(name, entry.config, opts.overrides) } as Record<string, unknown>;
        if (opts.dropRate !== undefined && rates.dropRate) config[rates.dropRate as string] = opts.dropRate;
        if (opts.dropPathRate !== undefined && rates.dropPathRate) config[rates.dropPathRate as string] = opts.dropPathRate;
        return create(config as C, opts.numClasses ?? 1000, preprocessFor(entry, opts));
      },
    });
  }
}
