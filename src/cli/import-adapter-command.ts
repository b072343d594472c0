// `graft import-adapter ADAPTER_DIR --model NAME --weights CKPT --classes a,b,… --output RUN`: a run
// folder from a Python PEFT adapter folder and its base checkpoint, so eval, predict, export and
// serve work on it. The run's configuration reproduces the adapter's (rank, alpha, targets,
// modules_to_save); the adapter's tensors are then loaded strictly and saved as the run's own.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { methodForPeftJson } from '../adapters/registry.js';
import type { LoraConfig } from '../adapters/lora/config.js';
import { PeftModel } from '../adapters/peft-model.js';
import { headPath } from '../adapters/apply.js';
import { createModel } from '../models/registry.js';
import { buildRunModel, saveTrainedModel, writeRunManifest } from '../train/run.js';
import { runConfigSchema, type RunConfig } from '../train/run-config.js';

export interface ImportAdapterOptions {
  model: string;
  weights: string;
  classes: string[];
  output: string;
  imageSize?: number;
  overrides?: Record<string, unknown>;
}

/** Creates run folder `opts.output` from the PEFT adapter folder `adapterDir`; returns its configuration. */
export async function importAdapterCommand(adapterDir: string, opts: ImportAdapterOptions, log: (l: string) => void = console.log): Promise<RunConfig> {
  const configFile = join(adapterDir, 'adapter_config.json');
  const weightsFile = join(adapterDir, 'adapter_model.safetensors');
  for (const f of [configFile, weightsFile]) if (!existsSync(f)) throw new Error(`${adapterDir} is not a PEFT adapter folder: ${f} is missing`);
  if (existsSync(join(opts.output, 'run.json'))) throw new Error(`${opts.output} already holds a run (run.json); choose a new --output folder`);
  const json = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  const method = methodForPeftJson(json, configFile);
  if (method.name !== 'lora' && method.name !== 'dora') throw new Error(`${configFile}: graft import-adapter reads LoRA and DoRA adapters; this one is ${method.name}`);
  const c = method.fromPeftJson(json, configFile) as LoraConfig;
  if (c.initLoraWeights === 'pissa') throw new Error(`${configFile}: a PiSSA adapter changes its base weights, which the adapter folder does not hold; convert it to plain LoRA in PEFT first`);
  // The head is trained as a module to save in every graft run; the run adds it by its own path.
  const head = headPath(createModel(opts.model, { imageSize: opts.imageSize, overrides: opts.overrides, numClasses: opts.classes.length }));
  const headName = head.split('.').pop()!;
  const config = runConfigSchema().parse({
    model: opts.model, weights: opts.weights, method: method.name, output: opts.output, modelOverrides: opts.overrides,
    data: { source: adapterDir, ...(opts.imageSize ? { imageSize: opts.imageSize } : {}) },
    adapter: {
      r: c.r, alpha: c.loraAlpha, dropout: c.loraDropout, targets: c.targetModules, exclude: c.excludeModules,
      modulesToSave: c.modulesToSave?.filter((m) => m !== head && m !== headName), rankPattern: c.rankPattern, alphaPattern: c.alphaPattern, layersToTransform: c.layersToTransform,
    },
    lora: { rslora: c.useRslora, init: c.initLoraWeights },
  });
  const { model } = await buildRunModel(config, opts.classes);
  try {
    if (!(model instanceof PeftModel)) throw new Error(`${opts.model} with method ${method.name} built no adapter`);
    model.loadAdapterWeights(weightsFile);
    model.eval();
    mkdirSync(opts.output, { recursive: true });
    writeRunManifest(opts.output, { config, classes: opts.classes });
    saveTrainedModel(opts.output, model);
  } finally {
    model.dispose();
  }
  log(`imported ${method.name} adapter ${adapterDir} (r=${c.r}, targets ${JSON.stringify(c.targetModules)}) onto ${opts.model} (${opts.weights}): run folder ${opts.output}`);
  return config;
}

/** Registers `graft import-adapter`. */
export function registerImportAdapterCommand(program: Command, fail: (e: unknown) => never): void {
  program
    .command('import-adapter')
    .description('a run folder from a Python PEFT adapter folder (LoRA, DoRA) and its base checkpoint')
    .argument('<adapter>', 'folder with adapter_config.json and adapter_model.safetensors')
    .requiredOption('--model <name>', 'the backbone name (see graft inspect --list)')
    .requiredOption('--weights <path>', 'the base checkpoint: a .safetensors file, a folder, or hf:ORG/NAME')
    .requiredOption('--classes <list>', 'comma-separated class names, in the order of the head\'s outputs', (v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .requiredOption('--output <dir>', 'the new run folder')
    .option('--image-size <n>', 'input size (square); default: the model\'s own', (v) => Number(v))
    .action(async (adapter: string, o: { model: string; weights: string; classes: string[]; output: string; imageSize?: number }) => {
      try {
        await importAdapterCommand(adapter, o);
      } catch (e) {
        fail(e);
      }
    });
}
