// Python PEFT interchange: adapter folders in PEFT's layout on a transformers-named DINOv2
// (Dinov2ForImageClassification) and a timm ViT, written by fixtures/peft/make_peft_fixtures.py
// (/usr/bin/python3 fixtures/peft/make_peft_fixtures.py), become graft runs through
// import-adapter whose logits match the script's; the run's own adapter folder carries exactly
// PEFT's keys (base_model.model.dinov2.encoder.layer.0.attention.attention.query.lora_A.weight, …).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { importAdapterCommand } from '../src/cli/import-adapter-command.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { loadRun } from '../src/train/run.js';
import '../src/models/all.js';

const TOLERANCE = 1e-4;
const CASES = [
  { folder: 'dinov2', model: 'dinov2_small', overrides: { hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4, patchSize: 4, imageSize: [16, 16] } },
  { folder: 'timm_vit', model: 'vit_small_patch16_224', overrides: { embedDim: 32, depth: 2, numHeads: 4, patchSize: 4, imageSize: [16, 16] } },
];

for (const c of CASES) {
  test(`peft interchange: a PEFT LoRA adapter on ${c.model} imports with the script's logits and saves PEFT's keys`, async () => {
    const dir = join('fixtures/peft', c.folder);
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { input: number[]; inputShape: number[]; logits: number[]; keys: string[] };
    const output = join(mkdtempSync(join(tmpdir(), 'graft-import-')), 'run');
    await importAdapterCommand(join(dir, 'adapter'), { model: c.model, weights: join(dir, 'base.safetensors'), classes: ['a', 'b', 'c'], output, imageSize: 16, overrides: c.overrides }, () => {});
    const run = await loadRun(output);
    const logits = g.noGrad(() => run.model.forward(g.tensor(Float32Array.from(expected.input), expected.inputShape)).toArray());
    let diff = 0;
    expected.logits.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - logits[i]!))));
    assert.ok(diff <= TOLERANCE, `logits differ from the PEFT script's by ${diff}`);
    const saved = new SafetensorsFile(join(output, 'adapter', 'adapter_model.safetensors'));
    assert.deepEqual([...saved.tensors.keys()].sort(), expected.keys);
    saved.close();
    const config = JSON.parse(readFileSync(join(output, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    const original = JSON.parse(readFileSync(join(dir, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['peft_type', 'r', 'lora_alpha', 'target_modules', 'use_dora', 'bias']) assert.deepEqual(config[k], original[k], k);
    run.model.dispose();
  });
}

test('peft interchange: graft names a DINOv2 adapter as PEFT does on Dinov2ForImageClassification', async () => {
  const { createModel } = await import('../src/models/registry.js');
  const { PeftModel } = await import('../src/adapters/peft-model.js');
  const { loraConfig } = await import('../src/adapters/lora/config.js');
  const m = createModel('dinov2_small', { numClasses: 3, imageSize: 16, overrides: CASES[0]!.overrides });
  const peft = new PeftModel(m, 'lora', loraConfig({ targetModules: ['query'], modulesToSave: ['classifier'], r: 2 }));
  const keys = [...peft.adapterStateDict().keys()];
  assert.ok(keys.includes('base_model.model.dinov2.encoder.layer.0.attention.attention.query.lora_A.weight'), keys.join(', '));
  assert.ok(keys.includes('base_model.model.classifier.weight'));
  peft.dispose();
});
