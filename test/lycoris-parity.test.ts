// LoHa and LoKr against PyTorch (fixtures/torch/make_lycoris_parity.py, PEFT's formulas): the
// factors graft creates (PEFT's names and shapes), layer outputs and gradients of the input and
// every factor on Linear, Conv2d 3×3, 1×1, depthwise and grouped, and 10-step AdamW trajectories
// of a tiny ViT block and a tiny CNN. Regenerate: /usr/bin/python3 fixtures/torch/make_lycoris_parity.py
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as g from '../src/index.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import type { LycorisLayer } from '../src/adapters/lycoris/layer.js';
import { LohaLayer } from '../src/adapters/loha/layer.js';
import { LokrLayer } from '../src/adapters/lokr/layer.js';

interface T { shape: number[]; data: number[] }
interface BaseSpec { kind: 'linear' | 'conv'; in: number; out: number; k?: [number, number]; stride?: number; padding?: number; dilation?: number; groups?: number }
interface Options { r: number; alpha: number; effective?: boolean; decompose_both?: boolean; factor?: number }
type Method = 'loha' | 'lokr';
const TOL = { atol: 2e-5, rtol: 2e-4 };
const fx = JSON.parse(readFileSync(new URL('../../fixtures/torch/lycoris.json', import.meta.url), 'utf8')) as {
  layers: Record<string, { method: Method; base: BaseSpec; options: Options; x: T; W: T; b: T; y: T; w: T; gx: T; params: Record<string, T>; grads: Record<string, T> }>;
  trajectories: Record<string, { options: Options; init: Record<string, T>; x: T; labels: number[]; losses: number[] }>;
};
const tt = (x: T) => g.tensor(Float32Array.from(x.data), x.shape);

function close(got: g.Tensor, want: T, what: string) {
  assert.deepEqual([...got.shape], want.shape, `${what} shape`);
  const a = got.toArray();
  a.forEach((v, i) => assert.ok(Math.abs(v - want.data[i]!) <= TOL.atol + TOL.rtol * Math.abs(want.data[i]!), `${what}[${i}]: graft ${v}, PyTorch ${want.data[i]}`));
}

/** A LoHa or LoKr layer with PEFT's default init around `base`, the options as the fixture names them. */
function adapterLayer(method: Method, base: Linear | Conv2d, o: Options): LycorisLayer {
  const common = { r: o.r, alpha: o.alpha, rankDropout: 0, moduleDropout: 0, useEffectiveConv2d: o.effective ?? false };
  if (method === 'loha') {
    const l = new LohaLayer(base);
    l.addAdapter('default', { ...common, initWeights: true });
    return l;
  }
  const l = new LokrLayer(base);
  l.addAdapter('default', { ...common, rankDropoutScale: false, decomposeBoth: o.decompose_both ?? false, decomposeFactor: o.factor ?? -1, initWeights: true });
  return l;
}

/** Checks that the layer holds exactly the fixture's factors (PEFT's names and shapes) and loads their values. */
function loadFactors(layer: LycorisLayer, params: Record<string, T>, what: string): Map<string, g.Tensor> {
  const own = new Map(layer.adapterState('default').map(([k, t]) => [layer.peftKey(k, 'default')!, t]));
  assert.deepEqual([...own].map(([k, t]) => [k, [...t.shape]]).sort(), Object.entries(params).map(([k, t]) => [k, t.shape]).sort(), `${what}: factor names and shapes`);
  for (const [k, t] of own) g.assign(t, tt(params[k]!));
  return own;
}

function baseOf(b: BaseSpec, W: T, bias: T): Linear | Conv2d {
  const m = b.kind === 'linear' ? new Linear(b.in, b.out) : new Conv2d(b.in, b.out, b.k!, { stride: b.stride, padding: b.padding, dilation: b.dilation, groups: b.groups });
  g.assign(m.weight, tt(W));
  g.assign(m.bias!, tt(bias));
  return m.requiresGrad_(false);
}

for (const [name, c] of Object.entries(fx.layers)) {
  test(`LyCORIS parity with PyTorch: ${name} factors, output and gradients of x and every factor`, () => {
    const layer = adapterLayer(c.method, baseOf(c.base, c.W, c.b), c.options);
    const factors = loadFactors(layer, c.params, name);
    const x = tt(c.x).requiresGrad_(true);
    const y = layer.forward(x);
    close(y, c.y, 'output');
    g.sum(g.mul(y, tt(c.w))).backward();
    close(x.grad!, c.gx, 'x gradient');
    for (const [k, t] of factors) close(t.grad!, c.grads[k]!, `${k} gradient`);
  });
}

function linearOf(init: Record<string, T>, name: string): Linear {
  const w = init[`${name}.weight`]!;
  return baseOf({ kind: 'linear', in: w.shape[1]!, out: w.shape[0]! }, w, init[`${name}.bias`]!) as Linear;
}

function convOf(init: Record<string, T>, name: string, padding: number, groups = 1): Conv2d {
  const w = init[`${name}.weight`]!;
  return baseOf({ kind: 'conv', in: w.shape[1]! * groups, out: w.shape[0]!, k: [w.shape[2]!, w.shape[3]!], padding, groups }, w, init[`${name}.bias`]!) as Conv2d;
}

/** The adapter layer on `base` with the trajectory's initial factors (the fixture's `<name>.<factor>` entries). */
function adapted(method: Method, base: Linear | Conv2d, f: { options: Options; init: Record<string, T> }, name: string): LycorisLayer {
  const layer = adapterLayer(method, base, f.options);
  const params = Object.fromEntries(Object.entries(f.init).filter(([k]) => k.startsWith(`${name}.`) && !/\.(weight|bias)$/.test(k)).map(([k, t]) => [k.slice(name.length + 1), t]));
  loadFactors(layer, params, name);
  return layer;
}

function trajectory(forward: (x: g.Tensor) => g.Tensor, layers: LycorisLayer[], f: { x: T; labels: number[]; losses: number[] }) {
  const opt = new g.AdamW(layers.flatMap((l) => l.trainableParameters()), { lr: 1e-2, weightDecay: 1e-2 });
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

for (const method of ['loha', 'lokr'] as const) {
  test(`LyCORIS parity with PyTorch: a tiny ViT block, 10 AdamW steps on ${method} of qkv and fc1`, () => {
    const f = fx.trajectories[`${method}_vit`]!;
    const C = 16;
    const qkv = adapted(method, linearOf(f.init, 'qkv'), f, 'qkv');
    const fc1 = adapted(method, linearOf(f.init, 'fc1'), f, 'fc1');
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
    trajectory(forward, [qkv, fc1], f);
  });

  test(`LyCORIS parity with PyTorch: a tiny CNN, 10 AdamW steps on ${method} of a 3×3, a depthwise and a 1×1 convolution`, () => {
    const f = fx.trajectories[`${method}_cnn`]!;
    const conv1 = adapted(method, convOf(f.init, 'conv1', 1), f, 'conv1');
    const dw = adapted(method, convOf(f.init, 'dw', 1, 8), f, 'dw');
    const conv2 = adapted(method, convOf(f.init, 'conv2', 0), f, 'conv2');
    const head = linearOf(f.init, 'head');
    const forward = (x: g.Tensor) => head.forward(g.mean(g.relu(conv2.forward(g.relu(dw.forward(g.relu(conv1.forward(x)))))), [2, 3]));
    trajectory(forward, [conv1, dw, conv2], f);
  });
}
