// LoHa as an adapter method (peft_type LOHA), reading the run configuration's `loha` section.
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { AdapterMethod } from '../method.js';
import { patternValue } from '../targets.js';
import { lohaConfig, lohaConfigFromRun, lohaFromPeftJson, LohaOptionsSchema, lohaToPeftJson, type LohaConfig } from './config.js';
import { LohaLayer } from './layer.js';

export const loha: AdapterMethod<LohaConfig> = {
  name: 'loha',
  peftType: 'LOHA',
  summary: 'LoHa: ΔW as the Hadamard product of two rank-r factorisations (LyCORIS; Hyeon-Woo et al. 2022)',
  optionsKey: 'loha',
  optionsSchema: LohaOptionsSchema,
  configFromRun: lohaConfigFromRun,
  validate: (c) => lohaConfig(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof LohaLayer,
  graft(target, path, name, config, opts) {
    const layer = target instanceof LohaLayer ? target : new LohaLayer(target as Linear | Conv2d);
    layer.addAdapter(name, {
      r: patternValue(path, config.rankPattern, config.r),
      alpha: patternValue(path, config.alphaPattern, config.alpha),
      rankDropout: config.rankDropout,
      moduleDropout: config.moduleDropout,
      useEffectiveConv2d: config.useEffectiveConv2d,
      initWeights: config.initWeights,
      generator: opts.generator,
    });
    return layer;
  },
  toPeftJson: lohaToPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'LOHA',
  fromPeftJson: lohaFromPeftJson,
  rank: (c) => c.r,
};
