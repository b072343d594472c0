// The run folder contract: the model rebuilt from a run folder (train/run.ts loadRun, as `graft
// eval`, `predict` and `merge` use it) computes exactly what the trained model computed, for every
// method graft knows (baselines and every registered adapter method), on a CNN with BatchNorm and
// on a ViT, at a rank below min(in, out), PiSSA and an MLP head included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import type { Module } from '../src/nn/module.js';
import { methodNames } from '../src/adapters/apply.js';
import { getAdapterMethod, isAdapterMethod } from '../src/adapters/registry.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { buildRunModel, loadRun, saveTrainedModel, writeRunManifest } from '../src/train/run.js';
import { runConfigSchema, type RunConfig } from '../src/train/run-config.js';
import '../src/models/all.js';

const CLASSES = ['a', 'b', 'c'];

interface Backbone {
  label: string;
  config: Record<string, unknown>;
  targets: string[] | string;
  input: number[];
  /** Methods that do not apply to this backbone, with why; building one must fail saying so. */
  notFor?: Record<string, { why: string; error: RegExp }>;
  /** Only these methods (extra backbones for methods the first two cannot show). */
  only?: string[];
}
const BLOCKS_ONLY = { why: 'Mona inserts modules into transformer and ConvNeXt blocks; a ResNet has none', error: /'all-blocks' takes every module mona adapts/ };
const BACKBONES: Backbone[] = [
  { label: 'ResNet', config: { model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: '.*conv\\d', input: [2, 3, 32, 32], notFor: { mona: BLOCKS_ONLY } },
  { label: 'ViT', config: { model: 'vit_small_patch16_224', modelOverrides: { depth: 2, embedDim: 32, numHeads: 2 }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: 'all-linear', input: [2, 3, 32, 32] },
  // Mona's other two layouts: Swin's channels-last stages and ConvNeXt's channels-first ones.
  { label: 'Swin', config: { model: 'swin_tiny', modelOverrides: { embedDim: 16, depths: [1, 1], numHeads: [1, 2], windowSize: [2, 2] }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: 'all-blocks', input: [2, 3, 32, 32], only: ['mona'] },
  { label: 'ConvNeXt', config: { model: 'convnext_tiny', modelOverrides: { blockSetting: [[8, 16, 1], [16, null, 1]] }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: 'all-blocks', input: [2, 3, 32, 32], only: ['mona'] },
];

function runConfig(b: Backbone, method: string, extra: Record<string, unknown> = {}): RunConfig {
  return runConfigSchema().parse({ ...b.config, method, adapter: { r: 4, alpha: 8, targets: b.targets }, train: { seed: 7 }, ...extra });
}

/** What training leaves behind: every trainable parameter moved, BatchNorm statistics updated where they are not frozen. */
function pretendTrained(model: Module, input: number[]): void {
  const gen = new g.Generator(99);
  g.noGrad(() => {
    for (const p of model.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std: 0.05, generator: gen })));
    model.train();
    g.tidy(() => model.forward(g.randn(input, { generator: gen })));
  });
  model.eval();
}

async function assertReloadsExactly(c: RunConfig, input: number[], what: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-run-'));
  const { model } = await buildRunModel(c, CLASSES);
  pretendTrained(model, input);
  writeRunManifest(dir, { config: c, classes: CLASSES });
  saveTrainedModel(dir, model);
  const x = g.randn(input, { generator: new g.Generator(5) });
  const logits = async (m: Module) => {
    const run = () => Promise.resolve(g.noGrad(() => g.keep(m.forward(x))));
    return m instanceof PeftModel ? m.withMerged(run) : run();
  };
  const want = await logits(model);
  // Something else runs between training and reloading: the default generator moves on.
  g.randn([17]);
  const loaded = await loadRun(dir);
  const got = await logits(loaded.model);
  assert.deepEqual(Array.from(got.toArray()), Array.from(want.toArray()), `${what}: reloaded logits differ`);
  assert.deepEqual(loaded.classes, CLASSES);
  model.dispose();
  loaded.model.dispose();
}

for (const b of BACKBONES) {
  for (const method of b.only ?? methodNames()) {
    const not = b.notFor?.[method];
    if (not) {
      test(`run reload: ${b.label} ${method} does not apply (${not.why})`, async () => {
        await assert.rejects(buildRunModel(runConfigSchema().parse({ ...b.config, method, train: { seed: 7 } }), CLASSES), not.error);
      });
      continue;
    }
    // Methods with their own default targets (Mona: every block) keep them on the shared backbones.
    const own = isAdapterMethod(method) && getAdapterMethod(method).defaultTargets !== undefined;
    test(`run reload: ${b.label} ${method} rebuilds the trained model exactly`, async () => {
      const c = runConfig(b, method);
      await assertReloadsExactly(own ? { ...c, adapter: { ...c.adapter, targets: undefined } } : c, b.input, `${b.label} ${method}`);
    });
  }
}

test('run reload: a PiSSA run reloads onto the same residual base (rank 4 of a 32-wide ViT)', async () => {
  const vit = BACKBONES[1]!;
  await assertReloadsExactly(runConfig(vit, 'lora', { lora: { init: 'pissa' } }), vit.input, 'ViT PiSSA');
});

test('run reload: a linear probe with an MLP head reloads exactly', async () => {
  const cnn = BACKBONES[0]!;
  await assertReloadsExactly(runConfig(cnn, 'linear-probe', { head: 'mlp' }), cnn.input, 'ResNet MLP probe');
});

test('run reload: weights that do not fit the run are refused, naming the keys', async () => {
  const cnn = BACKBONES[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'graft-run-'));
  const c = runConfig(cnn, 'full');
  const { model } = await buildRunModel(c, CLASSES);
  writeRunManifest(dir, { config: c, classes: CLASSES });
  saveTrainedModel(dir, model);
  // The same folder read as a four-class run: the head no longer fits.
  writeRunManifest(dir, { config: c, classes: [...CLASSES, 'd'] });
  await assert.rejects(loadRun(dir), /shape mismatch for fc\.weight/);
  model.dispose();
});

test('run reload: defaults left to graft (targets, head) resolve to the same model on reload', async () => {
  const b = BACKBONES[0]!;
  const c = runConfigSchema().parse({ ...b.config, method: 'lora', adapter: { r: 4, alpha: 8 }, train: { seed: 7 } });
  assert.equal(c.adapter.targets, undefined);
  await assertReloadsExactly(c, b.input, 'ResNet lora with default targets');
});

for (const b of BACKBONES) {
  // The backbones kept for one method (Mona on Swin and ConvNeXt) run that method on the 4-bit base.
  for (const method of b.only ?? ['lora', 'dora', 'ia3']) {
    test(`run reload: ${b.label} ${method} on an NF4 double-quantised base rebuilds the trained model exactly`, async () => {
      await assertReloadsExactly(runConfig(b, method, { quantize: { type: 'nf4', doubleQuant: true } }), b.input, `${b.label} ${method} nf4`);
    });
  }
}
