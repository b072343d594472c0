// An adapter method written outside graft's tree, registered with one call: PeftModel grafts,
// saves and loads it, the run configuration validates its section, and the trainer drives its
// hooks (total step count, an extra loss term, per-step and per-epoch callbacks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Linear, ModuleDict, ParameterModule } from '../src/nn/layers.js';
import { AdapterLayer } from '../src/adapters/layer.js';
import type { AdapterConfig, AdapterMethod, TrainingContext } from '../src/adapters/method.js';
import { registerAdapterMethod } from '../src/adapters/registry.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { methodNames } from '../src/adapters/apply.js';
import { runConfigSchema } from '../src/train/run-config.js';
import { runAdapterConfig } from '../src/train/run.js';
import { train, type Batch, type BatchSource } from '../src/train/trainer.js';

/** y = base(x) ⊙ (1 + v): a per-output scale starting at the identity (IA3's shape, with v = 0 at init). */
class ScaleLayer extends AdapterLayer<Linear> {
  readonly scale_v = new ModuleDict<ParameterModule>();
  readonly adapterDicts = ['scale_v'] as const;
  constructor(base: Linear) {
    super(base);
    this.module('scale_v', this.scale_v);
  }
  addAdapter(name: string): void {
    this.scale_v.set(name, new ParameterModule(g.zeros([this.base_layer.outFeatures])));
    this.activeAdapter ??= name;
  }
  adapterNames(): string[] {
    return this.scale_v.keys();
  }
  deleteAdapter(name: string): void {
    this.scale_v.get(name)!.dispose();
    this.scale_v.delete(name);
  }
  canMerge(): boolean {
    return false;
  }
  merge(): void {
    throw new Error('scale does not merge');
  }
  unmerge(): void {}
  forward(x: g.Tensor): g.Tensor {
    const y = this.base_layer.forward(x);
    if (this.bypassed()) return y;
    return g.mul(y, g.add(this.scale_v.get(this.activeAdapter!)!.weight, 1));
  }
}

interface ScaleConfig extends AdapterConfig {
  penalty: number;
}

const seen: { before: TrainingContext[]; steps: TrainingContext[]; epochs: TrainingContext[]; losses: number } = { before: [], steps: [], epochs: [], losses: 0 };

const scaleMethod: AdapterMethod<ScaleConfig> = {
  name: 'test-scale',
  peftType: 'TEST_SCALE',
  summary: 'a per-output scale (test plug-in)',
  optionsKey: 'testScale',
  optionsSchema: z.object({ penalty: z.number().min(0).default(0.5) }).strict(),
  configFromRun: (shared, own) => ({ targetModules: shared.targets, modulesToSave: shared.modulesToSave, penalty: own['penalty'] as number }),
  validate: (c) => c,
  canWrap: (m) => m instanceof Linear,
  isLayer: (m) => m instanceof ScaleLayer,
  graft(target, _path, name) {
    const layer = target instanceof ScaleLayer ? target : new ScaleLayer(target as Linear);
    layer.addAdapter(name);
    return layer;
  },
  toPeftJson: (c) => ({ peft_type: 'TEST_SCALE', target_modules: c.targetModules, modules_to_save: c.modulesToSave ?? null, penalty: c.penalty }),
  readsPeftJson: (json) => json['peft_type'] === 'TEST_SCALE',
  fromPeftJson: (json) => ({ targetModules: json['target_modules'] as string[], modulesToSave: (json['modules_to_save'] as string[] | null) ?? undefined, penalty: json['penalty'] as number }),
  rank: () => null,
  trainingHooks(model, name, config) {
    const vs = () => model.namedParameters().filter(([k]) => k.endsWith(`scale_v.${name}.weight`)).map(([, t]) => t);
    return {
      beforeTraining: (ctx) => seen.before.push(ctx),
      extraLoss: () => {
        seen.losses++;
        return g.affine(vs().map((v) => g.sum(g.square(v))).reduce((a, b) => g.add(a, b)), config.penalty);
      },
      afterStep: (ctx) => seen.steps.push(ctx),
      afterEpoch: (ctx) => seen.epochs.push(ctx),
    };
  },
};

registerAdapterMethod(scaleMethod);

class Mlp extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(seed: number) {
    super();
    const gen = new g.Generator(seed);
    this.fc1 = this.module('fc1', new Linear(4, 8, { generator: gen }));
    this.fc2 = this.module('fc2', new Linear(8, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    return this.fc2.forward(g.relu(this.fc1.forward(x)));
  }
}

function batches(n: number, batchSize: number): BatchSource {
  const gen = new g.Generator(3);
  const xs = Array.from({ length: n }, (_, i) => Array.from({ length: 4 }, (__, d) => (d === i % 3 ? 2 : 0) + gen.normal()));
  return {
    size: n,
    batchesPerEpoch: () => Math.ceil(n / batchSize),
    async *epoch(_epoch: number, skip: number): AsyncIterable<Batch> {
      for (let b = skip; b * batchSize < n; b++) {
        const idx = Array.from({ length: Math.min(batchSize, n - b * batchSize) }, (_, i) => b * batchSize + i);
        yield { x: g.tensor(idx.map((i) => xs[i]!)), y: g.tensor(idx.map((i) => i % 3), undefined, { dtype: 'int32' }) };
      }
    },
  };
}

test('adapter plug-in: a method registered with one call is a method like the built-in ones', () => {
  assert.ok(methodNames().includes('test-scale'));
  const c = runConfigSchema().parse({ model: 'm', data: { source: 'x', perClass: 1 }, method: 'test-scale', adapter: { targets: ['fc1'] }, testScale: { penalty: 0.25 } });
  assert.deepEqual(runAdapterConfig(c), { targetModules: ['fc1'], modulesToSave: undefined, penalty: 0.25 });
  assert.throws(() => runConfigSchema().parse({ model: 'm', data: { source: 'x', perClass: 1 }, testScale: { penalty: -1 } }), /testScale.*penalty/s);

  const peft = new PeftModel(new Mlp(1), 'test-scale', { targetModules: ['fc1', 'fc2'], penalty: 0.5 } as ScaleConfig);
  assert.deepEqual(peft.adapterLayers().map(([p]) => p), ['fc1', 'fc2']);
  assert.deepEqual(peft.model.trainableParameters().length, 2);
  const x = g.randn([2, 4], { generator: new g.Generator(2) });
  g.noGrad(() => g.assign(peft.model.trainableParameters()[0]!, g.full([8], 0.3)));
  const want = g.noGrad(() => peft.forward(x));
  const dir = mkdtempSync(join(tmpdir(), 'graft-plugin-'));
  peft.saveAdapter(dir);
  const loaded = new PeftModel(new Mlp(1), 'test-scale', { targetModules: ['fc2'], penalty: 0 } as ScaleConfig, 'other');
  loaded.loadAdapter(dir, 'default');
  loaded.setAdapter('default');
  assert.deepEqual(Array.from(g.noGrad(() => loaded.forward(x)).toArray()), Array.from(want.toArray()));
  assert.deepEqual(loaded.adapterStateDict().size, 2);
  assert.ok([...loaded.adapterStateDict().keys()].includes('base_model.model.fc1.scale_v.weight'));
});

test('adapter plug-in: the trainer runs the method\'s hooks with the total step count and adds its loss term', async () => {
  seen.before.length = seen.steps.length = seen.epochs.length = 0;
  seen.losses = 0;
  const peft = new PeftModel(new Mlp(1), 'test-scale', { targetModules: ['fc1'], penalty: 0.5 } as ScaleConfig);
  // 12 samples, batches of 4, 2 epochs, accumulation 1: 6 optimizer steps.
  const result = await train(peft, batches(12, 4), null, { epochs: 2, lr: 0.05, hooks: peft.trainingHooks(), log: () => {} });
  assert.equal(result.stoppedBy, 'completed');
  assert.equal(seen.before.length, 1);
  assert.equal(seen.before[0]!.totalSteps, 6);
  assert.deepEqual(seen.steps.map((s) => s.step), [1, 2, 3, 4, 5, 6]);
  assert.ok(seen.steps.every((s) => s.totalSteps === 6 && s.totalEpochs === 2));
  assert.deepEqual(seen.epochs.map((e) => e.epoch), [1, 2]);
  assert.equal(seen.losses, 6);
  // The extra term reaches the gradients: a strong penalty keeps v near 0.
  const vNorm = async (penalty: number) => {
    const m = new PeftModel(new Mlp(1), 'test-scale', { targetModules: ['fc1'], penalty } as ScaleConfig);
    await train(m, batches(12, 4), null, { epochs: 2, lr: 0.05, hooks: m.trainingHooks(), log: () => {} });
    return Math.sqrt(Array.from(m.model.trainableParameters()[0]!.toArray()).reduce((a, v) => a + v * v, 0));
  };
  const free = await vNorm(0);
  const held = await vNorm(50);
  assert.ok(held < 0.5 * free, `penalised |v| ${held} vs free ${free}`);
});
