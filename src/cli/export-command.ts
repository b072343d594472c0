// `graft export RUN --format onnx|transformers.js --output PATH`: a run's merged model for
// onnxruntime, or as a transformers.js image-classification folder.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { exportOnnx, inferenceModel, OPSET } from '../export/onnx/export.js';
import { writeTransformersJsFolder } from '../export/transformers-js.js';
import { loadRun, readRunManifest } from '../train/run.js';
import { ConfigError } from '../errors.js';
import type { Module } from '../nn/module.js';

export const EXPORT_FORMATS = ['onnx', 'transformers.js'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  format: ExportFormat;
  output: string;
  /** transformers.js: also write onnx/model_quantized.onnx (int8 weights). */
  quantize?: boolean;
}

function familyOf(model: Module): string {
  const family = (model as { family?: unknown }).family;
  return typeof family === 'string' ? family : model.constructor.name;
}

/** Exports run `runDir` as `opts.format` to `opts.output` (a file for onnx, a folder for transformers.js). */
export async function exportCommand(runDir: string, opts: ExportOptions, log: (l: string) => void = console.log): Promise<void> {
  if (readRunManifest(runDir).config.task === 'segmentation') {
    throw new ConfigError(`run ${runDir} is a segmentation run; graft export writes classification models (ONNX with class scores, transformers.js image-classification). Use graft predict for its masks (docs/segmentation.md)`);
  }
  const run = await loadRun(runDir);
  try {
    const model = inferenceModel(run.model, `run ${runDir} (${run.config.method})`);
    const base = { preprocess: run.preprocess, classes: run.classes, modelName: run.config.model, method: run.config.method, source: runDir };
    if (opts.format === 'onnx') {
      mkdirSync(dirname(opts.output), { recursive: true });
      writeFileSync(opts.output, exportOnnx(model, base));
      log(`exported ${run.config.model} · ${run.config.method} of ${runDir} as ONNX (opset ${OPSET}, input pixel_values [batch, ${run.preprocess.inputSize.join(', ')}], output logits [batch, ${run.classes.length}]): ${opts.output}`);
      return;
    }
    const files = writeTransformersJsFolder(opts.output, {
      family: familyOf(model), classes: run.classes, preprocess: run.preprocess, model: exportOnnx(model, base),
      quantized: opts.quantize ? exportOnnx(model, { ...base, quantize: true }) : undefined,
      provenance: { model: run.config.model, method: run.config.method, source: runDir },
    });
    log(`exported ${run.config.model} · ${run.config.method} of ${runDir} for transformers.js: ${files.join(', ')}`);
  } finally {
    run.model.dispose();
  }
}

/** Registers `graft export` on the program; `fail` reports errors as the other commands do. */
export function registerExportCommand(program: Command, fail: (e: unknown) => never): void {
  program
    .command('export')
    .description('a run\'s merged model as ONNX, or as a transformers.js image-classification folder')
    .argument('<run>', 'the run folder of graft train (or graft import-adapter)')
    .option('--format <format>', EXPORT_FORMATS.join(' or '), (v) => {
      if (!(EXPORT_FORMATS as readonly string[]).includes(v)) throw new InvalidArgumentError(`--format must be ${EXPORT_FORMATS.join(' or ')}; got '${v}'`);
      return v;
    }, 'onnx')
    .requiredOption('--output <path>', 'the .onnx file (onnx) or the folder (transformers.js)')
    .option('--quantize', 'transformers.js: also write onnx/model_quantized.onnx with int8 weights')
    .action(async (run: string, o: { format: ExportFormat; output: string; quantize?: boolean }) => {
      try {
        await exportCommand(run, o);
      } catch (e) {
        fail(e);
      }
    });
}
