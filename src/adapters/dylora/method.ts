// DyLoRA as an adapter method: one rank b drawn uniformly from rMin…r before every optimizer
// step, the same for every layer (the official code's on_step_begin callback); after training the
// trainer's caller compares the ranks on the validation split through `rankChoice` and keeps the best.
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import { defaultGenerator } from '../../tensor/random.js';
import { contiguous, slice } from '../../ops/layout.js';
import type { AdapterMethod, RankChoice } from '../method.js';
import { toPeftJson as loraToPeftJson, loraConfig } from '../lora/config.js';
import { LORA_INSPECT } from '../lora/method.js';
import { checkRank, dyLoraConfig, dyLoraConfigFromRun, DyLoraOptionsSchema, fromPeftJson, toPeftJson, type DyLoraConfig } from './config.js';
import { DyLoraLayer } from './layer.js';

function dyLoraLayers(model: Module, name: string): DyLoraLayer[] {
  return model.namedModules().map(([, m]) => m).filter((m): m is DyLoraLayer => m instanceof DyLoraLayer && m.adapterNames().includes(name));
}

export const dylora: AdapterMethod<DyLoraConfig> = {
  name: 'dylora',
  peftType: 'LORA',
  summary: 'DyLoRA: LoRA trained for every rank up to r at once, the rank chosen on validation afterwards (Valipour et al. 2023)',
  optionsKey: 'dylora',
  optionsSchema: DyLoraOptionsSchema,
  configFromRun: dyLoraConfigFromRun,
  validate: (c) => dyLoraConfig(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof DyLoraLayer,
  graft(target, _path, name, config, opts) {
    const layer = target instanceof DyLoraLayer ? target : new DyLoraLayer(target as Linear | Conv2d);
    layer.addDyLora(name, {
      rMax: config.r, alpha: config.loraAlpha, dropout: config.loraDropout, mode: config.mode, evalRank: config.chosenRank ?? config.r, generator: opts.generator,
    });
    return layer;
  },
  toPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'LORA' && typeof json['graft_dylora'] === 'object' && json['graft_dylora'] !== null,
  fromPeftJson,
  rank: (c) => c.chosenRank ?? c.r,
  inspect: LORA_INSPECT,
  trainingHooks(model, name, config) {
    const span = config.r - config.rMin + 1;
    return {
      beforeStep() {
        const b = config.rMin + defaultGenerator.int(span);
        for (const l of dyLoraLayers(model, name)) l.setRank(name, b, 'train');
      },
    };
  },
  rankChoice(model, name, config): RankChoice {
    return {
      candidates: config.evalRanks ?? Array.from({ length: config.r - config.rMin + 1 }, (_, i) => config.rMin + i),
      maxRank: config.r,
      current: () => config.chosenRank ?? config.r,
      set(b) {
        checkRank(config, b);
        for (const l of dyLoraLayers(model, name)) l.setRank(name, b, 'eval');
        config.chosenRank = b;
      },
      truncated(b, baseModelClass) {
        checkRank(config, b);
        return {
          json: loraToPeftJson(loraConfig({ ...config, r: b, useDora: false, useRslora: false, initLoraWeights: true }), baseModelClass),
          cut: (key, t) => (key.endsWith('.lora_A.weight') ? contiguous(slice(t, 0, 0, b)) : key.endsWith('.lora_B.weight') ? contiguous(slice(t, 1, 0, b)) : t),
        };
      },
    };
  },
};
