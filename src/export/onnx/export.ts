// A run's model as an ONNX file: adapters merged into their base layers (LoRA, DoRA and every
// method whose layers merge), the linear probe's backbone and head as one graph, the baselines
// as they are. Input `pixel_values` (batch, 3, H, W) already preprocessed, output `logits`
// (batch, classes), the batch axis symbolic; the preprocessing and the class names go into
// metadata_props so a consumer can prepare images as graft does.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LinearProbe } from '../../adapters/apply.js';
import { PeftModel } from '../../adapters/peft-model.js';
import type { PreprocessConfig } from '../../data/preprocess.js';
import type { Module } from '../../nn/module.js';
import { noGrad } from '../../tensor/autograd.js';
import { OnnxGraph, OPSET } from './graph.js';
import { exportModule, OnnxExportError } from './layers.js';
import './models.js';
import './keras.js';

export { OPSET } from './graph.js';
export { OnnxExportError } from './layers.js';

export const INPUT_NAME = 'pixel_values';
export const OUTPUT_NAME = 'logits';

export interface OnnxExportOptions {
  preprocess: PreprocessConfig;
  classes: readonly string[];
  /** Recorded in the metadata: the backbone name, the method and where the weights came from. */
  modelName: string;
  method: string;
  source: string;
  /** int8 weights (DequantizeLinear before each MatMul and Conv) instead of float32. */
  quantize?: boolean;
}

/**
 * The plain module a run's model computes with: a PeftModel's active adapter merged and the
 * adapter layers replaced by their base layers (refused when a layer cannot merge), a linear
 * probe's inner model. Consumes `model`.
 */
export function inferenceModel(model: Module, what: string): Module {
  if (model instanceof LinearProbe) return model.model;
  if (!(model instanceof PeftModel)) return model;
  const unmergeable = model.adapterLayers().filter(([, l]) => l.activeAdapter !== null && !l.canMerge()).map(([p, l]) => `${p} (${l.constructor.name})`);
  if (unmergeable.length) {
    throw new OnnxExportError(`${what}: the adapter on ${unmergeable.slice(0, 3).join(', ')}${unmergeable.length > 3 ? ` and ${unmergeable.length - 3} more` : ''} cannot be merged into its base layer, and ONNX export writes merged models only; use graft serve or graft predict on the run folder`);
  }
  return model.mergeAndUnload();
}

function graftVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      const json = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string; version?: string };
      if (json.name === 'graft') return json.version ?? '0';
    }
  }
  return '0';
}

/** The serialised ONNX model of a plain (merged) module in eval mode. */
export function exportOnnx(model: Module, opts: OnnxExportOptions): Uint8Array {
  const [channels, height, width] = opts.preprocess.inputSize;
  const g = new OnnxGraph(height, width, [INPUT_NAME], opts.quantize ?? false);
  model.eval();
  const out = noGrad(() => exportModule(g, model, INPUT_NAME, ''));
  // The output is named last, so no exporter's node can have taken its name.
  if (g.op('Identity', [out], OUTPUT_NAME) !== OUTPUT_NAME) throw new Error(`ONNX export: a node is already named '${OUTPUT_NAME}'`);
  const metadata: Record<string, string> = {
    'graft.model': opts.modelName,
    'graft.method': opts.method,
    'graft.source': opts.source,
    'graft.opset': String(OPSET),
    'graft.weights': opts.quantize ? 'int8 (per-channel, symmetric)' : 'float32',
    'graft.classes': JSON.stringify(opts.classes),
    // Images become pixel_values as graft's evaluation transform makes them: resize, centre crop
    // to inputSize, pixels × rescaleFactor (1/255 by default), then (x − mean) / std per channel, NCHW.
    'graft.preprocess': JSON.stringify({ rescaleFactor: 1 / 255, ...opts.preprocess }),
    'graft.input_layout': 'NCHW float32',
  };
  return g.encode({ name: INPUT_NAME, dims: ['batch', channels, height, width] }, { name: OUTPUT_NAME, dims: ['batch', opts.classes.length] }, metadata, graftVersion());
}
