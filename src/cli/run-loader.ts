// Rebuilding a finished run's model from its folder: run.json (configuration and classes) and
// the adapter (PEFT layout) or model.safetensors it saved.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyMethod } from '../adapters/methods.js';
import { PeftModel } from '../adapters/peft-model.js';
import { loadSafetensors } from '../io/safetensors.js';
import type { Module } from '../nn/module.js';
import type { PreprocessConfig } from '../data/preprocess.js';
import { RunConfigSchema, type RunConfig } from './config.js';
import { buildModel } from '../models/build-model.js';
import { downloadProgressPrinter } from './download-progress.js';

export interface LoadedRun {
  config: RunConfig;
  classes: string[];
  model: Module;
  preprocess: PreprocessConfig;
}

export async function loadRun(dir: string): Promise<LoadedRun> {
  const runFile = join(dir, 'run.json');
  if (!existsSync(runFile)) throw new Error(`${dir} is not a graft run folder (no run.json); pass the --output folder of 'graft train'`);
  const saved = JSON.parse(readFileSync(runFile, 'utf8')) as { config: unknown; classes: string[] };
  const config = RunConfigSchema.parse(saved.config);
  const backbone = await buildModel({ name: config.model, weights: config.method === 'scratch' ? undefined : config.weights, imageSize: config.data.imageSize, onProgress: downloadProgressPrinter() });
  const preprocess = backbone.preprocess;
  const model = applyMethod(backbone, config.method, {
    numClasses: saved.classes.length, head: config.head, headFrom: config.headFrom,
    lora: { r: config.lora.r, loraAlpha: config.lora.alpha, loraDropout: config.lora.dropout, targetModules: config.lora.targets, excludeModules: config.lora.exclude, modulesToSave: config.lora.modulesToSave, rankPattern: config.lora.rankPattern, alphaPattern: config.lora.alphaPattern, useRslora: config.lora.rslora },
  });
  const weightsFile = model instanceof PeftModel ? join(dir, 'adapter', 'adapter_model.safetensors') : join(dir, 'model.safetensors');
  if (!existsSync(weightsFile)) throw new Error(`${dir} has no trained weights (${weightsFile}); the run may not have finished — resume it with graft train --resume`);
  const file = loadSafetensors(weightsFile);
  try {
    const want = model instanceof PeftModel ? model.adapterStateDict() : null;
    if (want) {
      const missing = [...want.keys()].filter((k) => !file.has(k));
      if (missing.length) throw new Error(`${weightsFile} does not match the run's configuration: missing ${missing.slice(0, 3).join(', ')}`);
      for (const [k, t] of want) t.backend.copy(file.get(k)!.view(), t.view());
    } else {
      model.loadStateDict(file, { strict: false });
    }
  } finally {
    for (const t of file.values()) t.dispose();
  }
  model.eval();
  return { config, classes: saved.classes, model, preprocess };
}
