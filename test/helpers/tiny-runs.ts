// Tiny run folders of real families (as training leaves them: every trainable tensor moved away
// from its initialisation, BatchNorm statistics updated) and small test images, for the tests
// of the commands that read runs (export, serve, import-adapter).
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as g from '../../src/index.js';
import type { Module } from '../../src/nn/module.js';
import { buildRunModel, saveTrainedModel, writeRunManifest } from '../../src/train/run.js';
import { runConfigSchema } from '../../src/train/run-config.js';
import '../../src/models/all.js';

export const TINY_CLASSES = ['ant', 'bee', 'cat'];

export interface TinyBackbone {
  label: string;
  config: Record<string, unknown>;
  targets: string[] | string;
  /** Adapter options over r 4, alpha 8. */
  adapter?: Record<string, unknown>;
}

export const TINY_BACKBONES: Record<string, TinyBackbone> = {
  resnet: { label: 'ResNet', config: { model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: '.*conv\\d' },
  mobilenet: { label: 'MobileNetV2', config: { model: 'mobilenet_v2', modelOverrides: { widthMult: 0.5, invertedResidualSetting: [[1, 16, 1, 1], [6, 24, 2, 2]] }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: 'features\\.1\\.conv\\.1|features\\.[23]\\.conv\\.2' },
  vit: { label: 'ViT', config: { model: 'vit_small_patch16_224', modelOverrides: { depth: 2, embedDim: 32, numHeads: 2 }, data: { source: 'unused', perClass: 1, imageSize: 32 } }, targets: 'all-linear' },
  dinov2: { label: 'DINOv2', config: { model: 'dinov2_small', modelOverrides: { numHiddenLayers: 2, hiddenSize: 32, numAttentionHeads: 2 }, data: { source: 'unused', perClass: 1, imageSize: 28 } }, targets: ['query', 'value'] },
};

function pretendTrained(model: Module, size: number, seed: number): void {
  const gen = new g.Generator(seed);
  g.noGrad(() => {
    for (const p of model.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std: 0.05, generator: gen })));
    model.train();
    g.tidy(() => model.forward(g.randn([2, 3, size, size], { generator: gen })));
  });
  model.eval();
}

/** A finished run folder of `backbone` trained with `method` (seeded, so each seed gives other weights). */
export async function makeTinyRun(backbone: TinyBackbone, method: string, seed = 99, dir = mkdtempSync(join(tmpdir(), 'graft-tiny-run-'))): Promise<string> {
  const c = runConfigSchema().parse({ ...backbone.config, method, adapter: { r: 4, alpha: 8, targets: backbone.targets, ...backbone.adapter }, train: { seed: 7 } });
  const { model } = await buildRunModel(c, TINY_CLASSES);
  pretendTrained(model, c.data.imageSize ?? 32, seed);
  mkdirSync(dir, { recursive: true });
  writeRunManifest(dir, { config: c, classes: TINY_CLASSES });
  saveTrainedModel(dir, model);
  model.dispose();
  return dir;
}

/** `count` seeded noise-and-gradient PNG images of `size`² in a new folder. */
export async function writeTestImages(count: number, size = 40): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-images-'));
  const files: string[] = [];
  const gen = new g.Generator(3);
  for (let i = 0; i < count; i++) {
    const noise = g.rand([size * size * 3], { generator: gen }).toArray() as Float32Array;
    const px = Buffer.alloc(size * size * 3);
    for (let k = 0; k < px.length; k++) px[k] = Math.min(255, Math.floor(noise[k]! * 128 + ((k * (i + 1)) % 128)));
    const file = join(dir, `img${i}.png`);
    await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toFile(file);
    files.push(file);
  }
  return files;
}

/** Two classes ('a', 'b') of five 16² PNGs each under `dir`, distinct per class and image (the CLI tests' training folder). */
export async function writeTwoClassFolder(dir: string): Promise<void> {
  for (const [k, c] of ['a', 'b'].entries()) {
    mkdirSync(join(dir, c), { recursive: true });
    for (let i = 0; i < 5; i++) {
      const px = Buffer.alloc(16 * 16 * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * (7 + i) + k * 90) % 256;
      await sharp(px, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(dir, c, `${i}.png`));
    }
  }
}
