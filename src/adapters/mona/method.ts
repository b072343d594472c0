// Mona as an adapter method (graft's peft_type MONA). It wraps blocks with residual taps (Swin,
// ViT/DeiT, DINOv2, DINOv3, ConvNeXt) and reads the run configuration's `mona` section.
import type { Module } from '../../nn/module.js';
import { isTappedBlock, type TappedBlock } from '../../nn/residual-taps.js';
import type { AdapterLayer } from '../layer.js';
import type { AdapterMethod } from '../method.js';
import { ALL_BLOCKS } from '../targets.js';
import { MONA_PEFT_TYPE, monaConfig, monaConfigFromRun, monaFromPeftJson, MonaOptionsSchema, monaToPeftJson, type MonaConfig } from './config.js';
import { MonaLayer } from './layer.js';

const MONA_TENSORS = ['project1.weight', 'project1.bias', 'project2.weight', 'project2.bias', 'norm.weight', 'norm.bias', 'gamma', 'gammax',
  ...['conv1', 'conv2', 'conv3', 'projector'].flatMap((c) => [`adapter_conv.${c}.weight`, `adapter_conv.${c}.bias`])];

export const mona: AdapterMethod<MonaConfig> = {
  name: 'mona',
  peftType: MONA_PEFT_TYPE,
  summary: 'Mona: multi-cognitive adapters (scaled LayerNorm, depthwise 3/5/7 convolutions) after the attention and MLP residuals of each block (Yin et al. 2025)',
  optionsKey: 'mona',
  optionsSchema: MonaOptionsSchema,
  defaultTargets: ALL_BLOCKS,
  wraps: 'blocks with residual taps (Swin, ViT/DeiT, DINOv2, DINOv3 and ConvNeXt blocks)',
  configFromRun: monaConfigFromRun,
  validate: (c) => monaConfig(c),
  canWrap: (m: Module) => isTappedBlock(m),
  isLayer: (m: Module) => m instanceof MonaLayer,
  graft(target, _path, name, config, opts) {
    const layer = target instanceof MonaLayer ? target : new MonaLayer(target as TappedBlock);
    layer.addAdapter(name, { dim: config.dim, dropout: config.dropout, zeroInitUp: config.zeroInitUp, generator: opts.generator });
    // A block wrapper: its base is a block, not a Linear or Conv2d (canMerge is false, so nothing reads a base weight).
    return layer as unknown as AdapterLayer;
  },
  toPeftJson: monaToPeftJson,
  readsPeftJson: (json) => json['peft_type'] === MONA_PEFT_TYPE,
  fromPeftJson: monaFromPeftJson,
  sizeLine: (own) => `d ${MonaOptionsSchema.parse(own).dim}`,
  rank: () => null,
  inspect: { tensors: MONA_TENSORS.flatMap((t) => ['mona_1', 'mona_2'].map((d) => `${d}.${t}`)) },
};
