// One behavioural matrix for every registered adapter method: identity at init, gradients only
// where they belong, merge = unmerged forward, unmerge restores, save/load round trip, PEFT key
// names; then multi-adapter use, errors and LoRA/DoRA specifics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { Module } from '../src/nn/module.js';
import { Conv2d, Linear, BatchNorm2d } from '../src/nn/layers.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { AdapterLayer } from '../src/adapters/layer.js';
import { SharedAdapterOptionsSchema, type AdapterMethod } from '../src/adapters/method.js';
import { adapterMethods, getAdapterMethod, methodForPeftJson } from '../src/adapters/registry.js';
import { loraConfig } from '../src/adapters/lora/config.js';
import { LoraLayer } from '../src/adapters/lora/layer.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { CNBlock } from '../src/models/cnn/convnext.js';
import { SwinTransformerBlock } from '../src/models/swin.js';
import { quantizeLayer } from '../src/nn/quant4.js';
import { dequantize4 } from '../src/tensor/quant4.js';

/** A small network with a conv stem, a depthwise conv, a BatchNorm and two linear layers. */
class TinyNet extends Module {
  stem: Conv2d;
  dw: Conv2d;
  bn: BatchNorm2d;
  fc1: Linear;
  head: Linear;
  constructor(gen: g.Generator) {
    super();
    this.stem = this.module('stem', new Conv2d(3, 8, 3, { padding: 2, dilation: 2, generator: gen }));
    this.dw = this.module('dw', new Conv2d(8, 8, 3, { padding: 1, groups: 8, generator: gen }));
    this.bn = this.module('bn', new BatchNorm2d(8));
    this.fc1 = this.module('fc1', new Linear(8, 16, { generator: gen }));
    this.head = this.module('head', new Linear(16, 4, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    let h = g.relu(this.bn.forward(this.dw.forward(this.stem.forward(x))));
    h = g.mean(h, [2, 3]);
    return this.head.forward(g.gelu(this.fc1.forward(h)));
  }
}

/**
 * The same shape of network for methods that wrap whole blocks (Mona): a conv stem and BatchNorm,
 * a ConvNeXt block (channels-first) and a Swin block (channels-last), pooling, two linear layers.
 */
class TinyBlockNet extends Module {
  stem: Conv2d;
  bn: BatchNorm2d;
  blk: CNBlock;
  swin: SwinTransformerBlock;
  fc1: Linear;
  head: Linear;
  constructor(gen: g.Generator) {
    super();
    this.stem = this.module('stem', new Conv2d(3, 8, 3, { padding: 1, generator: gen }));
    this.bn = this.module('bn', new BatchNorm2d(8));
    this.blk = this.module('blk', new CNBlock(8, 0.5, 0));
    this.swin = this.module('swin', new SwinTransformerBlock(8, 2, [3, 3], [1, 1], 2, 0, 0));
    this.fc1 = this.module('fc1', new Linear(8, 16, { generator: gen }));
    this.head = this.module('head', new Linear(16, 4, { generator: gen }));
    // The blocks draw their init from the default generator; the net's own makes it reproducible.
    g.noGrad(() => {
      for (const p of [...this.blk.parameters(), ...this.swin.parameters()]) g.assign(p, g.mul(g.randn(p.shape, { generator: gen }), 0.2));
    });
  }
  forward(x: g.Tensor): g.Tensor {
    const h = this.blk.forward(this.bn.forward(this.stem.forward(x)));
    const t = this.swin.forward(g.permute(h, [0, 2, 3, 1]));
    return this.head.forward(g.gelu(this.fc1.forward(g.mean(t, [1, 2]))));
  }
}

/** Whether a method wraps blocks rather than Linear/Conv2d layers (it then runs on TinyBlockNet). */
const wrapsBlocks = (m: AdapterMethod) => !m.canWrap(new Linear(2, 2));

/**
 * The matrix: every registered adapter method with its defaults, plus LoRA's initialisation and
 * scaling variants. A method registered later runs through the same tests without an edit here.
 * `targets` are conv (dilated) and linear layers every method wraps; `grouped` adds the depthwise conv.
 */
interface Case {
  label: string;
  method: AdapterMethod;
  own: Record<string, unknown>;
  targets: string[];
  /** Shared options beyond rank 4, alpha 8 and the targets. */
  shared?: Record<string, unknown>;
  /** The init is the identity only up to SVD round-off. */
  approximateInit?: boolean;
  /** Why the adapted model differs from the base at init (the test then checks that it does). */
  notIdentityAtInit?: string;
  /** Why the method does not merge: merge() must throw this. */
  noMerge?: RegExp;
}
const BLOCK_TARGETS = ['blk', 'swin'];
const cases: Case[] = [
  ...adapterMethods().map((method): Case => wrapsBlocks(method)
    ? { label: method.name, method, own: {}, targets: BLOCK_TARGETS, ...blockMethodFacts(method.name) }
    : { label: method.name, method, own: {}, targets: ['stem', 'fc1'] }),
  // Mona with its up-projection zero-initialised: the base model exactly at init.
  { label: 'mona zero-init up, d 8', method: getAdapterMethod('mona'), own: { zeroInitUp: true, dim: 8 }, targets: BLOCK_TARGETS, noMerge: /cannot be merged/ },
  { label: 'lora rslora gaussian', method: getAdapterMethod('lora'), own: { rslora: true, init: 'gaussian' }, targets: ['stem', 'fc1'] },
  // A grouped conv needs r divisible by its groups.
  { label: 'lora depthwise', method: getAdapterMethod('lora'), own: {}, targets: ['stem', 'dw', 'fc1'], shared: { rankPattern: { dw: 8 } } },
  // PiSSA is for Linear layers (as in PEFT).
  { label: 'lora pissa', method: getAdapterMethod('lora'), own: { init: 'pissa' }, targets: ['fc1'], approximateInit: true },
  // LyCORIS on the dilated, the depthwise and the linear layer: the CP form on 3×3 kernels, and
  // LoKr at r = 1 so w2 (and with decomposeBoth w1) is factorised rather than full.
  { label: 'loha effective conv, depthwise', method: getAdapterMethod('loha'), own: { useEffectiveConv2d: true }, targets: ['stem', 'dw', 'fc1'] },
  { label: 'lokr decompose both, effective conv, depthwise', method: getAdapterMethod('lokr'), own: { decomposeBoth: true, useEffectiveConv2d: true }, targets: ['stem', 'dw', 'fc1'], shared: { r: 1 } },
  { label: 'lokr lycoris init, factor 2', method: getAdapterMethod('lokr'), own: { initWeights: 'lycoris', decomposeFactor: 2 }, targets: ['stem', 'dw', 'fc1'], shared: { r: 1 } },
  // The depthwise conv scales its input per group; the stem (dilated) its output.
  { label: 'ia3 feedforward depthwise', method: getAdapterMethod('ia3'), own: { feedforwardModules: ['dw', 'fc1'] }, targets: ['stem', 'dw', 'fc1'] },
  // Block size 4 becomes 3 on the stem (27 features) and the depthwise conv (9); one shared block per layer.
  { label: 'oft depthwise coft block_share', method: getAdapterMethod('oft'), own: { oftBlockSize: 4, coft: true, eps: 0.1, blockShare: true }, targets: ['stem', 'dw', 'fc1'] },
  { label: 'oft exact cayley by block count', method: getAdapterMethod('oft'), own: { r: 2, oftBlockSize: 0, useCayleyNeumann: false }, targets: ['stem', 'dw', 'fc1'] },
  { label: 'oft module dropout', method: getAdapterMethod('oft'), own: { moduleDropout: 0.5, oftBlockSize: 3 }, targets: ['stem', 'fc1'] },
];

/** What the matrix must know about a block method's defaults (a method missing here fails the matrix until its facts are stated). */
function blockMethodFacts(name: string): Pick<Case, 'notIdentityAtInit' | 'noMerge'> {
  if (name === 'mona') {
    return {
      notIdentityAtInit: "the reference Mona's project2 starts as a 0.02-std normal (not zero), so its modules change the stream from the start",
      noMerge: /cannot be merged/,
    };
  }
  return {};
}

/** Rank 4 is below min(in, out) of every target, so PiSSA leaves a real residual. */
const configOf = (c: Case, extra: Record<string, unknown> = {}) =>
  c.method.configFromRun(SharedAdapterOptionsSchema.parse({ r: 4, alpha: 8, targets: c.targets, modulesToSave: ['head', 'bn'], ...c.shared, ...extra }), c.method.optionsSchema.parse(c.own));

const close = (a: g.Tensor, b: g.Tensor, tol: number, what: string) => {
  const x = a.toArray();
  const y = b.toArray();
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  assert.ok(worst <= tol, `${what}: max abs difference ${worst}`);
};

/** Perturbs every trainable parameter so the adapter is no longer the identity. */
function perturb(m: Module, gen: g.Generator): void {
  g.noGrad(() => {
    for (const p of m.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std: 0.05, generator: gen })));
  });
}

/** An adapter tensor's in-memory path names its adapter as a path segment (`lora_A.default.weight`). */
const isAdapterKey = (key: string, name = 'default') => new RegExp(`\\.${name}(\\.|$)`).test(key);

for (const c of cases) {
  const Net = wrapsBlocks(c.method) ? TinyBlockNet : TinyNet;
  const make = (gen: g.Generator, extra: Record<string, unknown> = {}) => new PeftModel(new Net(gen), c.method, configOf(c, extra), 'default', { generator: gen });

  test(`adapters ${c.label}: output at init ${c.notIdentityAtInit ? 'differs from' : 'equals'} the base model's${c.approximateInit ? ' (up to SVD round-off)' : ''}`, () => {
    const gen = new g.Generator(1);
    const base = new Net(gen).eval();
    const x = g.randn([2, 3, 9, 9], { generator: gen });
    const before = g.noGrad(() => base.forward(x));
    const peft = new PeftModel(base, c.method, configOf(c), 'default', { generator: gen });
    peft.eval();
    const after = g.noGrad(() => peft.forward(x));
    if (c.notIdentityAtInit) {
      const diff = Math.max(...Array.from(after.toArray(), (v, i) => Math.abs(v - before.toArray()[i]!)));
      assert.ok(diff > 1e-4, `${c.notIdentityAtInit}: expected a visible change, got ${diff}`);
      return;
    }
    close(after, before, c.approximateInit ? 1e-4 : 1e-6, 'init output');
  });

  test(`adapters ${c.label}: only adapter and modules_to_save parameters receive gradients`, () => {
    const gen = new g.Generator(2);
    const probe = c.targets[c.targets.length - 1]!;
    const peft = make(gen);
    const x = g.randn([2, 3, 9, 9], { generator: gen });
    g.sum(peft.forward(x)).backward();
    let adapterGrads = 0;
    for (const [key, p] of peft.model.namedParameters()) {
      const adapterParam = isAdapterKey(key);
      assert.equal(p.requiresGrad, adapterParam, `${key} requiresGrad`);
      if (!adapterParam) assert.equal(p.grad, null, `${key} got a gradient`);
      else if (key.startsWith(`${probe}.`) && p.grad) adapterGrads++;
    }
    assert.ok(adapterGrads > 0, `the adapter on ${probe} receives gradients`);
    assert.match(peft.trainableSummary().line, /^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}$/);
  });

  test(`adapters ${c.label}: merged output equals unmerged, and unmerge restores the base weights`, async () => {
    const gen = new g.Generator(3);
    const peft = make(gen);
    perturb(peft.model, gen);
    peft.eval();
    const x = g.randn([2, 3, 9, 9], { generator: gen });
    const mergeable = peft.adapterLayers().filter(([, l]) => l.canMerge());
    if (c.noMerge) {
      assert.equal(mergeable.length, 0, 'no layer of a method that does not merge claims it can');
      assert.throws(() => peft.merge(), c.noMerge);
      assert.throws(() => peft.mergeAndUnload(), c.noMerge);
      // withMerged (evaluation) keeps the modules in place and computes the same.
      const want = g.noGrad(() => peft.forward(x));
      await peft.withMerged(() => Promise.resolve(close(g.noGrad(() => peft.forward(x)), want, 0, 'withMerged')));
      return;
    }
    if (mergeable.length < peft.adapterLayers().length) {
      assert.ok(c.targets.includes('dw'), 'only a grouped layer may refuse to merge');
      assert.throws(() => peft.merge(), /cannot be merged into the grouped base weight/);
      return;
    }
    const weights = mergeable.map(([, l]) => l.base_layer.weight.toArray());
    const unmerged = g.noGrad(() => peft.forward(x));
    peft.merge();
    close(g.noGrad(() => peft.forward(x)), unmerged, 1e-5, 'merged vs unmerged');
    peft.unmerge();
    mergeable.forEach(([path, l], i) => close(l.base_layer.weight, g.tensor(weights[i]!, l.base_layer.weight.shape), 1e-6, `${path} after unmerge`));
    close(g.noGrad(() => peft.forward(x)), unmerged, 1e-6, 'after unmerge');
    const plain = peft.mergeAndUnload();
    assert.ok(plain.namedModules().every(([, m]) => !(m instanceof AdapterLayer)));
    close(g.noGrad(() => plain.forward(x)), unmerged, 1e-5, 'merge-and-unload');
  });

  test(`adapters ${c.label}: save and load round trip exactly, with PEFT's key form and config`, () => {
    const gen = new g.Generator(4);
    const peft = make(gen);
    perturb(peft.model, gen);
    peft.eval();
    const x = g.randn([2, 3, 9, 9], { generator: gen });
    const want = g.noGrad(() => peft.forward(x));
    const dir = mkdtempSync(join(tmpdir(), 'graft-adapter-'));
    peft.saveAdapter(dir);
    const file = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
    const keys = file.keys().sort();
    file.close();
    // PEFT's on-disk keys: the module path under base_model.model., without the adapter name.
    for (const k of keys) {
      assert.ok(k.startsWith('base_model.model.'), k);
      assert.ok(!isAdapterKey(k), `${k} holds the adapter name`);
      assert.ok([...c.targets, 'head', 'bn'].some((t) => k.startsWith(`base_model.model.${t}.`)), `${k} belongs to a target or a module to save`);
    }
    for (const t of c.targets) assert.ok(keys.some((k) => k.startsWith(`base_model.model.${t}.`)), `${t} saved`);
    const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(json['peft_type'], c.method.peftType);
    assert.deepEqual(json['modules_to_save'], ['head', 'bn']);
    assert.equal(methodForPeftJson(json, 'adapter_config.json').name, c.method.name, 'the file names its own method');
    const plain = (o: unknown) => JSON.parse(JSON.stringify(o)) as unknown;
    assert.deepEqual(plain(c.method.fromPeftJson(json, 'adapter_config.json')), plain(c.method.validate(configOf(c))), 'config round trip');
    // The same base (seeded): an adapter that changed it at init (PiSSA) recomputes the same residual.
    // A layer holds adapters of one method, so the model's first adapter is of the same method, with its defaults.
    const scratch = c.method.configFromRun(SharedAdapterOptionsSchema.parse({ targets: [wrapsBlocks(c.method) ? c.targets[0]! : 'fc1'] }), c.method.optionsSchema.parse({}));
    const loaded = new PeftModel(new Net(new g.Generator(4)), c.method, scratch, 'scratch');
    loaded.loadAdapter(dir, 'default');
    loaded.setAdapter('default');
    loaded.eval();
    close(g.noGrad(() => loaded.forward(x)), want, 1e-6, 'loaded adapter output');
  });
}

test('adapters lora/dora: the file holds exactly PEFT\'s keys', () => {
  for (const useDora of [false, true]) {
    const gen = new g.Generator(4);
    const peft = new PeftModel(new TinyNet(gen), useDora ? 'dora' : 'lora', loraConfig({ r: 8, loraAlpha: 16, targetModules: ['stem', 'fc1'], modulesToSave: ['head', 'bn'] }), 'default', { generator: gen });
    const dir = mkdtempSync(join(tmpdir(), 'graft-adapter-'));
    peft.saveAdapter(dir);
    const file = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
    const keys = file.keys().sort();
    file.close();
    assert.deepEqual(keys, [
      ...['stem', 'fc1'].flatMap((m) => [`base_model.model.${m}.lora_A.weight`, `base_model.model.${m}.lora_B.weight`, ...(useDora ? [`base_model.model.${m}.lora_magnitude_vector`] : [])]),
      'base_model.model.bn.bias', 'base_model.model.bn.num_batches_tracked', 'base_model.model.bn.running_mean', 'base_model.model.bn.running_var', 'base_model.model.bn.weight',
      'base_model.model.head.bias', 'base_model.model.head.weight',
    ].sort());
    const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(json['r'], 8);
    assert.equal(json['lora_alpha'], 16);
    assert.equal(json['use_dora'], useDora);
  }
});

test('adapters: several named adapters on one base, one active, switchable and deletable', () => {
  const gen = new g.Generator(5);
  const peft = new PeftModel(new TinyNet(gen), 'lora', loraConfig({ targetModules: ['fc1'], modulesToSave: ['head'] }), 'a', { generator: gen });
  perturb(peft.model, gen);
  peft.addAdapter('b', 'dora', loraConfig({ targetModules: ['fc1', 'stem'], modulesToSave: ['head'] }), { generator: gen });
  peft.eval();
  const x = g.randn([1, 3, 9, 9], { generator: gen });
  const outA = g.noGrad(() => peft.forward(x));
  peft.setAdapter('b');
  perturb(peft.model, gen);
  const outB = g.noGrad(() => peft.forward(x));
  assert.ok(Math.abs(outA.toArray()[0]! - outB.toArray()[0]!) > 1e-6, 'adapters differ');
  assert.ok(peft.model.trainableParameters().length > 0);
  for (const [k, p] of peft.model.namedParameters()) if (p.requiresGrad) assert.match(k, /\.b(\.|$)/);
  peft.setAdapter('a');
  close(g.noGrad(() => peft.forward(x)), outA, 1e-7, 'adapter a again');
  peft.deleteAdapter('a');
  assert.equal(peft.activeAdapter, 'b');
  close(g.noGrad(() => peft.forward(x)), outB, 1e-7, 'adapter b after deleting a');
});

test('adapters: bad configurations give errors that say what to do', () => {
  const gen = new g.Generator(6);
  assert.throws(() => new PeftModel(new TinyNet(gen), 'lora', loraConfig({ targetModules: ['q_proj'] })), /no module matches \["q_proj"\]; give --targets with layer names such as stem, dw, fc1/);
  assert.throws(() => new PeftModel(new TinyNet(gen), 'lora', loraConfig({ r: 3, targetModules: ['dw'] })), /r divisible by groups: r=3, groups=8/);
  assert.throws(() => loraConfig({ r: 0, targetModules: ['fc1'] }), /positive integer/);
  assert.throws(() => new PeftModel(new TinyNet(gen), 'dora', loraConfig({ targetModules: ['dw'] })), /DoRA on a grouped Conv2d/);
  const depthwise = new PeftModel(new TinyNet(gen), 'lora', loraConfig({ targetModules: ['dw'] }));
  assert.throws(() => depthwise.merge(), /cannot be merged into the grouped base weight/);
  const all = new PeftModel(new TinyNet(gen), 'lora', loraConfig({ targetModules: 'all-linear', modulesToSave: ['head'] }));
  assert.deepEqual(all.adapterLayers().map(([p]) => p), ['fc1']);
  const regex = new PeftModel(new TinyNet(gen), 'lora', loraConfig({ targetModules: '(stem|fc1)', rankPattern: { fc1: 4 } }));
  assert.deepEqual(regex.adapterLayers().map(([p, l]) => [p, (l as LoraLayer).lora_A.get('default')!.weight.shape[0]]), [['stem', 8], ['fc1', 4]]);
});

test('adapters: per-family aliases find the query/value projections whatever the checkpoint calls them', async () => {
  const { createModel } = await import('../src/models/registry.js');
  await import('../src/models/all.js');
  const { findTargets } = await import('../src/adapters/targets.js');
  const hf = { numHiddenLayers: 2, hiddenSize: 32, numAttentionHeads: 2 };
  const tiny: Record<string, Record<string, unknown>> = {
    dinov2_small: hf, dinov3_vits16: { ...hf, intermediateSize: 64 }, vit_small_patch16_224: { depth: 2, embedDim: 32, numHeads: 2 },
  };
  const targets = (name: string, t: string[]) =>
    findTargets(createModel(name, { numClasses: 3, imageSize: 32, overrides: tiny[name] }), { targetModules: t, modulesToSave: ['head', 'classifier'] });
  // transformers Dinov2Model: query/value.
  assert.deepEqual(targets('dinov2_small', ['q_proj', 'v_proj']).slice(0, 2),
    ['encoder.layer.0.attention.attention.query', 'encoder.layer.0.attention.attention.value']);
  // DINOv3 has q_proj itself: the literal name wins.
  assert.deepEqual(targets('dinov3_vits16', ['q_proj']).slice(0, 1), ['layer.0.attention.q_proj']);
  assert.deepEqual(targets('dinov2_small', ['o_proj', 'down_proj']).slice(0, 2), ['encoder.layer.0.attention.output.dense', 'encoder.layer.0.mlp.fc2']);
  // timm ViT: the MLP and output aliases map; the fused qkv gets an error that says what to target.
  assert.deepEqual(targets('vit_small_patch16_224', ['o_proj', 'up_proj']).slice(0, 2), ['blocks.0.attn.proj', 'blocks.0.mlp.fc1']);
  assert.throws(() => targets('vit_small_patch16_224', ['q_proj']), /fused layer \('attn\.qkv'.*Target 'qkv'/s);
  // Names that are neither present nor aliases keep PEFT's error naming the layers.
  assert.throws(() => targets('dinov2_small', ['nonexistent']), /no module matches.*query/s);
});

test('adapters: DoRA on a layer with a dead (all-zero) output channel stays finite, merges and unmerges', () => {
  const gen = new g.Generator(11);
  const base = new TinyNet(gen);
  g.noGrad(() => {
    // Output channel 2 of the stem and row 5 of fc1 are all zeros, as in some pretrained checkpoints.
    const mask = (t: g.Tensor, row: number) => g.assign(t, g.mul(t, g.tensor(Array.from({ length: t.shape[0]! }, (_, i) => (i === row ? 0 : 1)), [t.shape[0]!, ...t.shape.slice(1).map(() => 1)])));
    mask(base.stem.weight, 2);
    mask(base.fc1.weight, 5);
  });
  const x = g.randn([2, 3, 10, 10], { generator: gen });
  const before = g.noGrad(() => base.eval().forward(x));
  const stemWeight = base.stem.weight;
  const peft = new PeftModel(base, 'dora', loraConfig({ r: 4, loraAlpha: 8, targetModules: ['stem', 'fc1'], modulesToSave: ['head'] }), 'default', { generator: gen });
  peft.eval();
  const init = g.noGrad(() => peft.forward(x));
  close(init, before, 1e-5, 'output at init');
  perturb(peft.model, gen);
  const out = g.noGrad(() => peft.forward(x));
  assert.ok(Array.from(out.toArray()).every(Number.isFinite), 'finite after training');
  const stem = stemWeight.toArray().slice();
  peft.merge();
  close(g.noGrad(() => peft.forward(x)), out, 1e-4, 'merged output');
  peft.unmerge();
  close(stemWeight, g.tensor(stem, stemWeight.shape), 1e-5, 'unmerge restores the stem weight');
});

// Every registered method on a 4-bit base (stem and fc1 quantised to NF4): it trains (gradients
// on the adapter alone) and computes what it computes on the dequantised float base.
for (const method of adapterMethods()) {
  test(`adapters ${method.name} on a 4-bit base: trains, and equals the method on the dequantised base`, () => {
    // A method that wraps blocks runs on TinyBlockNet with the dense layers inside its blocks quantised.
    const blocks = wrapsBlocks(method);
    const targets = blocks ? BLOCK_TARGETS : ['stem', 'fc1'];
    const c: Case = { label: method.name, method, own: {}, targets };
    const Net = blocks ? TinyBlockNet : TinyNet;
    const quantised = new Net(new g.Generator(21));
    const dequantised = new Net(new g.Generator(21));
    const layers = quantised.namedModules()
      .filter(([p, m]) => (blocks ? targets.some((t) => p.startsWith(`${t}.`)) && m instanceof Linear : p === 'stem' || p === 'fc1'))
      .map(([p]) => p);
    assert.ok(layers.length > 0);
    for (const name of layers) {
      const q = quantizeLayer(quantised.getModule(name))!;
      quantised.setModule(name, q);
      g.assign((dequantised.getModule(name) as Linear | Conv2d).weight, g.tensor(dequantize4(q.quantized), q.quantized.state.shape));
    }
    const pq = new PeftModel(quantised, method, configOf(c), 'default', { generator: new g.Generator(22) });
    const pf = new PeftModel(dequantised, method, configOf(c), 'default', { generator: new g.Generator(22) });
    perturb(pq.model, new g.Generator(23));
    perturb(pf.model, new g.Generator(23));
    const x = g.randn([2, 3, 9, 9], { generator: new g.Generator(24) });
    // The same draws for any dropout in train mode (Mona's 0.1).
    g.manualSeed(25);
    const yq = pq.forward(x);
    g.manualSeed(25);
    const yf = pf.forward(x);
    close(yq, yf, 1e-5, 'output');
    g.sum(yq).backward();
    g.sum(yf).backward();
    const ref = new Map(pf.model.namedParameters());
    let trained = 0;
    for (const [key, p] of pq.model.namedParameters()) {
      if (!p.requiresGrad) {
        assert.equal(p.grad, null, `${key} got a gradient`);
        continue;
      }
      if (!isAdapterKey(key)) continue;
      const r = ref.get(key)!;
      assert.equal(p.grad === null, r.grad === null, `${key}: gradient on one base only`);
      if (p.grad) {
        close(p.grad, r.grad!, 1e-4, `${key} gradient`);
        if (targets.some((t) => key.startsWith(`${t}.`))) trained++;
      }
    }
    assert.ok(trained > 0, 'the adapters on the 4-bit layers receive gradients');
  });
}
