// (IA)³ and OFT against PyTorch (fixtures/torch/make_ia3_oft_parity.py, PEFT's formulas): layer
// outputs and gradients of the input and the adapter parameters on Linear, Conv2d 3×3 (strided,
// dilated), 3×1, 1×1 and depthwise, and 10-step AdamW trajectories on a tiny ViT block and CNN.
// Regenerate: /usr/bin/python3 fixtures/torch/make_ia3_oft_parity.py
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as g from '../src/index.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { Ia3Layer } from '../src/adapters/ia3/layer.js';
import { OftLayer, type OftLayerOptions } from '../src/adapters/oft/layer.js';

interface T { shape: number[]; data: number[] }
interface ConvOpts { stride: number; padding: number; dilation: number; groups: number }
interface OftParams { blocks: number; b: number; neumann?: boolean; coft?: boolean; eps?: number; share?: boolean }
interface BaseSpec { W: T; b: T; conv?: ConvOpts }
type Case = Record<string, T> & { ff?: boolean; conv?: ConvOpts; p?: OftParams };
const TOL = { atol: 2e-5, rtol: 2e-4 };
const fx = JSON.parse(readFileSync(new URL('../../fixtures/torch/ia3_oft.json', import.meta.url), 'utf8')) as {
  layers: Record<string, Case>;
  trajectories: Record<string, unknown> & { vit_init: Record<string, T>; cnn_init: Record<string, T>; x_vit: T; x_cnn: T; labels: number[] };
};
const tt = (x: T) => g.tensor(Float32Array.from(x.data), x.shape);

function close(got: g.Tensor, want: T, what: string, tol = TOL) {
  assert.deepEqual([...got.shape], want.shape, `${what} shape`);
  const a = got.toArray();
  a.forEach((v, i) => assert.ok(Math.abs(v - want.data[i]!) <= tol.atol + tol.rtol * Math.abs(want.data[i]!), `${what}[${i}]: graft ${v}, PyTorch ${want.data[i]}`));
}

/** The fixture's base layer: a Linear, or a Conv2d with its kernel, stride, padding, dilation and groups. */
function baseOf(c: BaseSpec): Linear | Conv2d {
  const W = c.W;
  let base: Linear | Conv2d;
  if (c.conv) {
    const { stride, padding, dilation, groups } = c.conv;
    base = new Conv2d(W.shape[1]! * groups, W.shape[0]!, [W.shape[2]!, W.shape[3]!], { stride, padding, dilation, groups });
  } else base = new Linear(W.shape[1]!, W.shape[0]!);
  g.assign(base.weight, tt(W));
  g.assign(base.bias!, tt(c.b));
  return base.requiresGrad_(false);
}

function oftOptions(p: OftParams): OftLayerOptions {
  return {
    blocks: p.blocks, blockSize: p.b, moduleDropout: 0, coft: p.coft ?? false, eps: p.eps ?? 6e-5, blockShare: p.share ?? false,
    init: true, useCayleyNeumann: p.neumann ?? true, numCayleyNeumannTerms: 5,
  };
}

function checkLayer(layer: Ia3Layer | OftLayer, param: g.Tensor, c: Case, key: string) {
  const x = tt(c['x']!).requiresGrad_(true);
  const y = layer.forward(x);
  close(y, c['y']!, 'output');
  g.sum(g.mul(y, tt(c['w']!))).backward();
  close(x.grad!, c['gx']!, 'x gradient');
  close(param, c[`${key}_after`]!, `${key} after the forward pass`);
  close(param.grad!, c[`g_${key}`]!, `${key} gradient`);
}

for (const [name, c] of Object.entries(fx.layers).filter(([n]) => n.startsWith('ia3_'))) {
  test(`IA3 parity with PyTorch: ${name} output and gradients of x and ia3_l`, () => {
    const layer = new Ia3Layer(baseOf(c as unknown as BaseSpec));
    layer.addAdapter('default', { feedforward: c.ff!, init: true });
    const l = layer.vector('default');
    g.assign(l, tt(c['l']!));
    checkLayer(layer, l, c, 'l');
  });
}

for (const [name, c] of Object.entries(fx.layers).filter(([n]) => n.startsWith('oft_'))) {
  test(`OFT parity with PyTorch: ${name} output and gradients of x and oft_R`, () => {
    const layer = new OftLayer(baseOf(c as unknown as BaseSpec));
    layer.addAdapter('default', oftOptions(c.p!));
    const v = layer.oft_R.get('default')!.weight;
    g.assign(v, tt(c['v']!));
    checkLayer(layer, v, c, 'v');
    // The merged weight computes the same.
    g.noGrad(() => {
      const x = tt(c['x']!);
      layer.merge();
      close(layer.forward(x), c['y']!, 'merged output');
    });
  });
}

function linearOf(init: Record<string, T>, name: string): Linear {
  return baseOf({ W: init[`${name}.weight`]!, b: init[`${name}.bias`]! }) as Linear;
}

function convOf(init: Record<string, T>, name: string, padding: number): Conv2d {
  return baseOf({ W: init[`${name}.weight`]!, b: init[`${name}.bias`]!, conv: { stride: 1, padding, dilation: 1, groups: 1 } }) as Conv2d;
}

function trajectory(forward: (x: g.Tensor) => g.Tensor, layers: (Ia3Layer | OftLayer)[], x: T, losses: number[]) {
  const opt = new g.AdamW(layers.flatMap((l) => l.trainableParameters()), { lr: 1e-2, weightDecay: 1e-2 });
  const input = tt(x);
  const y = g.tensor(Int32Array.from(fx.trajectories.labels), [fx.trajectories.labels.length]);
  losses.forEach((want, i) => {
    const loss = g.tidy(() => {
      opt.zeroGrad();
      const l = g.crossEntropy(forward(input), y);
      l.backward();
      opt.step();
      return l.item();
    });
    assert.ok(Math.abs(loss - want) <= 1e-4 + 1e-4 * Math.abs(want), `step ${i + 1}: graft ${loss}, PyTorch ${want}`);
  });
}

function vitBlock(qkv: Linear | Ia3Layer | OftLayer, fc1: Linear | Ia3Layer | OftLayer, fc2: Linear | Ia3Layer | OftLayer) {
  const init = fx.trajectories.vit_init;
  const C = 16;
  const [proj, head] = ['proj', 'head'].map((n) => linearOf(init, n)) as [Linear, Linear];
  const n1w = tt(init['norm1.weight']!);
  const n1b = tt(init['norm1.bias']!);
  return (x: g.Tensor) => {
    const [B, N] = x.shape as [number, number];
    const h = g.layerNorm(x, n1w, n1b, 1e-6);
    const q = g.permute(g.reshape(qkv.forward(h), [B, N, 3, 2, C / 2]), [2, 0, 3, 1, 4]);
    const a = g.scaledDotProductAttention(g.select(q, 0, 0), g.select(q, 0, 1), g.select(q, 0, 2));
    const x1 = g.add(x, proj.forward(g.reshape(g.transpose(a, 1, 2), [B, N, C])));
    const x2 = g.add(x1, fc2.forward(g.gelu(fc1.forward(x1))));
    return head.forward(g.mean(x2, 1));
  };
}

function cnn(conv1: Ia3Layer | OftLayer, conv2: Ia3Layer | OftLayer) {
  const head = linearOf(fx.trajectories.cnn_init, 'head');
  return (x: g.Tensor) => head.forward(g.mean(g.relu(conv2.forward(g.relu(conv1.forward(x)))), [2, 3]));
}

const lossesOf = (key: string) => (fx.trajectories[key] as { losses: number[] }).losses;

test('IA3 parity with PyTorch: a tiny ViT block, 10 AdamW steps on the qkv output and the fc2 input', () => {
  const init = fx.trajectories.vit_init;
  const ia3 = (name: string, feedforward: boolean) => {
    const l = new Ia3Layer(linearOf(init, name));
    l.addAdapter('default', { feedforward, init: true });
    return l;
  };
  const qkv = ia3('qkv', false);
  const fc2 = ia3('fc2', true);
  trajectory(vitBlock(qkv, linearOf(init, 'fc1'), fc2), [qkv, fc2], fx.trajectories.x_vit, lossesOf('ia3_vit'));
});

test('IA3 parity with PyTorch: a tiny CNN, 10 AdamW steps on a 3×3 conv output and a 1×1 conv input', () => {
  const init = fx.trajectories.cnn_init;
  const conv1 = new Ia3Layer(convOf(init, 'conv1', 1));
  conv1.addAdapter('default', { feedforward: false, init: true });
  const conv2 = new Ia3Layer(convOf(init, 'conv2', 0));
  conv2.addAdapter('default', { feedforward: true, init: true });
  trajectory(cnn(conv1, conv2), [conv1, conv2], fx.trajectories.x_cnn, lossesOf('ia3_cnn'));
});

test('OFT parity with PyTorch: a tiny ViT block, 10 AdamW steps on qkv and fc1 (blocks of 4)', () => {
  const init = fx.trajectories.vit_init;
  const oft = (name: string) => {
    const l = new OftLayer(linearOf(init, name));
    l.addAdapter('default', oftOptions({ blocks: 4, b: 4 }));
    return l;
  };
  const qkv = oft('qkv');
  const fc1 = oft('fc1');
  trajectory(vitBlock(qkv, fc1, linearOf(init, 'fc2')), [qkv, fc1], fx.trajectories.x_vit, lossesOf('oft_vit'));
});

test('OFT parity with PyTorch: a tiny CNN, 10 AdamW steps on a 3×3 conv (27 features, blocks of 9) and a 1×1 conv', () => {
  const init = fx.trajectories.cnn_init;
  const conv1 = new OftLayer(convOf(init, 'conv1', 1));
  conv1.addAdapter('default', oftOptions({ blocks: 3, b: 9 }));
  const conv2 = new OftLayer(convOf(init, 'conv2', 0));
  conv2.addAdapter('default', oftOptions({ blocks: 2, b: 4 }));
  trajectory(cnn(conv1, conv2), [conv1, conv2], fx.trajectories.x_cnn, lossesOf('oft_cnn'));
});
