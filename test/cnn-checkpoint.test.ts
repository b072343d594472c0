// Loading torchvision/timm-named CNN checkpoints: wrapper prefixes (module., model., backbone.)
// stripped, a checkpoint of another architecture or with another head size as one paragraph,
// and buildModel taking the checkpoint's class count (ViTs too).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { StateDictError } from '../src/nn/module.js';
import { createModel } from '../src/models/registry.js';
import type { VisionModel } from '../src/models/model.js';
import { loadCnnCheckpoint, stripPrefix } from '../src/models/cnn/checkpoint.js';
import { CheckpointFormatError } from '../src/models/checkpoint-error.js';
import { buildModel } from '../src/models/build-model.js';
import '../src/models/all.js';

const RESNET = { layers: [1, 1, 1, 1] };
const MOBILENET = { widthMult: 0.5, invertedResidualSetting: [[1, 16, 1, 1], [6, 24, 2, 2]] };
const dir = mkdtempSync(join(tmpdir(), 'graft-cnn-ckpt-'));
const models: VisionModel[] = [];
const keep = <M extends VisionModel>(m: M): M => (models.push(m), m);
after(() => {
  for (const m of models) m.dispose();
});

const resnet10 = keep(createModel('resnet18', { overrides: RESNET, numClasses: 10 }));
const mobilenet = keep(createModel('mobilenet_v2', { overrides: MOBILENET, numClasses: 4 }));

function prefixed(state: Map<string, g.Tensor>, prefix: string): Map<string, g.Tensor> {
  return new Map([...state].map(([k, t]) => [prefix + k, t]));
}

function assertSameWeights(a: VisionModel, b: VisionModel, skip: (k: string) => boolean = () => false): void {
  const bs = b.stateDict();
  for (const [k, t] of a.stateDict()) if (!skip(k)) assert.deepEqual(t.toArray(), bs.get(k)!.toArray(), k);
}

test('wrapper prefixes are stripped: module. (DataParallel), model., backbone., and module.model.', () => {
  for (const prefix of ['module.', 'model.', 'backbone.', 'module.model.']) {
    const model = createModel('mobilenet_v2', { overrides: MOBILENET, numClasses: 4 });
    const report = loadCnnCheckpoint(model, prefixed(mobilenet.stateDict(), prefix), { name: 'mobilenet_v2' });
    assert.equal(report.strippedPrefix, prefix);
    assert.equal(report.head, 'loaded');
    assert.equal(report.checkpointClasses, 4);
    assertSameWeights(model, mobilenet);
    model.dispose();
  }
  // Only a prefix every key carries, and not one the model's own names start with.
  assert.equal(stripPrefix(['module.a', 'b'], ['a', 'b']), '');
  assert.equal(stripPrefix(['model.a', 'model.b'], ['model.a', 'model.b']), '');
});

test('a ViT checkpoint into resnet18: what was expected and what was found, in one paragraph', () => {
  const vit = new Map<string, g.Tensor>([
    ['cls_token', g.zeros([1, 1, 8])], ['pos_embed', g.zeros([1, 5, 8])], ['patch_embed.proj.weight', g.zeros([8, 3, 16, 16])],
    ['blocks.0.attn.qkv.weight', g.zeros([24, 8])], ['blocks.0.norm1.weight', g.zeros([8])], ['norm.weight', g.zeros([8])], ['head.weight', g.zeros([10, 8])],
  ]);
  const model = keep(createModel('resnet18', { overrides: RESNET, numClasses: 10 }));
  assert.throws(() => loadCnnCheckpoint(model, vit, { name: 'resnet18', what: 'vit.safetensors' }), (e: unknown) => {
    assert.ok(e instanceof CheckpointFormatError);
    const msg = e.message;
    assert.ok(!msg.includes('\n'), 'one paragraph');
    assert.match(msg, /^vit\.safetensors is not a resnet18 checkpoint: resnet18 expects 74 keys such as conv1\.weight, bn1\.weight, bn1\.bias, layer1\.0\.conv1\.weight …, but/);
    assert.match(msg, /but only 0 of them are among the checkpoint's 7 keys \(cls_token, pos_embed, patch_embed\.proj\.weight, blocks\.0\.attn\.qkv\.weight …\)/);
    assert.match(msg, /it looks like a timm ViT \(vit_\*\/deit_\* in graft\) checkpoint/);
    return true;
  });
  // A torchvision ResNet into RegNet: named as a ResNet.
  const regnet = keep(createModel('regnety_400mf', { numClasses: 10 }));
  assert.throws(() => loadCnnCheckpoint(regnet, resnet10.stateDict(), { name: 'regnety_400mf' }), /not a regnety_400mf checkpoint: .*it looks like a ResNet checkpoint/);
  for (const t of vit.values()) t.dispose();
});

test('another number of classes: both counts and the two ways on; reinitHead keeps the model\'s head', () => {
  const model = keep(createModel('resnet18', { overrides: RESNET, numClasses: 5 }));
  const ownHead = model.stateDict().get('fc.weight')!.toArray();
  assert.throws(() => loadCnnCheckpoint(model, prefixed(resnet10.stateDict(), 'module.'), { name: 'resnet18', what: 'r.safetensors' }), (e: unknown) => {
    assert.ok(e instanceof CheckpointFormatError);
    assert.match(e.message, /^r\.safetensors: the head \(fc\) has 10 classes in the checkpoint and 5 in the model \(fc\.weight \[10, 512\] vs \[5, 512\]\)\. /);
    assert.match(e.message, /numClasses: 10 to keep the checkpoint's head .*reinitHead: true to let graft re-initialise the head for 5 classes/);
    return true;
  });
  const report = loadCnnCheckpoint(model, prefixed(resnet10.stateDict(), 'module.'), { name: 'resnet18', reinitHead: true });
  assert.equal(report.head, 'initialised');
  assert.equal(report.checkpointClasses, 10);
  assert.deepEqual(model.stateDict().get('fc.weight')!.toArray(), ownHead);
  assertSameWeights(model, resnet10, (k) => k.startsWith('fc.'));
});

test('a checkpoint without a head keeps the model\'s head; a model without a head drops the checkpoint\'s', () => {
  const headless = new Map([...mobilenet.stateDict()].filter(([k]) => !k.startsWith('classifier.')));
  const model = keep(createModel('mobilenet_v2', { overrides: MOBILENET, numClasses: 4 }));
  assert.equal(loadCnnCheckpoint(model, headless).head, 'initialised');
  assertSameWeights(model, mobilenet, (k) => k.startsWith('classifier.'));
  for (const [name, overrides, source] of [['mobilenet_v2', MOBILENET, mobilenet], ['resnet18', RESNET, resnet10]] as const) {
    const bare = keep(createModel(name, { overrides, numClasses: 0 }));
    const r = loadCnnCheckpoint(bare, source.stateDict(), { name });
    assert.equal(r.head, 'none', name);
    assertSameWeights(bare, source);
  }
});

test('other differences stay the strict error listing the keys', () => {
  const state = new Map(mobilenet.stateDict());
  state.delete('features.0.1.running_var');
  const model = keep(createModel('mobilenet_v2', { overrides: MOBILENET, numClasses: 4 }));
  assert.throws(() => loadCnnCheckpoint(model, state, { what: 'm.safetensors', name: 'mobilenet_v2' }), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /loading m\.safetensors into mobilenet_v2 failed .*missing: features\.0\.1\.running_var/s);
    return true;
  });
});

test('buildModel: the head takes the checkpoint\'s class count unless numClasses says otherwise', async () => {
  const file = join(dir, 'resnet10.safetensors');
  saveSafetensors(file, prefixed(resnet10.stateDict(), 'backbone.'));
  const model = keep(await buildModel({ name: 'resnet18', weights: file, overrides: RESNET }));
  assert.deepEqual([...model.stateDict().get('fc.weight')!.shape], [10, 512]);
  assertSameWeights(model, resnet10);
  await assert.rejects(buildModel({ name: 'resnet18', weights: file, overrides: RESNET, numClasses: 3 }),
    /the head has 10 classes in the checkpoint and 3 in the model resnet18\. Leave numClasses out .* reinitHead: true to let graft re-initialise the head for 3 classes/);
  const three = keep(await buildModel({ name: 'resnet18', weights: file, overrides: RESNET, numClasses: 3, reinitHead: true }));
  assert.deepEqual([...three.stateDict().get('fc.weight')!.shape], [3, 512]);
  assertSameWeights(three, resnet10, (k) => k.startsWith('fc.'));
  const vitFile = join(dir, 'vit.safetensors');
  const vit = keep(createModel('vit_small_patch16_224', { overrides: { depth: 1, embedDim: 32, numHeads: 2 }, numClasses: 6 }));
  saveSafetensors(vitFile, vit.stateDict());
  await assert.rejects(buildModel({ name: 'resnet18', weights: vitFile, overrides: RESNET }), /is not a resnet18 checkpoint: .*timm ViT/);
  const vit6 = keep(await buildModel({ name: 'vit_small_patch16_224', weights: vitFile, overrides: { depth: 1, embedDim: 32, numHeads: 2 } }));
  assertSameWeights(vit6, vit);
  await assert.rejects(buildModel({ name: 'vit_small_patch16_224', weights: vitFile, overrides: { depth: 1, embedDim: 32, numHeads: 2 }, numClasses: 2 }),
    /the head has 6 classes in the checkpoint and 2 in the model vit_small_patch16_224/);
});
