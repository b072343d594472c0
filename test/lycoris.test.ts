// LoHa and LoKr specifics: LoKr's factorisation rule and PEFT's size anchor, the exact files PEFT
// writes (keys and config fields), reading PEFT's own configs, rank and module dropout in
// training only, and configuration errors that name the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Conv2d, Linear } from '../src/nn/layers.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { lohaConfig, lohaFromPeftJson } from '../src/adapters/loha/config.js';
import { lokrConfig, lokrFromPeftJson } from '../src/adapters/lokr/config.js';
import { LohaLayer } from '../src/adapters/loha/layer.js';
import { LokrLayer } from '../src/adapters/lokr/layer.js';
import { factorization } from '../src/adapters/lokr/factorization.js';
import { runConfigSchema } from '../src/train/run-config.js';
import { SafetensorsFile } from '../src/io/safetensors.js';

class SmallNet extends Module {
  stem: Conv2d;
  dw: Conv2d;
  pw: Conv2d;
  fc: Linear;
  head: Linear;
  constructor(gen: g.Generator) {
    super();
    this.stem = this.module('stem', new Conv2d(3, 8, 3, { padding: 1, generator: gen }));
    this.dw = this.module('dw', new Conv2d(8, 8, 3, { padding: 1, groups: 8, generator: gen }));
    this.pw = this.module('pw', new Conv2d(8, 16, 1, { generator: gen }));
    this.fc = this.module('fc', new Linear(16, 12, { generator: gen }));
    this.head = this.module('head', new Linear(12, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    const h = g.relu(this.pw.forward(g.relu(this.dw.forward(g.relu(this.stem.forward(x))))));
    return this.head.forward(g.relu(this.fc.forward(g.mean(h, [2, 3]))));
  }
}

const fx = JSON.parse(readFileSync(new URL('../../fixtures/torch/lycoris.json', import.meta.url), 'utf8')) as { factorization: [number, number, [number, number]][] };

test('LoKr factorization follows PEFT: the fixture anchors and peft-facts.md', () => {
  for (const [dim, factor, want] of fx.factorization) assert.deepEqual(factorization(dim, factor), want, `factorization(${dim}, ${factor})`);
  assert.deepEqual(factorization(768), [24, 32]);
  assert.deepEqual(factorization(3072), [48, 64]);
  assert.deepEqual(factorization(768, 8), [8, 96]);
  // A dividing factor is taken as given, even above its cofactor.
  assert.deepEqual(factorization(8, 4), [4, 2]);
});

test('LoKr on a 768×768 Linear at r=8: w1 24×24 full, w2 = w2_a (32×8) w2_b (8×32), 1,088 parameters (PEFT anchor)', () => {
  const layer = new LokrLayer(new Linear(768, 768));
  layer.addAdapter('default', { r: 8, alpha: 8, rankDropout: 0, moduleDropout: 0, rankDropoutScale: false, useEffectiveConv2d: false, decomposeBoth: false, decomposeFactor: -1, initWeights: true });
  const shapes = Object.fromEntries(layer.adapterState('default').map(([k, t]) => [layer.peftKey(k, 'default'), t.shape]));
  assert.deepEqual(shapes, { lokr_w1: [24, 24], lokr_w2_a: [32, 8], lokr_w2_b: [8, 32] });
  assert.equal(layer.adapterState('default').reduce((a, [, t]) => a + t.size, 0), 1088);
});

function saved(peft: PeftModel): { keys: string[]; json: Record<string, unknown> } {
  const dir = mkdtempSync(join(tmpdir(), 'graft-lycoris-'));
  peft.saveAdapter(dir);
  const file = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  const keys = file.keys().sort();
  file.close();
  return { keys, json: JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown> };
}

const LYCORIS_FIELDS = ['alpha', 'alpha_pattern', 'auto_mapping', 'base_model_name_or_path', 'exclude_modules', 'inference_mode', 'init_weights', 'layers_pattern',
  'layers_to_transform', 'module_dropout', 'modules_to_save', 'peft_type', 'r', 'rank_dropout', 'rank_pattern', 'revision', 'target_modules', 'task_type', 'use_effective_conv2d'];

test('LoHa files hold exactly PEFT\'s keys and config fields (CP factors on the 3×3 and depthwise kernels, none on the 1×1)', () => {
  const gen = new g.Generator(1);
  const peft = new PeftModel(new SmallNet(gen), 'loha', lohaConfig({ r: 2, alpha: 4, useEffectiveConv2d: true, rankDropout: 0.1, targetModules: ['stem', 'dw', 'pw', 'fc'], modulesToSave: ['head'] }), 'default', { generator: gen });
  const { keys, json } = saved(peft);
  const m = (p: string, ks: string[]) => ks.map((k) => `base_model.model.${p}.${k}`);
  const cp = ['hada_t1', 'hada_t2', 'hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'];
  assert.deepEqual(keys, [...m('stem', cp), ...m('dw', cp), ...m('pw', cp.slice(2)), ...m('fc', cp.slice(2)), 'base_model.model.head.bias', 'base_model.model.head.weight'].sort());
  assert.deepEqual(Object.keys(json), LYCORIS_FIELDS);
  assert.equal(json['peft_type'], 'LOHA');
  assert.equal(json['r'], 2);
  assert.equal(json['alpha'], 4);
  assert.equal(json['rank_dropout'], 0.1);
  assert.equal(json['use_effective_conv2d'], true);
  assert.equal(json['init_weights'], true);
  const stem = peft.model.getModule('stem') as LohaLayer;
  assert.deepEqual([...stem.factor('hada_t1', 'default').shape], [2, 2, 3, 3]);
  assert.deepEqual([...(peft.model.getModule('dw') as LohaLayer).factor('hada_w1_b', 'default').shape], [2, 1], 'a depthwise kernel has in/groups = 1 input channel');
});

test('LoKr files hold exactly PEFT\'s keys and config fields (full, factorised, CP and decompose_both factors)', () => {
  const gen = new g.Generator(2);
  // r=1: fc 16→12 splits into (3, 4) × (4, 4), so w1 = w1_a w1_b (decompose_both) and w2 = w2_a w2_b;
  // stem 3→8 into (2, 4) × (1, 3): w1 full, w2 in CP form; dw has one input channel per group.
  const config = lokrConfig({ r: 1, alpha: 2, decomposeBoth: true, useEffectiveConv2d: true, targetModules: ['stem', 'dw', 'pw', 'fc'], rankPattern: { pw: 4 } });
  const peft = new PeftModel(new SmallNet(gen), 'lokr', config, 'default', { generator: gen });
  const { keys, json } = saved(peft);
  const m = (p: string, ks: string[]) => ks.map((k) => `base_model.model.${p}.${k}`);
  assert.deepEqual(keys, [
    ...m('stem', ['lokr_t2', 'lokr_w1', 'lokr_w2_a', 'lokr_w2_b']), ...m('dw', ['lokr_t2', 'lokr_w1', 'lokr_w2_a', 'lokr_w2_b']),
    ...m('pw', ['lokr_w1', 'lokr_w2']), ...m('fc', ['lokr_w1_a', 'lokr_w1_b', 'lokr_w2_a', 'lokr_w2_b']),
  ].sort());
  assert.deepEqual(Object.keys(json), [...LYCORIS_FIELDS, 'decompose_both', 'decompose_factor', 'rank_dropout_scale'].sort());
  assert.equal(json['peft_type'], 'LOKR');
  assert.deepEqual(json['rank_pattern'], { pw: 4 });
  assert.equal(json['decompose_both'], true);
  assert.equal(json['decompose_factor'], -1);
  assert.equal(json['rank_dropout_scale'], false);
  const pw = peft.model.getModule('pw') as LokrLayer;
  assert.deepEqual([...pw.factor('lokr_w2', 'default').shape], [4, 4, 1, 1], 'rank 4 from rankPattern: 8→16 as (2, 4) × (4, 4), w2 full');
});

test('PEFT\'s own adapter_config.json files read as LoHa and LoKr configurations', () => {
  // As PEFT 0.20 writes them (extra fields such as peft_version are tolerated).
  const common = { auto_mapping: null, base_model_name_or_path: 'resnet18', exclude_modules: null, inference_mode: true, layers_pattern: null, module_dropout: 0.05,
    modules_to_save: ['fc'], peft_version: '0.20.1.dev0', rank_pattern: {}, alpha_pattern: { 'layer1.0.conv1': 2 }, revision: null, task_type: null, target_modules: ['conv1', 'conv2'] };
  const loha = lohaFromPeftJson({ ...common, peft_type: 'LOHA', r: 4, alpha: 8, rank_dropout: 0.1, use_effective_conv2d: true, init_weights: true, layers_to_transform: 2 });
  assert.deepEqual(loha, lohaConfig({ r: 4, alpha: 8, rankDropout: 0.1, moduleDropout: 0.05, useEffectiveConv2d: true, initWeights: true, targetModules: ['conv1', 'conv2'], modulesToSave: ['fc'],
    alphaPattern: { 'layer1.0.conv1': 2 }, layersToTransform: [2], baseModelName: 'resnet18', excludeModules: undefined, rankPattern: undefined }));
  const lokr = lokrFromPeftJson({ ...common, peft_type: 'LOKR', r: 16, alpha: 16, rank_dropout: 0, use_effective_conv2d: false, decompose_both: true, decompose_factor: 8, rank_dropout_scale: true, init_weights: 'lycoris', layers_to_transform: null });
  assert.equal(lokr.initWeights, 'lycoris');
  assert.equal(lokr.decomposeFactor, 8);
  assert.equal(lokr.rankDropoutScale, true);
  assert.equal(lokr.decomposeBoth, true);
  assert.throws(() => lokrFromPeftJson({ ...common, peft_type: 'LOHA' }, 'x.json'), /x\.json: peft_type is "LOHA"; this loader reads LOKR/);
});

/** A layer of `kind` whose adapter is no longer zero (every factor perturbed), in training mode. */
function trainedLayer(kind: 'loha' | 'lokr', o: { rankDropout?: number; moduleDropout?: number; rankDropoutScale?: boolean }) {
  const gen = new g.Generator(3);
  // 48 → 64 at r = 2: small enough a rank that LoHa, like LoKr, takes x ΔWᵀ from its factors in training.
  const base = new Linear(48, 64, { generator: gen });
  const common = { r: 2, alpha: 2, rankDropout: o.rankDropout ?? 0, moduleDropout: o.moduleDropout ?? 0, useEffectiveConv2d: false, generator: gen };
  const layer = kind === 'loha' ? new LohaLayer(base) : new LokrLayer(base);
  if (layer instanceof LohaLayer) layer.addAdapter('default', { ...common, initWeights: false });
  else layer.addAdapter('default', { ...common, rankDropoutScale: o.rankDropoutScale ?? false, decomposeBoth: false, decomposeFactor: -1, initWeights: false });
  const x = g.randn([5, 48], { generator: gen });
  const plain = g.noGrad(() => base.forward(x)).toArray();
  layer.eval();
  const adapted = g.noGrad(() => layer.forward(x)).toArray();
  layer.train();
  return { layer, x, plain, adapted };
}

for (const [kind, scale] of [['loha', true], ['lokr', false], ['lokr', true]] as const) for (const recording of [false, true]) {
  test(`${kind} rank dropout${kind === 'lokr' ? ` (rankDropoutScale ${scale})` : ''}: in training whole output rows of ΔW drop${scale ? ', the rest scaled by 1 / kept share' : ''}; none in eval${recording ? ' (gradients recorded: the factor path)' : ''}`, () => {
    const { layer, x, plain, adapted } = trainedLayer(kind, { rankDropout: 0.5, rankDropoutScale: scale });
    const out = 64;
    const y = (recording ? g.tidy(() => layer.forward(x).toArray()) : g.noGrad(() => layer.forward(x)).toArray());
    // Per output feature j, the training delta is 0 (row dropped) or c · the eval delta, one c for every kept row.
    const kept: number[] = [];
    for (let j = 0; j < out; j++) {
      const rows = Array.from({ length: 5 }, (_, i) => i * out + j);
      const got = rows.map((k) => y[k]! - plain[k]!);
      const full = rows.map((k) => adapted[k]! - plain[k]!);
      if (got.every((d) => Math.abs(d) < 1e-6)) continue;
      const biggest = full.reduce((b, d, i) => (Math.abs(d) > Math.abs(full[b]!) ? i : b), 0);
      const c = got[biggest]! / full[biggest]!;
      got.forEach((d, i) => assert.ok(Math.abs(d - c * full[i]!) < 1e-5, `row ${j}: one factor ${c} per row`));
      kept.push(c);
    }
    assert.ok(kept.length > 8 && kept.length < 56, `about half the rows kept: ${kept.length} of ${out}`);
    const want = scale ? out / kept.length : 1;
    for (const c of kept) assert.ok(Math.abs(c - want) < 1e-3, `kept rows scaled by ${c}, want ${want}`);
    layer.eval();
    assert.deepEqual(g.noGrad(() => layer.forward(x)).toArray(), adapted, 'eval has no rank dropout');
  });
}

for (const kind of ['loha', 'lokr'] as const) {
  test(`${kind} module dropout: in training the whole adapter is skipped with probability p; never in eval`, () => {
    const { layer, x, plain, adapted } = trainedLayer(kind, { moduleDropout: 0.5 });
    const same = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).every((v, i) => Math.abs(v - b[i]!) < 1e-6);
    let skipped = 0;
    for (let i = 0; i < 40; i++) {
      const y = g.noGrad(() => layer.forward(x)).toArray();
      if (same(y, plain)) skipped++;
      else assert.ok(same(y, adapted), 'an adapter that runs runs whole');
    }
    assert.ok(skipped > 8 && skipped < 32, `skipped ${skipped} of 40`);
    layer.eval();
    for (let i = 0; i < 5; i++) assert.ok(same(g.noGrad(() => layer.forward(x)).toArray(), adapted), 'eval always runs the adapter');
  });
}

test('LoHa/LoKr configuration errors name the field and say what to do', () => {
  const run = (method: string, shared: Record<string, unknown>, own: Record<string, unknown>) =>
    getAdapterMethod(method).configFromRun(SharedAdapterOptionsSchema.parse({ targets: ['fc'], ...shared }), own);
  assert.throws(() => run('loha', { dropout: 0.1 }, {}), /adapter\.dropout: loha has no input dropout.*set loha\.rankDropout or loha\.moduleDropout/);
  assert.throws(() => run('lokr', {}, { decomposeFactor: 0 }), /decomposeFactor must be -1/);
  assert.throws(() => run('lokr', {}, { initWeights: 'gaussian' }), /initWeights/);
  assert.throws(() => run('loha', {}, { decomposeBoth: true }), /decomposeBoth/, 'LoHa has no decompose_both');
  assert.throws(() => lohaConfig({ r: 0, targetModules: ['fc'] }), /LoHaConfig\.r must be a positive integer/);
  assert.throws(() => lokrConfig({ moduleDropout: 1, targetModules: ['fc'] }), /LoKrConfig\.moduleDropout must be in \[0, 1\)/);
  assert.throws(() => runConfigSchema().parse({ model: 'resnet18', data: { source: 'x' }, method: 'lokr', lokr: { rankDropoutScal: true } }), /rankDropoutScal/);
  const c = runConfigSchema().parse({ model: 'resnet18', data: { source: 'x' }, method: 'lokr', lokr: { decomposeBoth: true } }) as Record<string, unknown>;
  assert.deepEqual(c['lokr'], { rankDropout: 0, moduleDropout: 0, useEffectiveConv2d: false, decomposeBoth: true, decomposeFactor: -1, rankDropoutScale: false, initWeights: true });
  assert.deepEqual(c['loha'], { rankDropout: 0, moduleDropout: 0, useEffectiveConv2d: false, initWeights: true });
});

for (const [kind, layerKind] of [['loha', 'linear'], ['lokr', 'linear'], ['loha', 'conv']] as const) {
  test(`${kind} on a ${layerKind === 'conv' ? '3×3 Conv2d' : 'Linear'} in training computes base_op(x, ΔW) from the factors: output and gradients of x, bias and every factor equal those of the base on W + ΔW`, () => {
    const gen = new g.Generator(5);
    // Wide enough for rank 2 that the factor path is the cheaper one.
    const base = layerKind === 'conv' ? new Conv2d(48, 64, 3, { padding: 1, stride: 2, generator: gen }) : new Linear(48, 64, { generator: gen });
    const common = { r: 2, alpha: 3, rankDropout: 0, moduleDropout: 0, useEffectiveConv2d: false, generator: gen };
    const layer = kind === 'loha' ? new LohaLayer(base) : new LokrLayer(base);
    if (layer instanceof LohaLayer) layer.addAdapter('default', { ...common, initWeights: false });
    else layer.addAdapter('default', { ...common, rankDropoutScale: false, decomposeBoth: false, decomposeFactor: -1, initWeights: false });
    layer.train();
    const x = layerKind === 'conv' ? g.randn([2, 48, 7, 6], { generator: gen }) : g.randn([5, 48], { generator: gen });
    const factors = layer.adapterState('default');
    const xs = x.detach().requiresGrad_();
    base.weight.requiresGrad = false; // frozen, as in a PeftModel
    base.bias!.requiresGrad = true;
    const yShape = g.noGrad(() => base.forward(x)).shape;
    const w = g.randn([...yShape], { generator: new g.Generator(9) });
    const run = (factorPath: boolean) => g.tidy(() => {
      for (const [, t] of factors) t.grad = null;
      xs.grad = null;
      base.bias!.grad = null;
      const wd = g.add(base.weight, layer.deltaWeight('default'));
      const y = factorPath ? layer.forward(xs) : base instanceof Conv2d ? g.conv2d(xs, wd, base.bias, base.convOptions) : g.linear(xs, wd, base.bias);
      if (factorPath) assert.equal(y.gradFn?.name, 'add', 'the factor path: base(x) + base_op(x, ΔW)');
      g.sum(g.mul(y, w)).backward();
      return { y: y.toArray(), x: xs.grad!.toArray(), bias: base.bias!.grad!.toArray(), ...Object.fromEntries(factors.map(([k, t]) => [k, t.grad!.toArray()])) };
    });
    const got = run(true);
    const want = run(false);
    for (const [k, v] of Object.entries(want)) {
      const scale = Math.max(...Array.from(v, Math.abs));
      Array.from(got[k as keyof typeof got] as ArrayLike<number>).forEach((a, i) => assert.ok(Math.abs(a - v[i]!) <= 1e-5 * scale + 1e-6, `${k}[${i}]: ${a} vs ${v[i]}`));
    }
    assert.equal(base.weight.grad, null, 'the frozen base weight gets no gradient');
  });
}
