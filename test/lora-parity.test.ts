// LoRA and DoRA against PyTorch (fixtures/torch/make_lora_parity.py, PEFT's formulas): layer
// outputs and gradients on Linear and Conv2d, and 10-step AdamW trajectories with LoRA.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as g from '../src/index.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { LoraLayer } from '../src/adapters/lora/layer.js';
import { dora } from '../src/adapters/lora/dora.js';

interface T { shape: number[]; data: number[] }
const TOL = { atol: 2e-5, rtol: 2e-4 };
const fx = JSON.parse(readFileSync(new URL('../../fixtures/torch/lora.json', import.meta.url), 'utf8')) as {
  layers: Record<string, { x: T; W: T; b: T; A: T; B: T; m: T | null; scaling: number; y: T; w: T; gx: T; gA: T; gB: T; gm: T | null }>;
  trajectories: Record<string, { init: Record<string, T>; x: T; labels: number[]; losses: number[] }>;
};
const tt = (x: T) => g.tensor(Float32Array.from(x.data), x.shape);

function close(got: g.Tensor, want: T, what: string, tol = TOL) {
  assert.deepEqual([...got.shape], want.shape, `${what} shape`);
  const a = got.toArray();
  a.forEach((v, i) => assert.ok(Math.abs(v - want.data[i]!) <= tol.atol + tol.rtol * Math.abs(want.data[i]!), `${what}[${i}]: graft ${v}, PyTorch ${want.data[i]}`));
}

/** A LoRA layer around `base` with the fixture's A, B (and DoRA magnitude), scaling = alpha / r. */
function layerFrom(base: Linear | Conv2d, c: { A: T; B: T; m: T | null; scaling: number }): LoraLayer {
  const r = c.A.shape[0]!;
  const l = new LoraLayer(base);
  l.addAdapter('default', { r, alpha: c.scaling * r, dropout: 0, useRslora: false, init: true, variant: c.m ? dora : null });
  g.assign(l.lora_A.get('default')!.weight, tt(c.A));
  g.assign(l.lora_B.get('default')!.weight, tt(c.B));
  if (c.m) g.assign(l.lora_magnitude_vector.get('default')!.weight, tt(c.m));
  return l;
}

for (const name of ['lora_linear', 'dora_linear', 'lora_conv', 'dora_conv']) {
  test(`LoRA parity with PyTorch: ${name} output and gradients of x, A, B${name.startsWith('dora') ? ', magnitude' : ''}`, () => {
    const c = fx.layers[name]!;
    const isConv = name.endsWith('conv');
    const base = isConv ? new Conv2d(3, 4, 3, { stride: 2, padding: 2, dilation: 2 }) : new Linear(5, 6);
    g.assign(base.weight, tt(c.W));
    g.assign(base.bias!, tt(c.b));
    base.requiresGrad_(false);
    const layer = layerFrom(base, c);
    const x = tt(c.x).requiresGrad_(true);
    const y = layer.forward(x);
    close(y, c.y, 'output');
    g.sum(g.mul(y, tt(c.w))).backward();
    close(x.grad!, c.gx, 'x gradient');
    close(layer.lora_A.get('default')!.weight.grad!, c.gA, 'lora_A gradient');
    close(layer.lora_B.get('default')!.weight.grad!, c.gB, 'lora_B gradient');
    if (c.gm) close(layer.lora_magnitude_vector.get('default')!.weight.grad!, c.gm, 'magnitude gradient');
  });
}

function linearOf(init: Record<string, T>, name: string): Linear {
  const w = init[`${name}.weight`]!;
  const l = new Linear(w.shape[1]!, w.shape[0]!);
  g.assign(l.weight, tt(w));
  g.assign(l.bias!, tt(init[`${name}.bias`]!));
  return l.requiresGrad_(false);
}

function convOf(init: Record<string, T>, name: string, padding: number): Conv2d {
  const w = init[`${name}.weight`]!;
  const c = new Conv2d(w.shape[1]!, w.shape[0]!, w.shape[2]!, { padding });
  g.assign(c.weight, tt(w));
  g.assign(c.bias!, tt(init[`${name}.bias`]!));
  return c.requiresGrad_(false);
}

function loraOf(base: Linear | Conv2d, init: Record<string, T>, name: string): LoraLayer {
  return layerFrom(base, { A: init[`${name}.lora_A`]!, B: init[`${name}.lora_B`]!, m: null, scaling: 2 });
}

function trajectory(forward: (x: g.Tensor) => g.Tensor, params: g.Tensor[], f: { x: T; labels: number[]; losses: number[] }) {
  const opt = new g.AdamW(params, { lr: 1e-2, weightDecay: 1e-2 });
  const x = tt(f.x);
  const y = g.tensor(Int32Array.from(f.labels), [f.labels.length]);
  f.losses.forEach((want, i) => {
    const loss = g.tidy(() => {
      opt.zeroGrad();
      const l = g.crossEntropy(forward(x), y);
      l.backward();
      opt.step();
      return l.item();
    });
    assert.ok(Math.abs(loss - want) <= 1e-4 + 1e-4 * Math.abs(want), `step ${i + 1}: graft ${loss}, PyTorch ${want}`);
  });
}

test('LoRA parity with PyTorch: a tiny ViT block, 10 AdamW steps on LoRA of qkv and fc1', () => {
  const f = fx.trajectories['vit']!;
  const C = 16;
  const qkv = loraOf(linearOf(f.init, 'qkv'), f.init, 'qkv');
  const fc1 = loraOf(linearOf(f.init, 'fc1'), f.init, 'fc1');
  const [proj, fc2, head] = ['proj', 'fc2', 'head'].map((n) => linearOf(f.init, n)) as [Linear, Linear, Linear];
  const n1w = tt(f.init['norm1.weight']!);
  const n1b = tt(f.init['norm1.bias']!);
  const forward = (x: g.Tensor) => {
    const [B, N] = x.shape as [number, number];
    const h = g.layerNorm(x, n1w, n1b, 1e-6);
    const q = g.permute(g.reshape(qkv.forward(h), [B, N, 3, 2, C / 2]), [2, 0, 3, 1, 4]);
    const a = g.scaledDotProductAttention(g.select(q, 0, 0), g.select(q, 0, 1), g.select(q, 0, 2));
    const x1 = g.add(x, proj.forward(g.reshape(g.transpose(a, 1, 2), [B, N, C])));
    const x2 = g.add(x1, fc2.forward(g.gelu(fc1.forward(x1))));
    return head.forward(g.mean(x2, 1));
  };
  trajectory(forward, [...qkv.trainableParameters(), ...fc1.trainableParameters()], f);
});

test('LoRA parity with PyTorch: a tiny CNN, 10 AdamW steps on LoRA of a 3×3 and a 1×1 convolution', () => {
  const f = fx.trajectories['cnn']!;
  const conv1 = loraOf(convOf(f.init, 'conv1', 1), f.init, 'conv1');
  const conv2 = loraOf(convOf(f.init, 'conv2', 0), f.init, 'conv2');
  const head = linearOf(f.init, 'head');
  const forward = (x: g.Tensor) => head.forward(g.mean(g.relu(conv2.forward(g.relu(conv1.forward(x)))), [2, 3]));
  trajectory(forward, [...conv1.trainableParameters(), ...conv2.trainableParameters()], f);
});
