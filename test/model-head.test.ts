// The one head rule (classifierPath, src/models/head.ts, which the adapters' head replacement
// uses) over every registered family: the path of the classifier Linear, and null for a model
// built without one. A family registered without a case here fails the first test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Linear } from '../src/nn/layers.js';
import { createModel, listModels } from '../src/models/registry.js';
import type { VisionModel } from '../src/models/model.js';
import { classifierPath } from '../src/models/head.js';
import { KerasModel, TfGraphModel } from '../src/models/keras/index.js';
import '../src/backends/all.js';
import '../src/models/all.js';

/** A small model of each family (fixture configurations), and where its classifier is. */
const FAMILIES: Record<string, { name: string; overrides?: Record<string, unknown>; head: string }> = {
  alexnet: { name: 'alexnet', head: 'classifier.6' },
  resnet: { name: 'resnet18', overrides: { layers: [1, 1, 1, 1] }, head: 'fc' },
  mobilenet_v2: { name: 'mobilenet_v2', overrides: { widthMult: 0.5, invertedResidualSetting: [[1, 16, 1, 1], [6, 24, 2, 2]] }, head: 'classifier.1' },
  convnext: { name: 'convnext_tiny', overrides: { blockSetting: [[16, 32, 1], [32, 64, 1], [64, 128, 2], [128, null, 1]] }, head: 'classifier.2' },
  regnet: { name: 'regnety_400mf', overrides: { stemWidth: 16, depths: [1, 2, 1, 1], widths: [16, 32, 48, 64], groupWidths: [8, 8, 8, 8], bottleneckMultipliers: [1, 1, 1, 1], seRatio: 0.25 }, head: 'fc' },
  swin: { name: 'swin_tiny', overrides: { embedDim: 8, depths: [2, 2, 2], numHeads: [1, 2, 2] }, head: 'head' },
  vit: { name: 'vit_small_patch16_224', overrides: { embedDim: 32, depth: 2, numHeads: 4, patchSize: 4 }, head: 'head' },
  dinov2: { name: 'dinov2_small', overrides: { hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4, patchSize: 4 }, head: 'classifier' },
  dinov2_with_registers: { name: 'dinov2_small_reg', overrides: { hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4, patchSize: 4 }, head: 'classifier' },
  dinov3: { name: 'dinov3_vits16', overrides: { hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4, patchSize: 4, intermediateSize: 64 }, head: 'classifier' },
  // The pretrained nsfwjs MobileNetV2 (a Keras LayersModel: 1280 → 256 → 128 → 5 Dense head).
  nsfwjs: { name: 'nsfwjs_mobilenet_v2', head: 'dense_3' },
};

test('every registered family has a case', () => {
  const families = new Set(listModels().map((n) => familyOf(n)));
  assert.deepEqual([...families].sort(), Object.keys(FAMILIES).sort());
});

function familyOf(name: string): string {
  for (const family of Object.keys(FAMILIES)) if (listModels(family).includes(name)) return family;
  return `unregistered family of ${name}`;
}

for (const [family, c] of Object.entries(FAMILIES)) {
  test(`${family}: classifierPath is the classifier Linear; null without a head`, () => {
    const model: VisionModel = createModel(c.name, { overrides: c.overrides, numClasses: 7 });
    const path = classifierPath(model);
    assert.equal(path, c.head);
    const head = model.getModule(path!);
    assert.ok(head instanceof Linear);
    assert.equal(head.outFeatures, 7);
    model.dispose();
    const headless = createModel(c.name, { overrides: c.overrides, numClasses: 0 });
    assert.equal(classifierPath(headless), null);
    headless.dispose();
  });
}

test('imported models: the classifier after a head reset, removal and replacement; the graph model\'s last MatMul', () => {
  const keras = createModel('nsfwjs_mobilenet_v2') as KerasModel;
  keras.resetClassifier(3);
  assert.equal(classifierPath(keras), 'dense_3');
  keras.resetClassifier(0);
  assert.equal(classifierPath(keras), null);
  assert.equal(keras.replaceHeadWithLinear(4), 'classifier');
  assert.equal(classifierPath(keras), 'classifier');
  keras.dispose();
  const graph = createModel('nsfwjs_mobilenet_v2_mid') as TfGraphModel;
  assert.ok(graph instanceof TfGraphModel);
  assert.equal(classifierPath(graph), 'dense');
  assert.equal((graph.getModule(classifierPath(graph)!) as Linear).outFeatures, 5);
  graph.dispose();
});
