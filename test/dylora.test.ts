// DyLoRA's behaviour beyond the matrix: at any rank b the adapter equals a plain LoRA of rank b
// built from its prefix (A[:b], B[:, :b], alpha / b), which is also what its rank-b file holds;
// the rank drawn per step is one for all layers; PEFT's LoRA keys plus graft's documented fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { dyLoraConfig, type DyLoraConfig } from '../src/adapters/dylora/config.js';
import { DyLoraLayer } from '../src/adapters/dylora/layer.js';
import { LoraLayer } from '../src/adapters/lora/layer.js';
import { loraConfig } from '../src/adapters/lora/config.js';
import { methodForPeftJson } from '../src/adapters/registry.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { train, type Batch, type BatchSource } from '../src/train/trainer.js';

class Net extends Module {
  stem: Conv2d;
  pw: Conv2d;
  dw: Conv2d;
  fc1: Linear;
  head: Linear;
  constructor(gen: g.Generator) {
    super();
    this.stem = this.module('stem', new Conv2d(3, 8, 3, { padding: 2, dilation: 2, generator: gen }));
    this.pw = this.module('pw', new Conv2d(8, 8, 1, { generator: gen }));
    this.dw = this.module('dw', new Conv2d(8, 8, 3, { padding: 1, groups: 8, generator: gen }));
    this.fc1 = this.module('fc1', new Linear(8, 16, { generator: gen }));
    this.head = this.module('head', new Linear(16, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    const h = g.mean(g.relu(this.dw.forward(this.pw.forward(this.stem.forward(x)))), [2, 3]);
    return this.head.forward(g.gelu(this.fc1.forward(h)));
  }
}

const make = (config: Partial<DyLoraConfig> = {}) => {
  const gen = new g.Generator(1);
  const peft = new PeftModel(new Net(gen), 'dylora', dyLoraConfig({ r: 4, loraAlpha: 8, targetModules: ['stem', 'pw', 'fc1'], modulesToSave: ['head'], ...config }), 'default', { generator: gen });
  g.noGrad(() => {
    for (const p of peft.model.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std: 0.1, generator: gen })));
  });
  return peft.eval() as PeftModel;
};

test('dylora: evaluated at rank b it equals a LoRA of rank b built from the prefix (A[:b], B[:, :b], alpha / b), and its rank-b file is that LoRA', () => {
  const peft = make();
  const x = g.randn([2, 3, 7, 7], { generator: new g.Generator(2) });
  const choice = peft.rankChoice()!;
  assert.deepEqual(choice.candidates, [1, 2, 3, 4]);
  for (const b of [1, 2, 3, 4]) {
    choice.set(b);
    const got = g.noGrad(() => peft.forward(x));
    // A plain LoRA of rank b on the same base, its factors copied from the prefix.
    const lora = new PeftModel(new Net(new g.Generator(1)), 'lora', loraConfig({ r: b, loraAlpha: 8, targetModules: ['stem', 'pw', 'fc1'], modulesToSave: ['head'] }));
    g.noGrad(() => {
      for (const [path, l] of lora.adapterLayers()) {
        const src = peft.model.getModule(path) as DyLoraLayer;
        const dst = l as LoraLayer;
        g.assign(dst.lora_A.get('default')!.weight, g.slice(src.lora_A.get('default')!.weight, 0, 0, b));
        g.assign(dst.lora_B.get('default')!.weight, g.contiguous(g.slice(src.lora_B.get('default')!.weight, 1, 0, b)));
      }
      const head = (m: PeftModel) => m.model.getModule('head.modules_to_save.default') as Linear;
      g.assign(head(lora).weight, head(peft).weight);
      g.assign(head(lora).bias!, head(peft).bias!);
    });
    lora.eval();
    assert.equal((lora.adapterLayers()[0]![1] as LoraLayer).scaling('default'), 8 / b);
    const want = g.noGrad(() => lora.forward(x));
    const diff = Math.max(...Array.from(got.toArray(), (v, i) => Math.abs(v - want.toArray()[i]!)));
    assert.ok(diff <= 1e-6, `rank ${b}: max difference ${diff}`);
    // The rank-b folder is a plain PEFT LoRA adapter that graft reads as LoRA and that computes the same.
    const dir = mkdtempSync(join(tmpdir(), 'graft-dylora-'));
    peft.saveAdapterAtRank(dir, b);
    const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(json['r'], b);
    assert.equal(json['graft_dylora'], undefined);
    assert.equal(methodForPeftJson(json, 'x').name, 'lora');
    const loaded = new PeftModel(new Net(new g.Generator(1)), 'lora', loraConfig({ targetModules: ['fc1'] }), 'scratch');
    loaded.loadAdapter(dir, 'default');
    loaded.setAdapter('default');
    loaded.eval();
    const fromFile = g.noGrad(() => loaded.forward(x));
    assert.ok(Math.max(...Array.from(fromFile.toArray(), (v, i) => Math.abs(v - got.toArray()[i]!))) <= 1e-6, `rank ${b} file`);
  }
  assert.throws(() => choice.set(5), /rank 5 is outside the trained range 1…4/);
});

test('dylora: the whole adapter is PEFT\'s LoRA layout plus graft_dylora, read back as DyLoRA at its chosen rank', () => {
  const peft = make({ rMin: 2, evalRanks: [2, 4] });
  peft.rankChoice()!.set(2);
  const dir = mkdtempSync(join(tmpdir(), 'graft-dylora-'));
  peft.saveAdapter(dir);
  const f = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  const keys = f.keys().sort();
  f.close();
  assert.deepEqual(keys, [
    ...['stem', 'pw', 'fc1'].flatMap((m) => [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`]),
    'base_model.model.head.bias', 'base_model.model.head.weight',
  ].sort());
  const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(json['peft_type'], 'LORA');
  assert.equal(json['r'], 4);
  assert.deepEqual(json['graft_dylora'], { chosen_rank: 2, eval_ranks: [2, 4], mode: 'frozen', r_max: 4, r_min: 2 });
  assert.equal(methodForPeftJson(json, 'x').name, 'dylora');
  const x = g.randn([1, 3, 7, 7], { generator: new g.Generator(3) });
  const want = g.noGrad(() => peft.forward(x));
  const loaded = new PeftModel(new Net(new g.Generator(1)), 'dylora', dyLoraConfig({ targetModules: ['fc1'] }), 'scratch');
  loaded.loadAdapter(dir, 'default');
  loaded.setAdapter('default');
  loaded.eval();
  assert.equal(loaded.rankChoice()!.current(), 2);
  assert.deepEqual(Array.from(g.noGrad(() => loaded.forward(x)).toArray()), Array.from(want.toArray()));
  assert.throws(() => new PeftModel(new Net(new g.Generator(1)), 'dylora', dyLoraConfig({ targetModules: ['dw'] })), /DyLoRA on a grouped Conv2d \(groups=8\) is not supported/);
  assert.throws(() => dyLoraConfig({ targetModules: ['fc1'], r: 4, rMin: 5 }), /rMin must be an integer in 1…r \(4\)/);
});

test('dylora: training draws one rank per step for every layer, within rMin…r, and only the trained rank\'s column moves in frozen mode', async () => {
  const gen = new g.Generator(4);
  const peft = new PeftModel(new Net(gen), 'dylora', dyLoraConfig({ r: 4, rMin: 2, loraAlpha: 8, targetModules: ['stem', 'fc1'], modulesToSave: ['head'] }), 'default', { generator: gen });
  const layers = peft.adapterLayers().map(([, l]) => l as DyLoraLayer);
  const hooks = peft.trainingHooks();
  const drawn: number[][] = [];
  const data: BatchSource = {
    size: 8, batchesPerEpoch: () => 4,
    async *epoch(_e: number, skip: number): AsyncIterable<Batch> {
      for (let b = skip; b < 4; b++) yield { x: g.randn([2, 3, 7, 7], { generator: new g.Generator(b) }), y: g.tensor(Int32Array.from([b % 3, (b + 1) % 3]), [2]) };
    },
  };
  let before: Float32Array[] = [];
  const rowsMoved: number[][] = [];
  await train(peft, data, null, {
    epochs: 3, lr: 0.01, weightDecay: 0, log: () => {},
    hooks: {
      beforeStep(ctx) {
        hooks.beforeStep!(ctx);
        drawn.push(layers.map((l) => (l.train(), l.currentRank('default'))));
        before = layers.map((l) => Float32Array.from(l.lora_B.get('default')!.weight.toArray()));
      },
      afterStep() {
        // Columns of fc1's B (16 × 4) that changed in this step; on the first step (no optimizer state yet, and A's gradient is 0 while B = 0) only the trained one can.
        const B = layers[1]!.lora_B.get('default')!.weight.toArray();
        const moved = [0, 1, 2, 3].filter((col) => Array.from({ length: 16 }, (_, o) => o).some((o) => B[o * 4 + col] !== before[1]![o * 4 + col]));
        rowsMoved.push(moved);
      },
    },
  });
  assert.equal(drawn.length, 12);
  for (const d of drawn) {
    assert.ok(d.every((b) => b === d[0]), 'one rank for every layer');
    assert.ok(d[0]! >= 2 && d[0]! <= 4);
  }
  assert.ok(new Set(drawn.map((d) => d[0])).size > 1, 'the rank changes between steps');
  assert.deepEqual(rowsMoved[0], [drawn[0]![0]! - 1], 'step 1 trains only column b of lora_B');
});
