// LoRA training steps of ViT-B/16 and ViT-L/16 (timm, random weights; batch 8 at 224², LoRA r = 8
// on every Linear but the head, AdamW) in three ways: fp32; bf16 (--precision bf16: frozen
// products on bf16 operands); NF4 + bf16 (a double-quantised NF4 base dequantised straight to
// bf16). Each way runs in its own process, so its peak resident memory is its own. Prints
// images/s, the step's peak tensor memory, the process's peak resident memory and the base
// weights' bytes, and writes bench/results/vit-step-<date>.json.
// Targets (issue 12): NF4 + bf16 ≥ 1.3× fp32 LoRA's images/s, base weights ≤ 15% of fp32's bytes.
//
// With --only a CNN (resnet18, convnext_tiny, …) LoRA goes on every convolution instead, where
// bf16 means frozen convolutions on bf16 operands.
//
//   npm run build && node dist/bench/vit-step.js [--quick] [--only vit_base_patch16_224] [--gradient-checkpointing]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import * as g from '../src/index.js';
import '../src/backends/all.js';
import '../src/models/all.js';
import { createModel } from '../src/models/registry.js';
import { isQuantized, quantStateBytes, withQuantizedLayers } from '../src/nn/quant4.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import type { Module } from '../src/nn/module.js';
import { resultsPath } from './references.js';
import { Conv2d } from '../src/nn/layers.js';
import { setGradientCheckpointing } from '../src/models/checkpointing.js';

type Way = 'fp32' | 'bf16' | 'nf4+bf16';
const WAYS: Way[] = ['fp32', 'bf16', 'nf4+bf16'];
const BATCH = 8;

interface Result { model: string; way: Way; checkpointing: boolean; steps: number; stepSeconds: number; imagesPerSecond: number; peakTensorMiB: number; peakRssMiB: number; baseBytes: number; loss: number }

/** One way in this process: builds the model, runs warm-up + timed steps, prints a JSON line. */
function runOne(model: string, way: Way, steps: number, checkpointing: boolean): Result {
  g.manualSeed(0);
  const build = () => createModel(model, { numClasses: 10 });
  const backbone = way === 'nf4+bf16' ? withQuantizedLayers({ quantType: 'nf4', doubleQuant: true }, build) : build();
  let baseBytes = 0;
  for (const [, m] of backbone.namedModules()) if (isQuantized(m)) baseBytes += quantStateBytes(m);
  const lora = getAdapterMethod('lora');
  // A CNN (no Linear but its head): LoRA on every convolution, as conv LoRA does.
  const convs = backbone.namedModules().filter(([p, m]) => p && m instanceof Conv2d).map(([p]) => p);
  const cnn = !model.startsWith('vit');
  const config = lora.configFromRun(SharedAdapterOptionsSchema.parse({ r: 8, alpha: 16, targets: cnn ? convs : 'all-linear' }), lora.optionsSchema.parse({}));
  const peft = new PeftModel(backbone as Module, lora, config, 'default', { generator: new g.Generator(1) });
  if (checkpointing) setGradientCheckpointing(peft, true);
  for (const [, p] of peft.model.namedParameters()) if (!p.requiresGrad) baseBytes += p.size * 4;
  const opt = new g.AdamW(peft.model.trainableParameters(), { lr: 1e-4 });
  peft.train();
  const x = g.randn([BATCH, 3, 224, 224], { generator: new g.Generator(3) });
  const y = g.tensor(Int32Array.from({ length: BATCH }, (_, i) => i % 10), [BATCH]);
  const times: number[] = [];
  let loss = 0;
  g.withComputePrecision(way === 'fp32' ? 'fp32' : 'bf16', () => {
    for (let i = 0; i <= steps; i++) {
      if (i === 1) g.resetPeakMemory();
      const t0 = performance.now();
      loss = g.tidy(() => {
        opt.zeroGrad();
        const l = g.crossEntropy(peft.forward(x), y);
        l.backward();
        opt.step();
        return l.item();
      });
      if (i > 0) times.push((performance.now() - t0) / 1000);
    }
  });
  times.sort((a, b) => a - b);
  const stepSeconds = times[Math.floor(times.length / 2)]!;
  return {
    model, way, checkpointing, steps, stepSeconds, imagesPerSecond: BATCH / stepSeconds, loss,
    peakTensorMiB: g.memory().peakBytes / 2 ** 20, peakRssMiB: process.resourceUsage().maxRSS / 1024, baseBytes,
  };
}

const argv = process.argv.slice(2);
const one = argv.indexOf('--one');
if (one >= 0) {
  const [model, way, steps, ckpt] = argv.slice(one + 1, one + 5) as [string, Way, string, string];
  console.log(JSON.stringify(runOne(model, way, Number(steps), ckpt === '1')));
} else {
  const quick = argv.includes('--quick');
  const onlyAt = argv.indexOf('--only');
  const models = onlyAt >= 0 ? [argv[onlyAt + 1]!] : ['vit_base_patch16_224', 'vit_large_patch16_224'];
  const steps = quick ? 2 : 4;
  const checkpointing = argv.includes('--gradient-checkpointing');
  if (g.bf16Unavailable()) console.log(`bf16: ${g.bf16Unavailable()}`);
  const load0 = loadavg();
  const results: Result[] = [];
  for (const model of models) {
    for (const way of WAYS) {
      const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', model, way, String(steps), checkpointing ? '1' : '0'], { encoding: 'utf8', env: process.env });
      const line = r.stdout.trim().split('\n').pop() ?? '';
      try {
        results.push(JSON.parse(line) as Result);
        process.stderr.write(`vit-step: ${model} ${way} done\n`);
      } catch {
        console.log(`${model} ${way}: failed (${r.stderr.trim().split('\n').slice(-3).join(' / ')})`);
      }
    }
  }
  console.log(`graft ${g.currentBackend().name} backend, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load ${load0[0]!.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}; LoRA r 8 on every Linear (a CNN: every convolution), batch ${BATCH} at 224²${checkpointing ? ', gradient checkpointing' : ''}, median of ${steps} steps after one`);
  console.log('| model | way | s / step | img/s | × fp32 | peak tensor MiB | peak RSS MiB | base weights MiB | base / fp32 |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    const fp = results.find((q) => q.model === r.model && q.way === 'fp32');
    const speed = fp ? `${(r.imagesPerSecond / fp.imagesPerSecond).toFixed(2)}×` : '—';
    const bytes = fp ? `${((100 * r.baseBytes) / fp.baseBytes).toFixed(1)}%` : '—';
    console.log(`| ${r.model} | ${r.way} | ${r.stepSeconds.toFixed(2)} | ${r.imagesPerSecond.toFixed(2)} | ${speed} | ${r.peakTensorMiB.toFixed(0)} | ${r.peakRssMiB.toFixed(0)} | ${(r.baseBytes / 2 ** 20).toFixed(0)} | ${bytes} |`);
  }
  const out = resultsPath('vit-step', new Date());
  writeFileSync(out, JSON.stringify({ backend: g.currentBackend().name, cpus: cpus().length, batch: BATCH, steps, results }, null, 2));
  console.log(`written ${out}`);
}
