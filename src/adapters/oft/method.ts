// OFT as an adapter method (PEFT peft_type OFT). It reads the run configuration's `oft` section.
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { AdapterMethod } from '../method.js';
import { oftConfig, oftConfigFromRun, oftFromPeftJson, OftOptionsSchema, oftToPeftJson, type OftConfig } from './config.js';
import { OftLayer } from './layer.js';
import { adjustToDivisor, divisors } from './rotation.js';

/**
 * Blocks and block size for a layer with `features` input features. As PEFT's update_layer, a
 * value that does not divide the features becomes the nearest divisor (so PEFT's files, whose
 * config keeps the value asked for, load with the same shapes), with a warning naming the valid values.
 */
export function oftBlocks(path: string, features: number, config: OftConfig): { blocks: number; blockSize: number } {
  const byBlocks = config.r !== 0;
  const wanted = byBlocks ? config.r : config.oftBlockSize;
  let value = wanted;
  if (features % wanted !== 0 || wanted > features) {
    value = adjustToDivisor(features, wanted);
    const field = byBlocks ? 'r (blocks)' : 'oftBlockSize';
    console.warn(`OFT on '${path}': ${field} ${wanted} does not divide its ${features} input features; using ${value}, as PEFT does. Valid values: ${divisors(features).join(', ')}`);
  }
  return byBlocks ? { blocks: value, blockSize: features / value } : { blocks: features / value, blockSize: value };
}

export const oft: AdapterMethod<OftConfig> = {
  name: 'oft',
  peftType: 'OFT',
  summary: 'OFT: a block-diagonal orthogonal rotation (Cayley transform) of each targeted layer\'s input features (Qiu et al. 2023)',
  optionsKey: 'oft',
  optionsSchema: OftOptionsSchema,
  configFromRun: oftConfigFromRun,
  validate: (c) => oftConfig(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof OftLayer,
  graft(target, path, name, config, opts) {
    const layer = target instanceof OftLayer ? target : new OftLayer(target as Linear | Conv2d);
    const { blocks, blockSize } = oftBlocks(path, OftLayer.features(layer.base_layer), config);
    layer.addAdapter(name, {
      blocks, blockSize, moduleDropout: config.moduleDropout, coft: config.coft, eps: config.eps, blockShare: config.blockShare,
      init: config.initWeights, useCayleyNeumann: config.useCayleyNeumann, numCayleyNeumannTerms: config.numCayleyNeumannTerms, generator: opts.generator,
    });
    return layer;
  },
  toPeftJson: oftToPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'OFT',
  fromPeftJson: oftFromPeftJson,
  rank: (c) => (c.r !== 0 ? c.r : null),
};
