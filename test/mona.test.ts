// Mona on graft's backbones: where the modules go (both taps of every Swin, ViT, DeiT, DINOv2 and
// DINOv3 block, one after every ConvNeXt block), the reference initialisation and size, the
// identity option, prefix tokens and the patch grid (non-square inputs), what is trained, the
// errors, and `graft train --method mona --mona-dim` end to end with its adapter folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as g from '../src/index.js';
import '../src/models/all.js';
import { createModel } from '../src/models/registry.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { MonaLayer } from '../src/adapters/mona/layer.js';
import { Mona, monaParameterCount } from '../src/adapters/mona/module.js';
import { monaConfig } from '../src/adapters/mona/config.js';
import { isTappedBlock } from '../src/nn/residual-taps.js';
import type { Module } from '../src/nn/module.js';

const hf = { numHiddenLayers: 2, hiddenSize: 32, numAttentionHeads: 2 };
const FAMILIES: { name: string; overrides: Record<string, unknown>; blocks: number; taps: number; head: string; prefix?: number; input: number[] }[] = [
  { name: 'swin_tiny', overrides: { embedDim: 16, depths: [2, 1], numHeads: [1, 2], windowSize: [2, 2] }, blocks: 3, taps: 2, head: 'head', input: [2, 3, 32, 32] },
  { name: 'vit_small_patch16_224', overrides: { depth: 2, embedDim: 32, numHeads: 2 }, blocks: 2, taps: 2, head: 'head', prefix: 1, input: [2, 3, 32, 48] },
  { name: 'deit_small_patch16_224', overrides: { depth: 2, embedDim: 32, numHeads: 2 }, blocks: 2, taps: 2, head: 'head', prefix: 1, input: [2, 3, 32, 32] },
  { name: 'dinov2_small_reg', overrides: hf, blocks: 2, taps: 2, head: 'classifier', prefix: 5, input: [2, 3, 28, 42] },
  { name: 'dinov3_vits16', overrides: { ...hf, intermediateSize: 64 }, blocks: 2, taps: 2, head: 'classifier', prefix: 5, input: [2, 3, 32, 48] },
  { name: 'convnext_tiny', overrides: { blockSetting: [[8, 16, 2], [16, null, 1]] }, blocks: 3, taps: 1, head: 'classifier.2', input: [2, 3, 32, 32] },
];

const maxDiff = (a: g.Tensor, b: g.Tensor) => Math.max(...Array.from(a.toArray(), (v, i) => Math.abs(v - b.toArray()[i]!)));

for (const f of FAMILIES) {
  const make = () => {
    g.manualSeed(3);
    return createModel(f.name, { numClasses: 3, imageSize: 32, overrides: f.overrides });
  };

  test(`mona ${f.name}: a module at each of the ${f.taps} taps of all ${f.blocks} blocks; only Mona and the head train`, () => {
    const peft = new PeftModel(make(), 'mona', monaConfig({ modulesToSave: [f.head] }), 'default', { generator: new g.Generator(1) });
    const layers = peft.adapterLayers();
    assert.equal(layers.length, f.blocks, layers.map(([p]) => p).join(', '));
    for (const [path, l] of layers) {
      assert.ok(l instanceof MonaLayer, path);
      const ml = l as unknown as MonaLayer;
      assert.equal(ml.adapterDicts.length, f.taps, `${path} taps`);
      for (let t = 0; t < f.taps; t++) {
        const m: Mona = ml.mona('default', t);
        const c = m.channels;
        assert.equal(m.project1.outFeatures, 64, 'inner width 64 by default');
        assert.ok(m.gamma.toArray().every((v) => Math.abs(v - 1e-6) < 1e-12), 'gamma starts at 1e-6');
        assert.ok(m.gammax.toArray().every((v) => v === 1), 'gammax starts at 1');
        assert.equal(m.parameters().reduce((a, p) => a + p.size, 0), 133 * c + 9728, 'parameters of one module: 133·C + 9728');
      }
    }
    for (const [key, p] of peft.model.namedParameters()) {
      const own = /\.mona_\d\.default\./.test(key) || key.includes('.modules_to_save.default.');
      assert.equal(p.requiresGrad, own, key);
    }
  });

  test(`mona ${f.name}: with project2 zero-initialised the output at init is the base's (within 1e-5); the reference init changes it`, () => {
    const x = g.randn(f.input, { generator: new g.Generator(2) });
    const base = make().eval();
    const want = g.noGrad(() => base.forward(x));
    const identity = new PeftModel(base, 'mona', monaConfig({ zeroInitUp: true }), 'default', { generator: new g.Generator(1) });
    identity.eval();
    assert.ok(maxDiff(g.noGrad(() => identity.forward(x)), want) <= 1e-5);
    const reference = new PeftModel(make().eval(), 'mona', monaConfig({}), 'default', { generator: new g.Generator(1) });
    reference.eval();
    assert.ok(maxDiff(g.noGrad(() => reference.forward(x)), want) > 1e-4, 'the reference init is not the identity');
  });
}

test('mona: a ViT\'s taps see its current patch grid (non-square input), prefix tokens first', () => {
  const model = createModel('dinov2_small_reg', { numClasses: 3, imageSize: 28, overrides: hf }) as unknown as Module & { tokenGrid: { grid: [number, number]; prefix: number } };
  const peft = new PeftModel(model, 'mona', monaConfig({}), 'default', { generator: new g.Generator(1) });
  // 28×42 pixels are a 2×3 grid of 14-pixel patches after 1 + 4 prefix tokens: the modules reshape 6 tokens, not a square.
  const out = g.noGrad(() => peft.forward(g.randn([1, 3, 28, 42])));
  assert.deepEqual([...out.shape], [1, 3]);
  assert.deepEqual(model.tokenGrid.grid, [2, 3]);
  assert.equal(model.tokenGrid.prefix, 5);
  assert.ok(isTappedBlock(model.getModule('encoder.layer.0.base_layer')));
});

test('mona: on tokens, the patch tokens run as the (h, w) map and the prefix tokens skip the convolutions', () => {
  const gen = new g.Generator(4);
  const m = new Mona(8, { dim: 4, dropout: 0.1, zeroInitUp: false, generator: gen }).eval();
  const [b, p, h, w] = [2, 2, 3, 4];
  const tokens = g.randn([b, p + h * w, 8], { generator: gen });
  const out = g.noGrad(() => m.forwardLayout(tokens, { kind: 'tokens', prefix: p, grid: [h, w] }));
  const map = g.reshape(g.slice(tokens, 1, p), [b, h, w, 8]);
  const onMap = g.noGrad(() => m.forward(map));
  assert.ok(maxDiff(g.slice(out, 1, p), g.reshape(onMap, [b, h * w, 8])) < 1e-6, 'patch tokens = Mona on the row-major map');
  // A prefix token sees no convolution: its result is the module with MonaOp left out.
  const cls = g.slice(tokens, 1, 0, p);
  const noConv = g.noGrad(() => g.add(cls, m.project2.forward(g.gelu(m.project1.forward(g.add(g.mul(m.norm.forward(cls), m.gamma), g.mul(cls, m.gammax)))))));
  assert.ok(maxDiff(g.slice(out, 1, 0, p), noConv) < 1e-6);
  assert.throws(() => m.forwardLayout(tokens, { kind: 'tokens', prefix: 1, grid: [h, w] }), /do not make 1 prefix tokens and a 3×4 patch grid/);
  assert.equal(monaParameterCount(96, 64), 133 * 96 + 9728);
});

test('mona: errors name what to do (a CNN without blocks, all-linear, dropout, merge)', () => {
  const resnet = createModel('resnet18', { numClasses: 3, overrides: { layers: [1, 1, 1, 1] } });
  assert.throws(() => new PeftModel(resnet, 'mona', monaConfig({})), /'all-blocks' takes every module mona adapts, blocks with residual taps/);
  assert.throws(() => monaConfig({ targetModules: 'all-linear' }), /inserts modules into blocks, not Linear layers/);
  const vit = createModel('vit_small_patch16_224', { numClasses: 3, imageSize: 32, overrides: { depth: 2, embedDim: 32, numHeads: 2 } });
  assert.throws(() => new PeftModel(vit, 'mona', monaConfig({ targetModules: ['qkv'] })), /target 'blocks\.0\.attn\.qkv' is a Linear; mona adapts blocks with residual taps/);
  const peft = new PeftModel(vit, 'mona', monaConfig({ targetModules: ['blocks.1'] }));
  assert.deepEqual(peft.adapterLayers().map(([p]) => p), ['blocks.1']);
  assert.throws(() => peft.merge(), /cannot be merged into the base model/);
});

test('mona: graft train --method mona --mona-dim 16 on a tiny folder; the adapter folder reloads for eval', async () => {
  const root = mkdtempSync(join(tmpdir(), 'graft-mona-'));
  const data = join(root, 'images');
  for (const [c, v] of [['dark', 40], ['light', 210]] as const) {
    mkdirSync(join(data, c), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const px = Buffer.alloc(32 * 32 * 3, v + 7 * i);
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, c, `${i}.png`));
    }
  }
  const cfg = join(root, 'run.json');
  writeFileSync(cfg, JSON.stringify({ model: 'swin_tiny', modelOverrides: { embedDim: 16, depths: [1, 1], numHeads: [1, 2], windowSize: [2, 2] }, data: { source: data, perClass: 2, imageSize: 32 } }));
  const run = join(root, 'run');
  const graft = (...args: string[]) => spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 240_000 });
  const t = graft('train', '-c', cfg, '--method', 'mona', '--mona-dim', '16', '--epochs', '1', '--batch-size', '2', '--output', run);
  assert.equal(t.status, 0, t.stderr + t.stdout);
  assert.match(t.stdout, /test accuracy \d+\.\d+%/);
  const json = JSON.parse(readFileSync(join(run, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(json['peft_type'], 'MONA');
  assert.equal(json['mona_dim'], 16);
  assert.equal(json['target_modules'], 'all-blocks');
  assert.ok(existsSync(join(run, 'adapter', 'adapter_model.safetensors')));
  const e = graft('eval', run, '--data', data);
  assert.equal(e.status, 0, e.stderr);
  const i = graft('inspect', run);
  assert.equal(i.status, 0, i.stderr);
  assert.match(i.stdout, /mona \(peft_type MONA\)/);
  assert.match(i.stdout, /features\.1\.0/);
  const m = graft('merge', run, '--output', join(root, 'merged.safetensors'));
  assert.equal(m.status, 2);
  assert.match(m.stderr, /cannot be merged/);
  const wrong = graft('train', '-c', cfg, '--method', 'lora', '--mona-dim', '16', '--epochs', '1', '--output', join(root, 'run-lora'));
  assert.equal(wrong.status, 2, wrong.stderr);
  assert.match(wrong.stderr, /--mona-dim sets Mona's inner width, but the method is lora; add --method mona/);
  assert.match(t.stdout, /targets all-blocks · d 16/);
  const linear = graft('train', '-c', cfg, '--method', 'mona', '--targets', 'all-linear', '--epochs', '1', '--output', join(root, 'run-linear'));
  assert.equal(linear.status, 2, linear.stderr);
  assert.match(linear.stderr, /Mona inserts modules into blocks, not Linear layers/);
});

test('mona: the reference initialisation: project1 and project2 a 0.02-std normal with zero biases, gamma 1e-6, gammax 1', () => {
  const m = new Mona(96, { dim: 64, dropout: 0.1, zeroInitUp: false, generator: new g.Generator(5) });
  for (const lin of [m.project1, m.project2]) {
    const w = Array.from(lin.weight.toArray());
    const mean = w.reduce((a, v) => a + v, 0) / w.length;
    const std = Math.sqrt(w.reduce((a, v) => a + (v - mean) ** 2, 0) / w.length);
    assert.ok(Math.abs(mean) < 2e-3 && Math.abs(std - 0.02) < 1.5e-3, `weight mean ${mean}, std ${std}`);
    assert.ok(lin.bias!.toArray().every((v) => v === 0), 'bias 0');
  }
  // The depthwise convolutions keep PyTorch's default init: uniform within 1/sqrt(fan_in) = 1/k.
  for (const [conv, k] of [[m.adapter_conv.conv1, 3], [m.adapter_conv.conv2, 5], [m.adapter_conv.conv3, 7]] as const) {
    const w = Array.from(conv.weight.toArray());
    assert.ok(w.every((v) => Math.abs(v) <= 1 / k) && Math.max(...w.map(Math.abs)) > 0.8 / k, `conv ${k}×${k}`);
  }
  const zero = new Mona(96, { dim: 64, dropout: 0.1, zeroInitUp: true, generator: new g.Generator(5) });
  assert.ok(zero.project2.weight.toArray().every((v) => v === 0));
});

test('mona: the backbone\'s norms train too when named in modulesToSave, and the adapter folder reloads them', () => {
  const make = () => {
    g.manualSeed(3);
    return createModel('vit_small_patch16_224', { numClasses: 3, imageSize: 32, overrides: { depth: 2, embedDim: 32, numHeads: 2 } });
  };
  const peft = new PeftModel(make(), 'mona', monaConfig({ modulesToSave: ['head', 'norm1', 'norm2'] }), 'default', { generator: new g.Generator(1) });
  const trainable = peft.model.namedParameters().filter(([, p]) => p.requiresGrad).map(([k]) => k);
  assert.ok(trainable.includes('blocks.0.base_layer.norm1.modules_to_save.default.weight'), trainable.join(', '));
  assert.ok(trainable.includes('blocks.1.base_layer.norm2.modules_to_save.default.bias'));
  assert.ok(!trainable.some((k) => /attn|mlp\.fc/.test(k) && !k.includes('mona_')), 'attention and MLP stay frozen');
  g.noGrad(() => {
    for (const [k, p] of peft.model.namedParameters()) if (p.requiresGrad && k.includes('norm')) g.assign(p, g.add(p, 0.3));
  });
  peft.eval();
  const x = g.randn([2, 3, 32, 32], { generator: new g.Generator(6) });
  const want = g.noGrad(() => peft.forward(x));
  const dir = mkdtempSync(join(tmpdir(), 'graft-mona-norms-'));
  peft.saveAdapter(dir);
  const again = new PeftModel(make(), 'mona', monaConfig({ modulesToSave: ['head', 'norm1', 'norm2'] }), 'other', { generator: new g.Generator(9) });
  again.loadAdapter(dir, 'default');
  again.setAdapter('default');
  again.eval();
  assert.ok(maxDiff(g.noGrad(() => again.forward(x)), want) < 1e-6);
});
