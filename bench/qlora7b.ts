// One QLoRA training step of dinov3_vit7b16 (6.7 billion parameters) on the CPU: random weights,
// each layer quantised to NF4 (double-quantised) as it is built, LoRA r = 8 on q_proj and v_proj,
// a float head on the CLS token, batch 1 at 224², gradient checkpointing per block. Prints the
// build time, the step time, the stored base bytes and the peak resident memory, and writes
// bench/results/qlora7b-<date>.json. Nothing is asserted.
//
// --precision bf16 runs the step with the NF4 weights dequantised straight to bf16.
//
//   npm run build && node dist/bench/qlora7b.js [--precision bf16]
import { writeFileSync } from 'node:fs';
import * as g from '../src/index.js';
import '../src/backends/all.js';
import '../src/models/all.js';
import { createModel } from '../src/models/registry.js';
import { setGradientCheckpointing } from '../src/models/checkpointing.js';
import { Linear } from '../src/nn/layers.js';
import { isQuantized, quantStateBytes, withQuantizedLayers } from '../src/nn/quant4.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import type { Module } from '../src/nn/module.js';
import { resultsPath } from './references.js';

const precisionAt = process.argv.indexOf('--precision');
const precision = precisionAt >= 0 && process.argv[precisionAt + 1] === 'bf16' ? 'bf16' : 'fp32';
const rssMiB = () => process.resourceUsage().maxRSS / 1024;
const t0 = performance.now();
g.manualSeed(0);
const backbone = withQuantizedLayers({ quantType: 'nf4', doubleQuant: true }, () => createModel('dinov3_vit7b16', { numClasses: 0 }));
const buildSeconds = (performance.now() - t0) / 1000;
let stored = 0;
let params = 0;
for (const [, m] of backbone.namedModules()) if (isQuantized(m)) {
  stored += quantStateBytes(m);
  params += m.quantized.state.shape.reduce((a, b) => a * b, 1);
}
console.log(`built in ${buildSeconds.toFixed(0)} s: ${(params / 1e9).toFixed(2)} B quantised parameters in ${(stored / 2 ** 30).toFixed(2)} GiB; peak RSS so far ${rssMiB().toFixed(0)} MiB`);
const lora = getAdapterMethod('lora');
const config = lora.configFromRun(SharedAdapterOptionsSchema.parse({ r: 8, alpha: 16, targets: ['q_proj', 'v_proj'] }), lora.optionsSchema.parse({}));
const peft = new PeftModel(backbone as Module, lora, config, 'default', { generator: new g.Generator(1) });
setGradientCheckpointing(peft, true);
const head = new Linear(4096, 10, { generator: new g.Generator(2) });
const trainable = [...peft.model.trainableParameters(), ...head.parameters()];
const opt = new g.AdamW(trainable, { lr: 1e-4 });
peft.train();
const x = g.randn([1, 3, 224, 224], { generator: new g.Generator(3) });
const y = g.tensor(Int32Array.from([3]), [1]);
const t1 = performance.now();
const loss = g.withComputePrecision(precision, () => g.tidy(() => {
  opt.zeroGrad();
  const feats = (backbone as unknown as { forwardFeatures(x: g.Tensor): g.Tensor }).forwardFeatures(x);
  const l = g.crossEntropy(head.forward(g.select(feats, 1, 0)), y);
  l.backward();
  opt.step();
  return l.item();
}));
const stepSeconds = (performance.now() - t1) / 1000;
const trainableParams = trainable.reduce((a, p) => a + p.size, 0);
console.log(`one QLoRA step (batch 1, 224², gradient checkpointing, ${precision}): ${stepSeconds.toFixed(0)} s, loss ${loss.toFixed(4)}, ${trainableParams.toLocaleString('en-US')} trainable parameters; peak RSS ${rssMiB().toFixed(0)} MiB`);
const out = resultsPath('qlora7b', new Date());
writeFileSync(out, JSON.stringify({ precision, buildSeconds, stepSeconds, loss, quantisedParams: params, storedBytes: stored, trainableParams, peakRssMiB: rssMiB() }, null, 2));
console.log(`written ${out}`);
