// Training smoke test on the default backend (native when it loads): a tiny CNN and a tiny ViT
// learn a separable synthetic task — which quadrant holds a bright square — to ≥ 95% accuracy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { BatchNorm2d, Conv2d, LayerNorm, Linear } from '../src/nn/layers.js';
import { quantizeModule } from '../src/nn/quant4.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';

const SIZE = 16;

/** Images (B, 1, 16, 16) of noise with a bright 5×5 square in quadrant `label`. */
function quadrants(n: number, gen: g.Generator): { x: g.Tensor; y: g.Tensor } {
  const data = new Float32Array(n * SIZE * SIZE);
  const labels = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    const q = gen.int(4);
    labels[b] = q;
    for (let i = 0; i < SIZE * SIZE; i++) data[b * SIZE * SIZE + i] = 0.3 * gen.normal();
    const top = (q >> 1) * 8 + 1 + gen.int(3);
    const left = (q & 1) * 8 + 1 + gen.int(3);
    for (let r = 0; r < 5; r++) for (let c = 0; c < 5; c++) data[b * SIZE * SIZE + (top + r) * SIZE + left + c] += 1.5;
  }
  return { x: g.tensor(data, [n, 1, SIZE, SIZE]), y: g.tensor(labels, [n]) };
}

class TinyCnn extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  fc: Linear;
  constructor(gen: g.Generator) {
    super();
    this.conv1 = this.module('conv1', new Conv2d(1, 8, 3, { padding: 1, generator: gen }));
    this.bn1 = this.module('bn1', new BatchNorm2d(8));
    this.conv2 = this.module('conv2', new Conv2d(8, 16, 3, { padding: 1, stride: 2, generator: gen }));
    this.fc = this.module('fc', new Linear(16 * 4 * 4, 4, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    let h = g.maxPool2d(g.relu(this.bn1.forward(this.conv1.forward(x))), 2);
    h = g.relu(this.conv2.forward(h));
    return this.fc.forward(g.reshape(h, [x.shape[0]!, -1]));
  }
}

/** A ViT: 4×4 patches, a class token, learned position embeddings, 2 pre-norm blocks, a head. */
class TinyVit extends Module {
  patch: Conv2d;
  cls: g.Tensor;
  pos: g.Tensor;
  blocks: { n1: LayerNorm; qkv: Linear; proj: Linear; n2: LayerNorm; fc1: Linear; fc2: Linear }[] = [];
  norm: LayerNorm;
  head: Linear;
  constructor(gen: g.Generator, readonly dim = 32, readonly heads = 4) {
    super();
    this.patch = this.module('patch_embed', new Conv2d(1, dim, 4, { stride: 4, generator: gen }));
    this.cls = this.param('cls_token', g.randn([1, 1, dim], { std: 0.02, generator: gen }));
    this.pos = this.param('pos_embed', g.randn([1, 17, dim], { std: 0.02, generator: gen }));
    for (let i = 0; i < 2; i++) {
      const b = {
        n1: new LayerNorm(dim, 1e-6), qkv: new Linear(dim, 3 * dim, { generator: gen }), proj: new Linear(dim, dim, { generator: gen }),
        n2: new LayerNorm(dim, 1e-6), fc1: new Linear(dim, 2 * dim, { generator: gen }), fc2: new Linear(2 * dim, dim, { generator: gen }),
      };
      for (const [k, m] of Object.entries(b)) this.module(`blocks.${i}.${k}`, m);
      this.blocks.push(b);
    }
    this.norm = this.module('norm', new LayerNorm(dim, 1e-6));
    this.head = this.module('head', new Linear(dim, 4, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    const B = x.shape[0]!;
    const C = this.dim;
    let t = g.transpose(g.reshape(this.patch.forward(x), [B, C, 16]), 1, 2);
    t = g.add(g.concat([g.expand(this.cls, [B, 1, C]), t], 1), this.pos);
    for (const b of this.blocks) {
      const qkv = g.permute(g.reshape(b.qkv.forward(b.n1.forward(t)), [B, 17, 3, this.heads, C / this.heads]), [2, 0, 3, 1, 4]);
      const a = g.scaledDotProductAttention(g.select(qkv, 0, 0), g.select(qkv, 0, 1), g.select(qkv, 0, 2));
      t = g.add(t, b.proj.forward(g.reshape(g.transpose(a, 1, 2), [B, 17, C])));
      t = g.add(t, b.fc2.forward(g.gelu(b.fc1.forward(b.n2.forward(t)))));
    }
    return this.head.forward(g.select(this.norm.forward(t), 1, 0));
  }
}

// Step counts are about twice what the models need to reach 100% (across initialisation seeds),
// and keep the ViT near 15 s on the reference backend.
function trainAndTest(model: Module, steps: number, lr: number): number {
  const gen = new g.Generator(11);
  const opt = new g.AdamW(model.parameters(), { lr, weightDecay: 1e-4 });
  model.train();
  for (let s = 0; s < steps; s++) {
    g.tidy(() => {
      const { x, y } = quadrants(32, gen);
      opt.zeroGrad();
      g.crossEntropy(model.forward(x), y).backward();
      opt.step();
    });
  }
  model.eval();
  return g.noGrad(() => g.tidy(() => {
    const { x, y } = quadrants(400, new g.Generator(99));
    const pred = g.argmax(model.forward(x), 1).toArray();
    const labels = y.toArray();
    return pred.filter((p, i) => p === labels[i]).length / labels.length;
  }));
}

test(`training smoke (${g.currentBackend().name}): a tiny CNN learns the quadrant task to ≥ 95%`, () => {
  const acc = trainAndTest(new TinyCnn(new g.Generator(1)), 60, 3e-3);
  assert.ok(acc >= 0.95, `CNN test accuracy ${acc}`);
});

test(`training smoke (${g.currentBackend().name}): a tiny ViT learns the quadrant task to ≥ 95%`, () => {
  const acc = trainAndTest(new TinyVit(new g.Generator(2)), 150, 2e-3);
  assert.ok(acc >= 0.95, `ViT test accuracy ${acc}`);
});

test(`training smoke (${g.currentBackend().name}): LoRA on a 4-bit (NF4, double-quantised) tiny CNN learns the quadrant task to ≥ 95%`, () => {
  const base = new TinyCnn(new g.Generator(1));
  const summary = quantizeModule(base, { quantType: 'nf4', doubleQuant: true, blocksize: 32 }, (p) => p === 'fc');
  assert.deepEqual(summary.layers, ['conv1', 'conv2']);
  const lora = getAdapterMethod('lora');
  const config = lora.configFromRun(SharedAdapterOptionsSchema.parse({ r: 4, alpha: 8, targets: ['conv1', 'conv2'], modulesToSave: ['fc'] }), lora.optionsSchema.parse({}));
  const peft = new PeftModel(base, lora, config, 'default', { generator: new g.Generator(3) });
  const acc = trainAndTest(peft, 60, 3e-3);
  assert.ok(acc >= 0.95, `QLoRA CNN test accuracy ${acc}`);
  for (const [k, p] of peft.model.namedParameters()) if (k.includes('base_layer') && k.endsWith('weight')) assert.equal(p.requiresGrad, false, k);
});
