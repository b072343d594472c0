// (IA)³ and OFT specifics: PEFT's exact key names and config fields on a small net, PEFT's files
// read back, configuration errors that say what to do, and each method's own behaviour (IA3's
// input/output placement and unmerge with zeros; OFT's block rule, Cayley transforms, COFT,
// block sharing, module dropout and unmerge by the inverse rotation).
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
import { ia3Config, ia3FromPeftJson, isFeedforward } from '../src/adapters/ia3/config.js';
import { Ia3Layer } from '../src/adapters/ia3/layer.js';
import { oftConfig, oftFromPeftJson } from '../src/adapters/oft/config.js';
import { OftLayer } from '../src/adapters/oft/layer.js';
import { adjustToDivisor } from '../src/adapters/oft/rotation.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { runConfigSchema } from '../src/train/run-config.js';

class SmallNet extends Module {
  stem: Conv2d;
  fc1: Linear;
  head: Linear;
  constructor(gen: g.Generator) {
    super();
    this.stem = this.module('stem', new Conv2d(3, 8, 3, { padding: 1, generator: gen }));
    this.fc1 = this.module('fc1', new Linear(8, 12, { generator: gen }));
    this.head = this.module('head', new Linear(12, 3, { generator: gen }));
  }
  forward(x: g.Tensor): g.Tensor {
    return this.head.forward(g.relu(this.fc1.forward(g.mean(g.relu(this.stem.forward(x)), [2, 3]))));
  }
}

function saved(peft: PeftModel): { shapes: Record<string, number[]>; json: Record<string, unknown> } {
  const dir = mkdtempSync(join(tmpdir(), 'graft-ia3-oft-'));
  peft.saveAdapter(dir);
  const f = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  const shapes = Object.fromEntries([...f.tensors].map(([k, info]) => [k, [...info.shape]]));
  f.close();
  return { shapes, json: JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown> };
}

const auto = { base_model_class: 'SmallNet', parent_library: 'graft' };
const head = { 'base_model.model.head.bias': [3], 'base_model.model.head.weight': [3, 12] };

/** Captures console.warn while `fn` runs. */
function warnings(fn: () => void): string[] {
  const seen: string[] = [];
  const original = console.warn;
  console.warn = (m: string) => seen.push(m);
  try {
    fn();
  } finally {
    console.warn = original;
  }
  return seen;
}

test('ia3: the file holds exactly PEFT\'s keys and shapes, and adapter_config.json PEFT\'s IA3Config fields', () => {
  const peft = new PeftModel(new SmallNet(new g.Generator(1)), 'ia3', ia3Config({ targetModules: ['stem', 'fc1'], feedforwardModules: ['fc1'], modulesToSave: ['head'] }));
  const { shapes, json } = saved(peft);
  // Output scaling on the conv (1, out, 1, 1); input scaling on the feed-forward Linear (1, in).
  assert.deepEqual(shapes, { 'base_model.model.stem.ia3_l': [1, 8, 1, 1], 'base_model.model.fc1.ia3_l': [1, 8], ...head });
  assert.deepEqual(json, {
    auto_mapping: auto, base_model_name_or_path: null, exclude_modules: null, fan_in_fan_out: false, feedforward_modules: ['fc1'],
    inference_mode: true, init_ia3_weights: true, modules_to_save: ['head'], peft_type: 'IA3', revision: null, target_modules: ['stem', 'fc1'], task_type: null,
  });
  assert.deepEqual(Object.keys(json), Object.keys(json).sort(), 'sorted keys, as PEFT writes them');
  const out = new PeftModel(new SmallNet(new g.Generator(1)), 'ia3', ia3Config({ targetModules: ['fc1'] }));
  assert.deepEqual(saved(out).shapes, { 'base_model.model.fc1.ia3_l': [12, 1] }, 'output scaling on a Linear is (out, 1)');
});

test('oft: the file holds exactly PEFT\'s keys and shapes, and adapter_config.json PEFT\'s OFTConfig fields', () => {
  const cfg = oftConfig({ targetModules: ['stem', 'fc1'], oftBlockSize: 4, modulesToSave: ['head'] });
  const peft = new PeftModel(new SmallNet(new g.Generator(1)), 'oft', cfg);
  const { shapes, json } = saved(peft);
  // stem: 3·3·3 = 27 features, block size 4 → 3 (PEFT's nearest divisor), 9 blocks of 3 values; fc1: 2 blocks of 4 (6 values).
  assert.deepEqual(shapes, { 'base_model.model.stem.oft_R.weight': [9, 3], 'base_model.model.fc1.oft_R.weight': [2, 6], ...head });
  assert.deepEqual(json, {
    auto_mapping: auto, base_model_name_or_path: null, bias: 'none', block_share: false, coft: false, eps: 6e-5, exclude_modules: null,
    fan_in_fan_out: false, inference_mode: true, init_weights: true, layers_pattern: null, layers_to_transform: null, module_dropout: 0,
    modules_to_save: ['head'], num_cayley_neumann_terms: 5, oft_block_size: 4, peft_type: 'OFT', peft_version: '0.18.0', r: 0, revision: null,
    target_modules: ['stem', 'fc1'], task_type: null, use_cayley_neumann: true,
  });
  const shared = new PeftModel(new SmallNet(new g.Generator(1)), 'oft', oftConfig({ targetModules: ['fc1'], r: 2, oftBlockSize: 0, blockShare: true }));
  assert.deepEqual(saved(shared).shapes, { 'base_model.model.fc1.oft_R.weight': [1, 6] }, 'one stored block when shared');
});

test('ia3/oft: adapter_config.json files as PEFT writes them load, extra keys tolerated', () => {
  const ia3 = ia3FromPeftJson({ peft_type: 'IA3', peft_version: '0.18.1', target_modules: ['query', 'value', 'output.dense'], feedforward_modules: ['output.dense'], init_ia3_weights: true, task_type: null, inference_mode: true });
  assert.deepEqual(ia3.feedforwardModules, ['output.dense']);
  const oft = oftFromPeftJson({ peft_type: 'OFT', peft_version: '0.18.1', target_modules: 'convolution', r: 0, oft_block_size: 16, coft: true, eps: 1e-3, block_share: false, use_cayley_neumann: false, num_cayley_neumann_terms: 5, module_dropout: 0.1, init_weights: true, bias: 'none' });
  assert.equal(oft.oftBlockSize, 16);
  assert.equal(oft.useCayleyNeumann, false);
  assert.equal(oft.coft, true);
  assert.throws(() => oftFromPeftJson({ peft_type: 'OFT', target_modules: ['q'], r: 8 }), /PEFT < 0\.14.*retrain/);
  const seen = warnings(() => oftFromPeftJson({ peft_type: 'OFT', target_modules: ['q'], r: 0, oft_block_size: 8, use_cayley_neumann: true, peft_version: '0.17.1' }));
  assert.match(seen.join('\n'), /PEFT < 0\.18/);
});

test('ia3: configuration errors say what to do; no rank', () => {
  assert.throws(() => ia3Config({ targetModules: ['stem', 'fc1'], feedforwardModules: ['fc2'] }), /subset of targetModules.*'fc2' is not a target; add it to the targets/);
  const m = getAdapterMethod('ia3');
  assert.equal(m.rank(ia3Config({ targetModules: ['fc1'] })), null);
  const shared = (o: Record<string, unknown>) => SharedAdapterOptionsSchema.parse({ targets: ['fc1'], ...o });
  assert.throws(() => m.configFromRun(shared({ dropout: 0.1 }), {}), /\(IA\)³ has no dropout/);
  assert.throws(() => m.configFromRun(shared({ layersToTransform: [0] }), {}), /no layers_to_transform/);
  // r and alpha have defaults in the shared section, so they are ignored rather than refused.
  assert.deepEqual(m.configFromRun(shared({ r: 16, alpha: 32 }), {}), m.configFromRun(shared({}), {}));
  const bad = runConfigSchema().safeParse({ model: 'x', data: { source: 'y' }, method: 'ia3', ia3: { feedforward: ['fc1'] } });
  assert.ok(!bad.success && bad.error.issues.some((i) => i.path.join('.') === 'ia3' && /feedforward/.test(i.message)), 'unknown ia3 field named');
});

test('ia3: feed-forward modules match as PEFT does (key suffix for names, full match for a regex)', () => {
  assert.ok(isFeedforward('blocks.0.mlp.fc2', ['fc2']));
  assert.ok(!isFeedforward('blocks.0.mlp.fc1', ['fc2']));
  assert.ok(isFeedforward('blocks.3.mlp.fc2', '.*mlp\\.fc2'));
  assert.ok(!isFeedforward('blocks.3.mlp.fc2', 'mlp\\.fc2'));
});

test('ia3: unmerge divides the vector back out, and restores exactly where an entry is zero', () => {
  for (const ff of [false, true]) {
    const base = new Conv2d(4, 6, 3, { padding: 1, generator: new g.Generator(2) });
    const layer = new Ia3Layer(base);
    layer.addAdapter('default', { feedforward: ff, init: true });
    const l = layer.vector('default');
    g.assign(l, g.tensor(Array.from({ length: l.size }, (_, i) => (i === 1 ? 0 : 0.5 + i / 4)), l.shape));
    const w = base.weight.toArray().slice();
    const b = base.bias!.toArray().slice();
    const x = g.randn([1, 4, 5, 5], { generator: new g.Generator(3) });
    const before = g.noGrad(() => layer.forward(x)).toArray();
    layer.merge();
    const merged = g.noGrad(() => layer.forward(x)).toArray();
    merged.forEach((v, i) => assert.ok(Math.abs(v - before[i]!) < 1e-5, `merged output ${i}`));
    layer.unmerge();
    assert.deepEqual(Array.from(base.weight.toArray()), Array.from(w), 'weight restored exactly despite the zero');
    assert.deepEqual(Array.from(base.bias!.toArray()), Array.from(b), 'bias restored exactly');
  }
});

test('oft: r and oftBlockSize: exactly one nonzero; a value that does not divide becomes PEFT\'s nearest divisor, naming the valid ones', () => {
  assert.throws(() => oftConfig({ targetModules: ['fc1'], r: 4, oftBlockSize: 8 }), /r \(4\) or oftBlockSize \(8\), not both.*set the other to 0/);
  assert.throws(() => oftConfig({ targetModules: ['fc1'], r: 0, oftBlockSize: 0 }), /both are 0/);
  // PEFT's adjust_oft_parameters on a few fan-ins: 144 → 36, 147 → 21, 27 → 27 (larger than the fan-in), 9 → 3.
  assert.deepEqual([adjustToDivisor(144, 32), adjustToDivisor(147, 32), adjustToDivisor(27, 32), adjustToDivisor(9, 4), adjustToDivisor(10, 4)], [36, 21, 27, 3, 5]);
  const seen = warnings(() => new PeftModel(new SmallNet(new g.Generator(1)), 'oft', oftConfig({ targetModules: ['stem'], r: 5, oftBlockSize: 0 })));
  assert.deepEqual(seen, ["OFT on 'stem': r (blocks) 5 does not divide its 27 input features; using 3, as PEFT does. Valid values: 1, 3, 9, 27"]);
});

test('oft: a Conv2d\'s fan-in counts both kernel sides (3×1) and only in/groups channels', () => {
  assert.equal(OftLayer.features(new Conv2d(4, 5, [3, 1])), 12);
  assert.equal(OftLayer.features(new Conv2d(8, 8, 3, { groups: 8 })), 9);
  assert.equal(OftLayer.features(new Conv2d(8, 4, [1, 7], { groups: 2 })), 28);
});

function oftLayer(base: Linear | Conv2d, o: Partial<Parameters<OftLayer['addAdapter']>[1]> = {}): OftLayer {
  const features = OftLayer.features(base);
  const layer = new OftLayer(base);
  layer.addAdapter('default', { blocks: features / 4, blockSize: 4, moduleDropout: 0, coft: false, eps: 6e-5, blockShare: false, init: true, useCayleyNeumann: true, numCayleyNeumannTerms: 5, ...o });
  return layer;
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

test('oft: the rotation is the identity at init; the exact Cayley transform is orthogonal, the Neumann series nearly', () => {
  const eye = (D: number) => Array.from({ length: D * 16 }, (_, i) => ((i % 16) % 5 === 0 ? 1 : 0));
  const init = oftLayer(new Linear(8, 3));
  assert.deepEqual(Array.from(g.noGrad(() => init.rotation('default')).toArray()), eye(2));
  for (const neumann of [false, true]) {
    const layer = oftLayer(new Linear(8, 3), { useCayleyNeumann: neumann });
    g.assign(layer.oft_R.get('default')!.weight, g.randn([2, 6], { std: 0.1, generator: new g.Generator(4) }));
    const r = g.noGrad(() => layer.rotation('default'));
    const rtr = g.matmul(g.transpose(r, 1, 2), r).toArray();
    const err = maxAbs(rtr, eye(2));
    if (neumann) assert.ok(err > 1e-6 && err < 1e-2, `Neumann: |RᵀR − I| = ${err}`);
    else assert.ok(err < 1e-6, `exact: |RᵀR − I| = ${err}`);
  }
});

test('oft: merge computes W Rᵀ and unmerge the inverse rotation, restoring the base even where R is not orthogonal', () => {
  for (const base of [new Linear(8, 5, { generator: new g.Generator(5) }), new Conv2d(4, 6, [3, 1], { padding: [1, 0], generator: new g.Generator(5) })]) {
    const layer = oftLayer(base);
    // Large parameters: the Neumann series is far from orthogonal, so Rᵀ would not undo it.
    const v = layer.oft_R.get('default')!.weight;
    g.assign(v, g.randn(v.shape, { std: 0.4, generator: new g.Generator(6) }));
    const x = base instanceof Linear ? g.randn([3, 8]) : g.randn([2, 4, 5, 5]);
    const w = base.weight.toArray().slice();
    const unmerged = g.noGrad(() => layer.forward(x)).toArray();
    layer.merge();
    assert.ok(maxAbs(g.noGrad(() => layer.forward(x)).toArray(), unmerged) < 1e-5, 'merged output');
    layer.unmerge();
    assert.ok(maxAbs(base.weight.toArray(), w) < 1e-6, 'unmerge restores the base weight');
  }
});

test('oft: COFT keeps each block within eps/√blocks; block_share applies one block everywhere; module dropout resets ⌊p·blocks⌋ blocks in training', () => {
  const coft = oftLayer(new Linear(16, 4), { coft: true, eps: 0.2 });
  const v = coft.oft_R.get('default')!.weight;
  g.assign(v, g.randn(v.shape, { std: 1, generator: new g.Generator(7) }));
  g.noGrad(() => coft.forward(g.randn([2, 16])));
  const rows = v.toArray();
  for (let d = 0; d < 4; d++) {
    const frob = Math.SQRT2 * Math.hypot(...Array.from(rows.slice(d * 6, d * 6 + 6)));
    assert.ok(Math.abs(frob - 0.2 / 2) < 1e-6, `block ${d}: ‖Q‖_F = ${frob}`);
  }
  const shared = oftLayer(new Linear(16, 4), { blockShare: true });
  g.assign(shared.oft_R.get('default')!.weight, g.randn([1, 6], { generator: new g.Generator(8) }));
  const x = g.randn([1, 16], { generator: new g.Generator(9) });
  const perBlock = oftLayer(new Linear(16, 4));
  g.assign(perBlock.base_layer.weight, shared.base_layer.weight);
  g.assign(perBlock.base_layer.bias!, shared.base_layer.bias!);
  g.assign(perBlock.oft_R.get('default')!.weight, g.expand(shared.oft_R.get('default')!.weight, [4, 6]));
  assert.ok(maxAbs(g.noGrad(() => shared.forward(x)).toArray(), g.noGrad(() => perBlock.forward(x)).toArray()) < 1e-6, 'shared = one block repeated');
  const dropped = oftLayer(new Linear(16, 4), { moduleDropout: 0.5 });
  g.assign(dropped.oft_R.get('default')!.weight, g.randn([4, 6], { generator: new g.Generator(10) }));
  const identityBlocks = (r: g.Tensor) => [0, 1, 2, 3].filter((d) => maxAbs(r.toArray().slice(d * 16, d * 16 + 16), [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]) === 0).length;
  dropped.train();
  assert.equal(identityBlocks(g.noGrad(() => dropped.rotation('default'))), 2);
  dropped.eval();
  assert.equal(identityBlocks(g.noGrad(() => dropped.rotation('default'))), 0);
});
