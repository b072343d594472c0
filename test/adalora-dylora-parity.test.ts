// AdaLoRA and DyLoRA against PyTorch (fixtures/torch/make_adalora_dylora_parity.py, from PEFT's
// AdaLoRA formulas and the official DyLoRA code): layer outputs and gradients on Linear and
// Conv2d (3×3 dilated, 1×1, depthwise), and 10-step AdamW trajectories on a tiny ViT block and a
// tiny CNN — AdaLoRA with its orthogonal regulariser and rank allocator through the method's hooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { AdaLoraLayer } from '../src/adapters/adalora/layer.js';
import { adalora } from '../src/adapters/adalora/method.js';
import { adaLoraConfig } from '../src/adapters/adalora/config.js';
import { DyLoraLayer } from '../src/adapters/dylora/layer.js';

interface T { shape: number[]; data: number[] }
interface ConvOpts { stride: number; padding: number; dilation: number; groups: number }
type Case = Record<string, T> & { alpha: number; ranknum: number; rank: number; conv?: ConvOpts };
interface Trajectory { init: Record<string, T>; x: T; labels: number[]; losses: number[]; budgets: number[]; rank_pattern: Record<string, boolean[]>; ranks: number[] }
const fx = JSON.parse(readFileSync(new URL('../../fixtures/torch/adalora_dylora.json', import.meta.url), 'utf8')) as {
  layers: Record<string, Case>;
  adalora: Record<string, Trajectory>;
  dylora: Record<string, Trajectory>;
};
const TOL = { atol: 2e-5, rtol: 2e-4 };
const tt = (x: T) => g.tensor(Float32Array.from(x.data), x.shape);

function close(got: g.Tensor, want: T, what: string) {
  assert.deepEqual([...got.shape], want.shape, `${what} shape`);
  got.toArray().forEach((v, i) => assert.ok(Math.abs(v - want.data[i]!) <= TOL.atol + TOL.rtol * Math.abs(want.data[i]!), `${what}[${i}]: graft ${v}, PyTorch ${want.data[i]}`));
}

function baseOf(c: Case): Linear | Conv2d {
  const W = c['W']!;
  const base = c.conv
    ? new Conv2d(W.shape[1]! * c.conv.groups, W.shape[0]!, W.shape[2]!, { stride: c.conv.stride, padding: c.conv.padding, dilation: c.conv.dilation, groups: c.conv.groups })
    : new Linear(W.shape[1]!, W.shape[0]!);
  g.assign(base.weight, tt(W));
  g.assign(base.bias!, tt(c['b']!));
  return base.requiresGrad_(false);
}

function checkLayer(name: string, layer: Linear | Conv2d | AdaLoraLayer | DyLoraLayer, params: Record<string, g.Tensor>) {
  const c = fx.layers[name]!;
  const x = tt(c['x']!).requiresGrad_(true);
  const y = layer.forward(x);
  close(y, c['y']!, `${name} output`);
  g.sum(g.mul(y, tt(c['w']!))).backward();
  close(x.grad!, c['gx']!, `${name} x gradient`);
  for (const [k, p] of Object.entries(params)) close(p.grad!, c[`g${k}`]!, `${name} ${k} gradient`);
}

for (const kind of ['linear', 'conv3x3', 'conv1x1', 'depthwise']) {
  test(`AdaLoRA parity with PyTorch: ${kind} output and gradients of x, A, E, B`, () => {
    const c = fx.layers[`adalora_${kind}`]!;
    const layer = new AdaLoraLayer(baseOf(c));
    layer.addAdapter('default', { r: c['E']!.shape[0]!, ranknum: c.ranknum, alpha: c.alpha, dropout: 0 });
    const t = layer.tensors('default');
    for (const k of ['A', 'E', 'B'] as const) {
      g.assign(t[k], tt(c[k]!));
      t[k].requiresGrad = true;
    }
    checkLayer(`adalora_${kind}`, layer, t);
  });
}

for (const kind of ['linear', 'conv3x3', 'conv1x1']) {
  for (const mode of ['frozen', 'prefix'] as const) {
    test(`DyLoRA parity with PyTorch: ${kind} at rank 3 of 4, ${mode}${mode === 'frozen' ? ' (only row/column 3 gets gradient)' : ''}`, () => {
      const c = fx.layers[`dylora_${kind}_${mode}`]!;
      const layer = new DyLoraLayer(baseOf(c));
      layer.addDyLora('default', { rMax: c['A']!.shape[0]!, alpha: c.alpha, dropout: 0, mode, evalRank: c.rank });
      layer.setRank('default', c.rank, 'train');
      const A = layer.lora_A.get('default')!.weight;
      const B = layer.lora_B.get('default')!.weight;
      g.assign(A, tt(c['A']!));
      g.assign(B, tt(c['B']!));
      A.requiresGrad = B.requiresGrad = true;
      layer.train(mode === 'frozen');
      checkLayer(`dylora_${kind}_${mode}`, layer, { A, B });
    });
  }
}

/** The tiny models of the fixture script, with adapter layers from `wrap` at qkv/fc1 or conv1/conv2. */
class Tiny extends Module {
  constructor(readonly kind: 'vit' | 'cnn', readonly init: Record<string, T>, wrap: (base: Linear | Conv2d, name: string) => Module) {
    super();
    const lin = (n: string) => {
      const w = init[`${n}.weight`]!;
      const l = new Linear(w.shape[1]!, w.shape[0]!);
      g.assign(l.weight, tt(w));
      g.assign(l.bias!, tt(init[`${n}.bias`]!));
      return l.requiresGrad_(false);
    };
    const conv = (n: string, padding: number) => {
      const w = init[`${n}.weight`]!;
      const l = new Conv2d(w.shape[1]!, w.shape[0]!, w.shape[2]!, { padding });
      g.assign(l.weight, tt(w));
      g.assign(l.bias!, tt(init[`${n}.bias`]!));
      return l.requiresGrad_(false);
    };
    if (kind === 'vit') {
      this.module('qkv', wrap(lin('qkv'), 'qkv'));
      this.module('fc1', wrap(lin('fc1'), 'fc1'));
      for (const n of ['proj', 'fc2', 'head']) this.module(n, lin(n));
    } else {
      this.module('conv1', wrap(conv('conv1', 1), 'conv1'));
      this.module('conv2', wrap(conv('conv2', 0), 'conv2'));
      this.module('head', lin('head'));
    }
  }
  private m(n: string): Module {
    return this.getModule(n);
  }
  forward(x: g.Tensor): g.Tensor {
    if (this.kind === 'cnn') return this.m('head').forward(g.mean(g.relu(this.m('conv2').forward(g.relu(this.m('conv1').forward(x)))), [2, 3]));
    const C = 16;
    const [B, N] = x.shape as [number, number];
    const h = g.layerNorm(x, tt(this.init['norm1.weight']!), tt(this.init['norm1.bias']!), 1e-6);
    const q = g.permute(g.reshape(this.m('qkv').forward(h), [B, N, 3, 2, C / 2]), [2, 0, 3, 1, 4]);
    const a = g.scaledDotProductAttention(g.select(q, 0, 0), g.select(q, 0, 1), g.select(q, 0, 2));
    const x1 = g.add(x, this.m('proj').forward(g.reshape(g.transpose(a, 1, 2), [B, N, C])));
    const x2 = g.add(x1, this.m('fc2').forward(g.gelu(this.m('fc1').forward(x1))));
    return this.m('head').forward(g.mean(x2, 1));
  }
}

function trajectory(model: Module, f: Trajectory, hooks: { extra?: () => g.Tensor | null; before?: (i: number) => void; after?: (step: number) => void }) {
  const opt = new g.AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 1e-2 });
  const x = tt(f.x);
  const y = g.tensor(Int32Array.from(f.labels), [f.labels.length]);
  f.losses.forEach((want, i) => {
    hooks.before?.(i);
    const loss = g.tidy(() => {
      opt.zeroGrad();
      const ce = g.crossEntropy(model.forward(x), y);
      const extra = hooks.extra?.() ?? null;
      const l = extra ? g.add(ce, extra) : ce;
      l.backward();
      opt.step();
      return l.item();
    });
    hooks.after?.(i + 1);
    assert.ok(Math.abs(loss - want) <= 1e-4 + 1e-4 * Math.abs(want), `step ${i + 1}: graft ${loss}, PyTorch ${want}`);
  });
}

for (const kind of ['vit', 'cnn'] as const) {
  test(`AdaLoRA parity with PyTorch: a tiny ${kind === 'vit' ? 'ViT block' : 'CNN'}, 10 AdamW steps with the orthogonal regulariser and the rank allocator`, () => {
    const f = fx.adalora[kind]!;
    const model = new Tiny(kind, f.init, (base, name) => {
      const l = new AdaLoraLayer(base);
      l.addAdapter('default', { r: 4, ranknum: 4, alpha: 8, dropout: 0 });
      const t = l.tensors('default');
      for (const k of ['A', 'E', 'B'] as const) {
        g.assign(t[k], tt(f.init[`${name}.lora_${k}`]!));
        t[k].requiresGrad = true;
      }
      return l;
    });
    const config = adaLoraConfig({ targetModules: [], initR: 4, targetR: 2, tinit: 2, tfinal: 2, totalStep: 10, loraAlpha: 8 });
    const hooks = adalora.trainingHooks!(model, 'default', config);
    const ctx = (step: number) => ({ step, totalSteps: 10, epoch: 0, totalEpochs: 1 });
    hooks.beforeTraining!(ctx(0));
    trajectory(model, f, { extra: () => hooks.extraLoss!(ctx(0)), after: (s) => hooks.afterStep!(ctx(s)) });
    assert.deepEqual(config.rankPattern, f.rank_pattern, 'rank_pattern after training');
  });

  test(`DyLoRA parity with PyTorch: a tiny ${kind === 'vit' ? 'ViT block' : 'CNN'}, 10 AdamW steps in frozen mode at the fixture's drawn ranks`, () => {
    const f = fx.dylora[kind]!;
    const layers: DyLoraLayer[] = [];
    const model = new Tiny(kind, f.init, (base, name) => {
      const l = new DyLoraLayer(base);
      l.addDyLora('default', { rMax: 4, alpha: 8, dropout: 0, mode: 'frozen', evalRank: 4 });
      const A = l.lora_A.get('default')!.weight;
      const B = l.lora_B.get('default')!.weight;
      g.assign(A, tt(f.init[`${name}.lora_A`]!));
      g.assign(B, tt(f.init[`${name}.lora_B`]!));
      A.requiresGrad = B.requiresGrad = true;
      layers.push(l);
      return l;
    });
    model.train();
    trajectory(model, f, { before: (i) => layers.forEach((l) => l.setRank('default', f.ranks[i]!, 'train')) });
  });
}
