// Mona against PyTorch (fixtures/torch/make_mona_parity.py: the reference module and its
// placement): outputs, input gradients and every Mona tensor's gradient, on a Swin block
// (channels-last map, d = 64), a timm ViT block (3 prefix tokens around the convolutions, a 3×4
// patch grid) and a ConvNeXt block (channels-first map).
// Regenerate: /usr/bin/python3 fixtures/torch/make_mona_parity.py
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as g from '../src/index.js';
import type { Module } from '../src/nn/module.js';
import { TokenGrid, type TappedBlock } from '../src/nn/residual-taps.js';
import { SwinTransformerBlock } from '../src/models/swin.js';
import { CNBlock } from '../src/models/cnn/convnext.js';
import { Block, TIMM_VIT_MODELS } from '../src/models/vit/index.js';
import { MonaLayer } from '../src/adapters/mona/layer.js';
import { detValues } from './helpers/det-weights.js';

interface T { shape: number[]; data: number[] }
interface Case { channels: number; dim: number; prefix?: number; grid?: [number, number]; x_shape: number[]; y: T; gx: number[]; grads: Record<string, T> }
const fx = JSON.parse(readFileSync(new URL('../../fixtures/torch/mona.json', import.meta.url), 'utf8')) as Record<'swin' | 'vit' | 'convnext', Case>;
const TOL = { atol: 3e-5, rtol: 3e-4 };

function close(got: g.Tensor | Float32Array, want: number[], what: string) {
  const a = got instanceof Float32Array ? got : got.toArray();
  assert.equal(a.length, want.length, `${what} size`);
  let worst = 0;
  a.forEach((v, i) => {
    const err = Math.abs(v - want[i]!) - TOL.rtol * Math.abs(want[i]!);
    worst = Math.max(worst, err);
    assert.ok(err <= TOL.atol, `${what}[${i}]: graft ${v}, PyTorch ${want[i]}`);
  });
  return worst;
}

/** The fixture's weights: det_values by name (the block's own names, Mona's as mona_<i>.<name>), gamma + 0.5. */
function fill(layer: MonaLayer): void {
  g.noGrad(() => {
    for (const [key, t] of [...layer.namedParameters(), ...layer.namedBuffers()]) {
      if (t.dtype !== 'float32') continue;
      const name = key.startsWith('base_layer.') ? key.slice('base_layer.'.length) : key.replace(/^(mona_\d)\.default\./, '$1.');
      let v = detValues(name, t.shape);
      if (/^mona_\d\.gamma$/.test(name)) v = v.map((e) => e + 0.5);
      g.assign(t, g.tensor(v, t.shape));
    }
  });
}

function check(c: Case, block: TappedBlock, what: string) {
  const layer = new MonaLayer(block);
  layer.addAdapter('default', { dim: c.dim, dropout: 0.1, zeroInitUp: false, generator: new g.Generator(0) });
  fill(layer);
  (block as Module).requiresGrad_(false);
  layer.eval();
  const n = c.x_shape.reduce((a, b) => a * b, 1);
  const x = g.tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 + 0.113 * i)), c.x_shape).requiresGrad_(true);
  const y = layer.forward(x);
  assert.deepEqual([...y.shape], c.y.shape);
  close(y, c.y.data, `${what} output`);
  const w = g.tensor(Float32Array.from({ length: y.size }, (_, i) => Math.cos(0.29 + 0.071 * i)), y.shape);
  g.sum(g.mul(y, w)).backward();
  close(x.grad!, c.gx, `${what} input gradient`);
  const params = new Map(layer.namedParameters().map(([k, p]) => [k.replace(/^(mona_\d)\.default\./, '$1.'), p]));
  for (const [name, want] of Object.entries(c.grads)) {
    const p = params.get(name);
    assert.ok(p, `${what}: graft has no ${name}`);
    assert.deepEqual([...p.shape], want.shape, `${what} ${name} shape`);
    close(p.grad!, want.data, `${what} ${name} gradient`);
  }
  assert.equal(params.size - layer.base_layer.namedParameters().length, Object.keys(c.grads).length, `${what}: the same Mona tensors`);
}

test('mona parity: Swin-T-shaped block, Mona after the attention and MLP residuals (d = 64)', () => {
  check(fx.swin, new SwinTransformerBlock(16, 2, [4, 4], [2, 2], 4, 0, 0), 'swin');
});

test('mona parity: ViT-S-shaped block, prefix tokens around the convolutions on a 3×4 grid', () => {
  const c = fx.vit;
  const config = { ...TIMM_VIT_MODELS['vit_small_patch16_224']!.config, embedDim: 24, numHeads: 3, initValues: 0.5 };
  check(c, new Block(config, 0, new TokenGrid(c.prefix!, c.grid!)), 'vit');
});

test('mona parity: ConvNeXt-T-shaped block, Mona after the block (channels-first map)', () => {
  check(fx.convnext, new CNBlock(24, 0.5, 0), 'convnext');
});
