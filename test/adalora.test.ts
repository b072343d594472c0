// AdaLoRA's behaviour beyond the matrix: the budget schedule against its formula, the masks and
// rank_pattern the allocator leaves after training through the trainer, the exact PEFT keys and
// config fields, and a ResNet-18-shaped run with every Conv2d targeted that trains and reloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { adaLoraConfig, type AdaLoraConfig } from '../src/adapters/adalora/config.js';
import { budgetSchedule } from '../src/adapters/adalora/allocator.js';
import { AdaLoraLayer } from '../src/adapters/adalora/layer.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { train, type Batch, type BatchSource } from '../src/train/trainer.js';
import { buildRunModel, loadRun, saveTrainedModel, writeRunManifest } from '../src/train/run.js';
import { runConfigSchema } from '../src/train/run-config.js';
import '../src/models/all.js';

class Net extends Module {
  conv: Conv2d;
  fc1: Linear;
  fc2: Linear;
  head: Linear;
  constructor(gen: g.Generator) {
    super();
    this.conv = this.module('conv', new Conv2d(3, 6, 3, { padding: 1, generator: gen }));
    this.fc1 = this.module('fc1', new Linear(6, 16, { generator: gen }));
    this.fc2 = this.module('fc2', new Linear(16, 16, { generator: gen }));
    this.head = this.module('head', new Linear(16, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    const h = g.mean(g.relu(this.conv.forward(x)), [2, 3]);
    return this.head.forward(g.relu(this.fc2.forward(g.relu(this.fc1.forward(h)))));
  }
}

function images(n: number, batchSize: number, size = 6, seed = 3): BatchSource {
  const gen = new g.Generator(seed);
  const xs = Array.from({ length: n }, (_, i) => Array.from({ length: 3 * size * size }, (_, d) => (d % 3 === i % 3 ? 1 : 0) + gen.normal()));
  return {
    size: n,
    batchesPerEpoch: () => Math.ceil(n / batchSize),
    async *epoch(_e: number, skip: number): AsyncIterable<Batch> {
      for (let b = skip; b * batchSize < n; b++) {
        const idx = Array.from({ length: Math.min(batchSize, n - b * batchSize) }, (_, i) => b * batchSize + i);
        yield { x: g.tensor(Float32Array.from(idx.flatMap((i) => xs[i]!)), [idx.length, 3, size, size]), y: g.tensor(Int32Array.from(idx.map((i) => i % 3)), [idx.length]) };
      }
    },
  };
}

test('adalora: the budget per step follows the cubic schedule between tinit and T − tfinal', () => {
  const c = { tinit: 3, tfinal: 4, deltaT: 2 };
  const T = 20;
  const init = 36; // 3 matrices × init_r 12
  const target = 24; // 3 × target_r 8
  for (let t = 1; t <= T; t++) {
    const { budget, mask } = budgetSchedule(t, c, T, init, target);
    if (t <= 3) assert.deepEqual({ budget, mask }, { budget: init, mask: false }, `t=${t}`);
    else if (t > T - 4) assert.deepEqual({ budget, mask }, { budget: target, mask: true }, `t=${t}`);
    else {
      const frac = 1 - (t - 3) / (T - 4 - 3);
      assert.equal(budget, Math.floor((init - target) * frac * frac * frac + target), `t=${t}`);
      assert.equal(mask, t % 2 === 0, `t=${t} masks every deltaT steps`);
    }
  }
  // Monotone from init to target.
  const all = Array.from({ length: T }, (_, i) => budgetSchedule(i + 1, c, T, init, target).budget);
  assert.ok(all.every((b, i) => i === 0 || b <= all[i - 1]!));
  assert.equal(all[T - 1], target);
});

test('adalora: trained through the trainer, the kept triplets follow the budget, masked E is zero, rank_pattern is PEFT\'s and the tensors are truncated', async () => {
  const gen = new g.Generator(1);
  const peft = new PeftModel(new Net(gen), 'adalora', adaLoraConfig({ targetModules: ['conv', 'fc1', 'fc2'], modulesToSave: ['head'], initR: 6, targetR: 3, tinit: 2, tfinal: 2, loraAlpha: 8 }), 'default', { generator: gen });
  const config = peft.adapter().config as AdaLoraConfig;
  const hooks = peft.trainingHooks();
  const kept: number[] = [];
  const zeroed: boolean[] = [];
  const layers = () => peft.adapterLayers().map(([p, l]) => [p, l as AdaLoraLayer] as const);
  const result = await train(peft, images(24, 4), null, {
    epochs: 2, lr: 0.02, log: () => {},
    hooks: {
      ...hooks,
      afterStep(ctx) {
        hooks.afterStep!(ctx);
        const p = config.rankPattern;
        kept.push(p ? Object.values(p).reduce((a, v) => a + v.filter(Boolean).length, 0) : 18);
        // Every dropped triplet has E = 0 right after masking.
        zeroed.push(!p || layers().every(([path, l]) => p[`${path}.lora_E`]!.every((k, i) => k || l.tensors('default').E.toArray()[i] === 0)));
      },
    },
  });
  assert.equal(result.stoppedBy, 'completed');
  assert.equal(config.totalStep, 12, 'total_step filled from the trainer');
  // Step t keeps the schedule's budget (ties aside, which random scores do not have).
  const want = Array.from({ length: 12 }, (_, i) => budgetSchedule(i + 1, config, 12, 18, 9)).map((b, i) => (i + 1 <= 2 ? 18 : b.budget));
  assert.deepEqual(kept, want);
  assert.ok(zeroed.every(Boolean), 'masked triplets have E = 0');
  const pattern = config.rankPattern!;
  assert.deepEqual(Object.keys(pattern), ['conv.lora_E', 'fc1.lora_E', 'fc2.lora_E']);
  assert.ok(Object.values(pattern).every((v) => v.length === 6));
  // After training the layers hold only the kept triplets; ranknum stays init_r.
  for (const [path, l] of layers()) {
    const r = pattern[`${path}.lora_E`]!.filter(Boolean).length;
    assert.equal(l.rank('default'), r);
    assert.equal(l.ranknum('default'), 6);
    assert.deepEqual([...l.tensors('default').A.shape], [r, path === 'conv' ? 27 : path === 'fc1' ? 6 : 16]);
  }
  const dir = mkdtempSync(join(tmpdir(), 'graft-adalora-'));
  peft.saveAdapter(dir);
  const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(json['rank_pattern'], pattern);
  assert.equal(json['total_step'], 12);
  // The saved file reloads onto a fresh base exactly.
  const x = g.randn([2, 3, 6, 6], { generator: gen });
  peft.eval();
  const out = g.noGrad(() => peft.forward(x));
  const loaded = new PeftModel(new Net(new g.Generator(1)), 'adalora', adaLoraConfig({ targetModules: ['fc1'], initR: 2 }), 'other');
  loaded.loadAdapter(dir, 'default');
  loaded.setAdapter('default');
  loaded.eval();
  assert.deepEqual(Array.from(g.noGrad(() => loaded.forward(x)).toArray()), Array.from(out.toArray()));
});

test('adalora: the file holds exactly PEFT\'s keys and AdaLoraConfig\'s fields', () => {
  const peft = new PeftModel(new Net(new g.Generator(2)), 'adalora', adaLoraConfig({ targetModules: ['conv', 'fc1'], modulesToSave: ['head'] }));
  const dir = mkdtempSync(join(tmpdir(), 'graft-adalora-'));
  peft.saveAdapter(dir);
  const f = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  const keys = f.keys().sort();
  assert.deepEqual([...f.tensors.get('base_model.model.conv.lora_A')!.shape], [12, 27]);
  assert.deepEqual([...f.tensors.get('base_model.model.conv.lora_B')!.shape], [6, 12]);
  assert.deepEqual([...f.tensors.get('base_model.model.fc1.lora_E')!.shape], [12, 1]);
  f.close();
  assert.deepEqual(keys, [
    ...['conv', 'fc1'].flatMap((m) => ['lora_A', 'lora_B', 'lora_E'].map((t) => `base_model.model.${m}.${t}`)),
    'base_model.model.head.bias', 'base_model.model.head.weight',
  ].sort());
  const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(json), [
    'alpha_pattern', 'auto_mapping', 'base_model_name_or_path', 'beta1', 'beta2', 'bias', 'deltaT', 'exclude_modules', 'fan_in_fan_out', 'inference_mode',
    'init_lora_weights', 'init_r', 'layer_replication', 'layers_pattern', 'layers_to_transform', 'lora_alpha', 'lora_bias', 'lora_dropout', 'modules_to_save',
    'orth_reg_weight', 'peft_type', 'r', 'rank_pattern', 'revision', 'target_modules', 'target_r', 'task_type', 'tfinal', 'tinit', 'total_step', 'use_dora', 'use_rslora',
  ]);
  assert.deepEqual([json['init_r'], json['target_r'], json['beta1'], json['beta2'], json['orth_reg_weight'], json['deltaT'], json['rank_pattern']], [12, 8, 0.85, 0.85, 0.5, 1, null]);
  assert.throws(() => adaLoraConfig({ targetModules: ['fc1'], tinit: 5, tfinal: 5, totalStep: 10 }), /no budgeting phase: tinit \(5\) must be below total_step \(10\) − tfinal \(5\)/);
});

test('adalora: a ResNet-18 (tiny) with every Conv2d targeted trains through the trainer and its run folder reloads exactly', async () => {
  const c = runConfigSchema().parse({
    model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, data: { source: 'unused', perClass: 1, imageSize: 32 }, method: 'adalora',
    adapter: { targets: '(.*\\.)?conv\\d|.*downsample\\.0', alpha: 8 }, adalora: { initR: 4, targetR: 2 }, train: { seed: 3 },
  });
  const classes = ['a', 'b', 'c'];
  const { model } = await buildRunModel(c, classes);
  const peft = model as PeftModel;
  const convs = peft.model.namedModules().filter(([, m]) => m instanceof Conv2d && !(m === (peft.model as Module))).length;
  const grafted = peft.adapterLayers();
  assert.equal(grafted.length, 12, 'conv1, 8 block convs, 3 downsample convs');
  assert.equal(convs, 12, 'every Conv2d of the model (each now the base_layer of an AdaLoRA layer)');
  const dir = mkdtempSync(join(tmpdir(), 'graft-adalora-run-'));
  writeRunManifest(dir, { config: c, classes });
  const result = await train(model, images(8, 4, 32), null, { epochs: 2, lr: 0.01, hooks: peft.trainingHooks(), outputDir: dir, log: () => {} });
  assert.equal(result.stoppedBy, 'completed');
  const pattern = (peft.adapter().config as AdaLoraConfig).rankPattern!;
  assert.equal(Object.keys(pattern).length, 12);
  assert.equal(Object.values(pattern).reduce((a, v) => a + v.filter(Boolean).length, 0), 24, 'target_r × matrices kept');
  model.eval();
  saveTrainedModel(dir, model);
  const x = g.randn([2, 3, 32, 32], { generator: new g.Generator(5) });
  const want = g.noGrad(() => g.keep(model.forward(x)));
  const loaded = await loadRun(dir);
  const got = g.noGrad(() => loaded.model.forward(x));
  assert.deepEqual(Array.from(got.toArray()), Array.from(want.toArray()), 'reloaded logits');
  assert.ok((loaded.model as PeftModel).adapterLayers().some(([, l]) => (l as AdaLoraLayer).rank('default') !== 4), 'rebuilt at the kept ranks');
});
