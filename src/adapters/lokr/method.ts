// LoKr as an adapter method (peft_type LOKR), reading the run configuration's `lokr` section.
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { AdapterMethod } from '../method.js';
import { patternValue } from '../targets.js';
import { lokrConfig, lokrConfigFromRun, lokrFromPeftJson, LokrOptionsSchema, lokrToPeftJson, type LokrConfig } from './config.js';
import { LokrLayer } from './layer.js';

export const lokr: AdapterMethod<LokrConfig> = {
  name: 'lokr',
  peftType: 'LOKR',
  summary: 'LoKr: ΔW as a Kronecker product of two small factors, the right one low-rank (LyCORIS; Yeh et al. 2023)',
  optionsKey: 'lokr',
  optionsSchema: LokrOptionsSchema,
  configFromRun: lokrConfigFromRun,
  validate: (c) => lokrConfig(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof LokrLayer,
  graft(target, path, name, config, opts) {
    const layer = target instanceof LokrLayer ? target : new LokrLayer(target as Linear | Conv2d);
    layer.addAdapter(name, {
      r: patternValue(path, config.rankPattern, config.r),
      alpha: patternValue(path, config.alphaPattern, config.alpha),
      rankDropout: config.rankDropout,
      moduleDropout: config.moduleDropout,
      rankDropoutScale: config.rankDropoutScale,
      useEffectiveConv2d: config.useEffectiveConv2d,
      decomposeBoth: config.decomposeBoth,
      decomposeFactor: config.decomposeFactor,
      initWeights: config.initWeights,
      generator: opts.generator,
    });
    return layer;
  },
  toPeftJson: lokrToPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'LOKR',
  fromPeftJson: lokrFromPeftJson,
  rank: (c) => c.r,
};
