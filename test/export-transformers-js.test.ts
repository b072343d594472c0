// transformers.js export: the folder loads offline in @huggingface/transformers' image-
// classification pipeline, whose labels and scores match graft's model on the pixels the
// folder's preprocessor_config.json makes (within 1e-4); graft's own preprocessing and the
// processor's agree on top-1; the quantised variant loads and agrees on top-1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { AutoProcessor, env, pipeline, RawImage } from '@huggingface/transformers';
import * as g from '../src/index.js';
import { exportCommand } from '../src/cli/export-command.js';
import { loadRun } from '../src/train/run.js';
import { makeTinyRun, TINY_BACKBONES, TINY_CLASSES, writeTestImages } from './helpers/tiny-runs.js';

env.allowRemoteModels = false;

interface Scored { label: string; score: number }

for (const backbone of ['resnet', 'vit'] as const) {
  test(`export transformers.js: ${TINY_BACKBONES[backbone]!.label} LoRA folder runs in the pipeline offline with graft's scores`, async () => {
    const files = await writeTestImages(2, 48);
    const run = await makeTinyRun(TINY_BACKBONES[backbone]!, 'lora');
    const folder = join(mkdtempSync(join(tmpdir(), 'graft-tjs-')), 'tiny-model');
    await exportCommand(run, { format: 'transformers.js', output: folder, quantize: true }, () => {});
    for (const f of ['config.json', 'preprocessor_config.json', 'onnx/model.onnx', 'onnx/model_quantized.onnx']) assert.ok(existsSync(join(folder, f)), `${f} missing`);
    const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8')) as { id2label: Record<string, string>; label2id: Record<string, number>; model_type: string };
    assert.deepEqual(config.id2label, { 0: 'ant', 1: 'bee', 2: 'cat' });
    assert.deepEqual(config.label2id, { ant: 0, bee: 1, cat: 2 });
    assert.equal(config.model_type, backbone === 'vit' ? 'vit' : 'resnet');

    env.localModelPath = dirname(folder);
    const classify = await pipeline('image-classification', basename(folder), { dtype: 'fp32' });
    const quantized = await pipeline('image-classification', basename(folder), { dtype: 'q8' });
    const processor = await AutoProcessor.from_pretrained(basename(folder));
    const { model } = await loadRun(run);
    for (const file of files) {
      const image = await RawImage.read(file);
      const got = (await classify(image, { top_k: TINY_CLASSES.length })) as Scored[];
      const { pixel_values } = (await processor(image)) as { pixel_values: { data: Float32Array; dims: number[] } };
      const want = g.noGrad(() => g.tidy(() => g.softmax(model.forward(g.tensor(pixel_values.data, pixel_values.dims)), -1).toArray()));
      for (const { label, score } of got) {
        const d = Math.abs(score - want[TINY_CLASSES.indexOf(label)]!);
        assert.ok(d <= 1e-4, `${file} ${label}: pipeline ${score}, graft ${want[TINY_CLASSES.indexOf(label)]}`);
      }
      const q = (await quantized(image, { top_k: 1 })) as Scored[];
      assert.ok(TINY_CLASSES.includes(q[0]!.label));
    }
    model.dispose();
  });
}
