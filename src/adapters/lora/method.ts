// LoRA and DoRA as adapter methods: one layer class, DoRA as its variant (PEFT: LoraConfig with
// use_dora). Both read the run configuration's `lora` section.
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { AdapterMethod } from '../method.js';
import { patternValue } from '../targets.js';
import { fromPeftJson, loraConfig, loraConfigFromRun, LoraOptionsSchema, toPeftJson, type LoraConfig } from './config.js';
import { LoraLayer } from './layer.js';
import { dora } from './dora.js';

/** LoRA's saved tensors per layer; its rank is the row count of lora_A. */
export const LORA_INSPECT = {
  tensors: ['lora_A.weight', 'lora_B.weight', 'lora_magnitude_vector'],
  rank: (shapes: Record<string, readonly number[]>) => shapes['lora_A.weight']![0]!,
};

function loraMethod(useDora: boolean): AdapterMethod<LoraConfig> {
  return {
    name: useDora ? 'dora' : 'lora',
    peftType: 'LORA',
    summary: useDora
      ? 'DoRA: LoRA with the weight split into magnitude and direction (Liu et al. 2024)'
      : 'LoRA: a low-rank update s·BA beside each targeted Linear/Conv2d (Hu et al. 2021)',
    optionsKey: 'lora',
    optionsSchema: LoraOptionsSchema,
    configFromRun: (shared, own) => loraConfigFromRun(shared, own, useDora),
    validate: (c) => loraConfig({ ...c, useDora }),
    canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
    isLayer: (m: Module) => m instanceof LoraLayer,
    graft(target, path, name, config, opts) {
      const layer = target instanceof LoraLayer ? target : new LoraLayer(target as Linear | Conv2d);
      layer.addAdapter(name, {
        r: patternValue(path, config.rankPattern, config.r),
        alpha: patternValue(path, config.alphaPattern, config.loraAlpha),
        dropout: config.loraDropout,
        useRslora: config.useRslora,
        init: config.initLoraWeights,
        variant: config.useDora ? dora : null,
        generator: opts.generator,
      });
      return layer;
    },
    toPeftJson,
    // A LORA file carrying graft's DyLoRA fields is DyLoRA's (graft_dylora, see dylora/config.ts).
    readsPeftJson: (json) => json['peft_type'] === 'LORA' && Boolean(json['use_dora']) === useDora && json['graft_dylora'] === undefined,
    fromPeftJson,
    rank: (c) => c.r,
    inspect: LORA_INSPECT,
  };
}

export const lora = loraMethod(false);
export const doraMethod = loraMethod(true);
