// AdaLoRA as an adapter method (Zhang et al. 2023, PEFT's ADALORA): SVD-form triplets on Linear
// and Conv2d, the orthogonal regulariser as an extra loss term, the RankAllocator after every
// step, and the kept triplets truncated once training ends, so the adapter file (truncated
// tensors + rank_pattern, as PEFT saves it) rebuilds exactly the trained model.
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { tensor } from '../../ops/creation.js';
import { add, affine, sub } from '../../ops/elementwise.js';
import { matmul } from '../../ops/matmul.js';
import { transpose } from '../../ops/layout.js';
import { norm } from '../../ops/reduce.js';
import type { AdapterMethod, TrainingHooks } from '../method.js';
import { AdaLoraOptionsSchema, adaLoraConfig, adaLoraConfigFromRun, checkSchedule, fromPeftJson, toPeftJson, type AdaLoraConfig } from './config.js';
import { AdaLoraLayer } from './layer.js';
import { RankAllocator } from './allocator.js';

function eye(r: number, like: Tensor): Tensor {
  const v = new Float32Array(r * r);
  for (let i = 0; i < r; i++) v[i * r + i] = 1;
  return tensor(v, [r, r], { backend: like.backend });
}

/** The AdaLoRA layers holding adapter `name`, with their paths. */
export function adaLoraLayers(model: Module, name: string): [string, AdaLoraLayer][] {
  return model.namedModules().filter((e): e is [string, AdaLoraLayer] => e[1] instanceof AdaLoraLayer && e[1].adapterNames().includes(name));
}

/** PEFT's orthogonal regulariser: the mean over every A and B of ‖A Aᵀ − I‖_F and ‖Bᵀ B − I‖_F. */
export function orthogonalRegulariser(layers: [string, AdaLoraLayer][], name: string): Tensor | null {
  let total: Tensor | null = null;
  let count = 0;
  for (const [, l] of layers) {
    const { A, B } = l.tensors(name);
    count += 2;
    if (A.shape[0] === 0) continue;
    const I = eye(A.shape[0]!, A);
    for (const cov of [matmul(A, transpose(A)), matmul(transpose(B), B)]) {
      const n = norm(sub(cov, I));
      total = total ? add(total, n) : n;
    }
  }
  return total && affine(total, 1 / count);
}

export const adalora: AdapterMethod<AdaLoraConfig> = {
  name: 'adalora',
  peftType: 'ADALORA',
  summary: 'AdaLoRA: SVD-form low-rank updates whose ranks are allocated by importance during training (Zhang et al. 2023)',
  optionsKey: 'adalora',
  optionsSchema: AdaLoraOptionsSchema,
  configFromRun: adaLoraConfigFromRun,
  validate: (c) => adaLoraConfig(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof AdaLoraLayer,
  graft(target, path, name, config, opts) {
    const layer = target instanceof AdaLoraLayer ? target : new AdaLoraLayer(target as Linear | Conv2d);
    // A saved adapter lists its kept triplets; the layer is built at that rank so the truncated tensors load.
    const keep = config.rankPattern?.[`${path}.lora_E`];
    layer.addAdapter(name, {
      r: keep ? keep.filter(Boolean).length : config.initR, ranknum: config.initR, alpha: config.loraAlpha, dropout: config.loraDropout, generator: opts.generator,
    });
    return layer;
  },
  toPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'ADALORA',
  fromPeftJson,
  rank: (c) => c.targetR,
  // The kept rank is the row count of the (truncated) lora_E.
  inspect: { tensors: ['lora_A', 'lora_E', 'lora_B'], rank: (shapes) => shapes['lora_E']![0]! },
  trainingHooks(model, name, config): TrainingHooks {
    let allocator: RankAllocator | null = null;
    let total = 0;
    const layers = () => adaLoraLayers(model, name);
    return {
      beforeTraining(ctx) {
        total = config.totalStep ?? ctx.totalSteps;
        checkSchedule(config, total);
        config.totalStep = total;
        if (config.rankPattern && ctx.step === 0) {
          throw new Error('AdaLoRA: this adapter already has a rank pattern (its ranks were allocated by an earlier training); train a fresh adapter');
        }
        allocator = new RankAllocator(layers(), name, config);
      },
      extraLoss: () => (config.orthRegWeight > 0 ? affine(orthogonalRegulariser(layers(), name) ?? tensor([0]), config.orthRegWeight) : null),
      afterStep(ctx) {
        const pattern = allocator!.step(ctx.step, total);
        if (pattern) config.rankPattern = pattern;
      },
      afterTraining() {
        if (!config.rankPattern) return;
        for (const [path, l] of layers()) {
          const keep = config.rankPattern[`${path}.lora_E`];
          if (keep && keep.length === l.rank(name)) l.truncate(name, keep);
        }
      },
    };
  },
};
