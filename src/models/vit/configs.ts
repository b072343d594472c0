// Configurations of the ViT family as data, with the field names of the libraries whose
// checkpoints they load (timm's VisionTransformer kwargs, transformers' Dinov2Config /
// DINOv3ViTConfig in camelCase). Sizes from timm's model registrations, torchvision's
// vit_b_16…, the facebook/dinov2-* Hub configs and transformers' convert_dinov3_vit_to_hf.py.
import { IMAGENET_MEAN, IMAGENET_STD, type PreprocessConfig } from '../model.js';
import type { MlpActivation } from '../../nn/mlp.js';

/** timm VisionTransformer (also the layout torchvision checkpoints are renamed into). */
export interface TimmVitConfig {
  imageSize: [number, number];
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  mlpRatio: number;
  qkvBias: boolean;
  /** LayerScale init (timm init_values); null: no LayerScale (no ls1/ls2 keys). */
  initValues: number | null;
  /** 'token': the CLS token; 'avg': mean of the patch tokens. */
  globalPool: 'token' | 'avg';
  /** LayerNorm after pooling (fc_norm) instead of on the tokens (norm); null: timm's rule, on for 'avg'. */
  fcNorm: boolean | null;
  normEps: number;
}

/** How DINO heads pool: the CLS token, the mean of the patch tokens, or both concatenated (transformers' classifier input). */
export type TokenPool = 'cls' | 'mean' | 'cls+mean';

/** transformers Dinov2Config / Dinov2WithRegistersConfig. */
export interface Dinov2Config {
  imageSize: [number, number];
  patchSize: number;
  numChannels: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  mlpRatio: number;
  qkvBias: boolean;
  layerNormEps: number;
  layerscaleValue: number;
  useSwigluFfn: boolean;
  useMaskToken: boolean;
  /** 0: Dinov2Model; > 0: Dinov2WithRegistersModel. */
  numRegisterTokens: number;
  hiddenAct: MlpActivation;
  pool: TokenPool;
}

/** transformers DINOv3ViTConfig. */
export interface Dinov3Config {
  imageSize: [number, number];
  patchSize: number;
  numChannels: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  hiddenAct: MlpActivation;
  layerNormEps: number;
  ropeTheta: number;
  queryBias: boolean;
  keyBias: boolean;
  valueBias: boolean;
  projBias: boolean;
  mlpBias: boolean;
  layerscaleValue: number;
  useGatedMlp: boolean;
  numRegisterTokens: number;
  /** Training-time RoPE coordinate augmentation (applied only in train mode). */
  posEmbedShift: number | null;
  posEmbedJitter: number | null;
  posEmbedRescale: number | null;
  pool: TokenPool;
}

export interface VitEntry<C> {
  config: C;
  preprocess: PreprocessConfig;
}

const INCEPTION_MEAN: [number, number, number] = [0.5, 0.5, 0.5];
const pre = (size: number, mean: [number, number, number], std: [number, number, number], interpolation: 'bilinear' | 'bicubic', cropPct: number): PreprocessConfig =>
  ({ inputSize: [3, size, size], mean, std, interpolation, cropPct });

const timmBase: TimmVitConfig = {
  imageSize: [224, 224], patchSize: 16, inChans: 3, embedDim: 768, depth: 12, numHeads: 12, mlpRatio: 4,
  qkvBias: true, initValues: null, globalPool: 'token', fcNorm: null, normEps: 1e-6,
};
const timm = (c: Partial<TimmVitConfig>, preprocess: PreprocessConfig): VitEntry<TimmVitConfig> => ({ config: { ...timmBase, ...c }, preprocess });
// augreg ImageNet-21k → 1k weights normalise with mean = std = 0.5; DeiT with ImageNet statistics.
const AUGREG = pre(224, INCEPTION_MEAN, INCEPTION_MEAN, 'bicubic', 0.9);
const DEIT = pre(224, IMAGENET_MEAN, IMAGENET_STD, 'bicubic', 0.875);
// torchvision ViT_*_Weights.IMAGENET1K_V1: resize 256 (bilinear), centre crop 224.
const TORCHVISION = pre(224, IMAGENET_MEAN, IMAGENET_STD, 'bilinear', 224 / 256);

export const TIMM_VIT_MODELS: Record<string, VitEntry<TimmVitConfig>> = {
  vit_small_patch16_224: timm({ embedDim: 384, numHeads: 6 }, AUGREG),
  vit_base_patch16_224: timm({}, AUGREG),
  vit_large_patch16_224: timm({ embedDim: 1024, depth: 24, numHeads: 16 }, AUGREG),
  deit_small_patch16_224: timm({ embedDim: 384, numHeads: 6 }, DEIT),
  deit_base_patch16_224: timm({}, DEIT),
};

/** torchvision's vit_* architectures, built with timm names (their checkpoints are renamed on load). */
export const TORCHVISION_VIT_MODELS: Record<string, VitEntry<TimmVitConfig>> = {
  vit_b_16: timm({}, TORCHVISION),
  vit_b_32: timm({ patchSize: 32 }, TORCHVISION),
  vit_l_16: timm({ embedDim: 1024, depth: 24, numHeads: 16 }, TORCHVISION),
  vit_l_32: timm({ embedDim: 1024, depth: 24, numHeads: 16, patchSize: 32 }, TORCHVISION),
};

// facebook/dinov2-*: image_size 518 (a 37×37 position grid), patch 14; the image processor
// resizes the shortest edge to 256 (bicubic) and crops 224.
const dinov2Base: Dinov2Config = {
  imageSize: [518, 518], patchSize: 14, numChannels: 3, hiddenSize: 768, numHiddenLayers: 12, numAttentionHeads: 12, mlpRatio: 4,
  qkvBias: true, layerNormEps: 1e-6, layerscaleValue: 1, useSwigluFfn: false, useMaskToken: true, numRegisterTokens: 0, hiddenAct: 'gelu', pool: 'cls+mean',
};
const DINO_PRE = pre(224, IMAGENET_MEAN, IMAGENET_STD, 'bicubic', 224 / 256);
const dinov2 = (c: Partial<Dinov2Config>): VitEntry<Dinov2Config> => ({ config: { ...dinov2Base, ...c }, preprocess: DINO_PRE });
const DINOV2_SIZES: Record<string, Partial<Dinov2Config>> = {
  small: { hiddenSize: 384, numAttentionHeads: 6 },
  base: {},
  large: { hiddenSize: 1024, numHiddenLayers: 24, numAttentionHeads: 16 },
  giant: { hiddenSize: 1536, numHiddenLayers: 40, numAttentionHeads: 24, useSwigluFfn: true },
};

export const DINOV2_MODELS: Record<string, VitEntry<Dinov2Config>> = Object.fromEntries(
  Object.entries(DINOV2_SIZES).flatMap(([size, c]) => [
    [`dinov2_${size}`, dinov2(c)],
    [`dinov2_${size}_reg`, dinov2({ ...c, numRegisterTokens: 4 })],
  ]),
);

// facebook/dinov3-*-pretrain-lvd1689m; the image processor resizes to 224×224 (bilinear), no crop.
const dinov3Base: Dinov3Config = {
  imageSize: [224, 224], patchSize: 16, numChannels: 3, hiddenSize: 384, intermediateSize: 1536, numHiddenLayers: 12, numAttentionHeads: 6,
  hiddenAct: 'gelu', layerNormEps: 1e-5, ropeTheta: 100, queryBias: true, keyBias: false, valueBias: true, projBias: true, mlpBias: true,
  layerscaleValue: 1, useGatedMlp: false, numRegisterTokens: 4, posEmbedShift: null, posEmbedJitter: null, posEmbedRescale: 2, pool: 'cls+mean',
};
const dinov3 = (c: Partial<Dinov3Config>): VitEntry<Dinov3Config> => ({ config: { ...dinov3Base, ...c }, preprocess: pre(224, IMAGENET_MEAN, IMAGENET_STD, 'bilinear', 1) });

export const DINOV3_MODELS: Record<string, VitEntry<Dinov3Config>> = {
  dinov3_vits16: dinov3({}),
  dinov3_vits16plus: dinov3({ useGatedMlp: true, hiddenAct: 'silu' }),
  dinov3_vitb16: dinov3({ hiddenSize: 768, intermediateSize: 3072, numAttentionHeads: 12 }),
  dinov3_vitl16: dinov3({ hiddenSize: 1024, intermediateSize: 4096, numHiddenLayers: 24, numAttentionHeads: 16 }),
  dinov3_vith16plus: dinov3({ hiddenSize: 1280, intermediateSize: 5120, numHiddenLayers: 32, numAttentionHeads: 20, useGatedMlp: true, hiddenAct: 'silu' }),
  // 6.7 billion parameters: SwiGLU with ffn ratio 3, whose hidden width is 2/3 of 3 × 4096 (as
  // S+ and H+ give 2/3 of 6 × width), and no query/key/value bias (convert_dinov3_vit_to_hf.py).
  dinov3_vit7b16: dinov3({ hiddenSize: 4096, intermediateSize: 8192, numHiddenLayers: 40, numAttentionHeads: 32, useGatedMlp: true, hiddenAct: 'silu', queryBias: false, valueBias: false }),
};

/**
 * A named configuration with `overrides` applied: unknown fields and wrong types are errors that
 * list the valid fields. `imageSize` may be given as one number (square).
 */
export function applyOverrides<C extends { imageSize: [number, number] }>(model: string, base: C, overrides: Record<string, unknown> = {}, imageSize?: number | [number, number]): C {
  const out: Record<string, unknown> = { ...base };
  const fields = Object.keys(base);
  for (const [key, value] of Object.entries(overrides)) {
    if (!(key in base)) throw new Error(`${model}: unknown config field '${key}'. Fields: ${fields.join(', ')}`);
    out[key] = key === 'imageSize' ? toPair(model, value) : checked(model, key, (base as Record<string, unknown>)[key], value);
  }
  if (imageSize !== undefined) out['imageSize'] = toPair(model, imageSize);
  return out as C;
}

function toPair(model: string, v: unknown): [number, number] {
  if (typeof v === 'number' && v > 0) return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((d) => typeof d === 'number' && d > 0)) return [v[0], v[1]];
  throw new Error(`${model}: imageSize must be a positive number or [height, width]; got ${JSON.stringify(v)}`);
}

// Fields that may be null (and what they hold otherwise), and string fields with fixed values.
const NULLABLE: Record<string, 'number' | 'boolean'> = { initValues: 'number', fcNorm: 'boolean', posEmbedShift: 'number', posEmbedJitter: 'number', posEmbedRescale: 'number' };
const CHOICES: Record<string, readonly string[]> = {
  globalPool: ['token', 'avg'],
  pool: ['cls', 'mean', 'cls+mean'],
  hiddenAct: ['gelu', 'gelu_tanh', 'silu'],
};

function checked(model: string, key: string, base: unknown, value: unknown): unknown {
  const kind = NULLABLE[key] ?? typeof base;
  const choices = CHOICES[key];
  const ok = (value === null && key in NULLABLE) || (typeof value === kind && (!choices || choices.includes(value as string)));
  if (ok) return value;
  const want = choices ? `one of ${choices.map((c) => `'${c}'`).join(', ')}` : `a ${kind}${key in NULLABLE ? ' or null' : ''}`;
  throw new Error(`${model}: config field '${key}' must be ${want}; got ${JSON.stringify(value)}`);
}
