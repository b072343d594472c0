// (IA)³ as an adapter method (PEFT peft_type IA3). It reads the run configuration's `ia3` section;
// the shared rank and alpha do not apply to it (it has neither).
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { AdapterMethod } from '../method.js';
import { ia3Config, ia3ConfigFromRun, ia3FromPeftJson, Ia3OptionsSchema, ia3ToPeftJson, isFeedforward, type Ia3Config } from './config.js';
import { Ia3Layer } from './layer.js';

export const ia3: AdapterMethod<Ia3Config> = {
  name: 'ia3',
  peftType: 'IA3',
  summary: '(IA)³: learned vectors scaling each targeted layer\'s output, or its input for feedforwardModules (Liu et al. 2022)',
  optionsKey: 'ia3',
  optionsSchema: Ia3OptionsSchema,
  configFromRun: ia3ConfigFromRun,
  validate: (c) => ia3Config(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof Ia3Layer,
  graft(target, path, name, config, opts) {
    const layer = target instanceof Ia3Layer ? target : new Ia3Layer(target as Linear | Conv2d);
    layer.addAdapter(name, { feedforward: isFeedforward(path, config.feedforwardModules), init: config.initIa3Weights, generator: opts.generator });
    return layer;
  },
  toPeftJson: ia3ToPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'IA3',
  fromPeftJson: ia3FromPeftJson,
  rank: () => null,
};
