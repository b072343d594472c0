// Where a training step's time goes, per backend kernel: wraps every method of the native
// backend with a timer, runs training steps of one method on one model (batch 8, 224², rank 8,
// alpha 16, as bench:methods) and prints the kernels by total time, matrix products by shape.
//   node dist/bench/profile-step.js <vit_s16|resnet18> <method> [steps]
import { performance } from 'node:perf_hooks';
import { Conv2d } from '../src/nn/layers.js';
import { createModel } from '../src/models/registry.js';
import { applyMethod } from '../src/adapters/apply.js';
import { getAdapterMethod } from '../src/adapters/registry.js';
import { SharedAdapterOptionsSchema, type TrainingHooks } from '../src/adapters/method.js';
import type { PeftModel } from '../src/adapters/peft-model.js';
import { Generator, randn, randint, setBackend } from '../src/index.js';
import { getBackend } from '../src/backends/registry.js';
import { timeTrainingSteps } from './train-step.js';
import { timeKernels } from './kernel-timer.js';

const [modelKey = 'vit_s16', methodName = 'lora', stepsArg = '3'] = process.argv.slice(2);
const MODELS: Record<string, { name: string; targets: 'all-linear' | 'conv' }> = {
  vit_s16: { name: 'vit_small_patch16_224', targets: 'all-linear' },
  resnet18: { name: 'resnet18', targets: 'conv' },
};
const m = MODELS[modelKey];
if (!m) throw new Error(`unknown model '${modelKey}'; use vit_s16 or resnet18`);
const steps = Number(stepsArg);
if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be a positive integer; got '${stepsArg}'`);

setBackend('native');
const backend = getBackend('native') as unknown as Record<string, unknown>;
function label(key: string, args: unknown[]): string {
  if (key === 'matmul') {
    const p = args[4] as { batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean };
    return `matmul ${p.batch > 1 ? `${p.batch}× ` : ''}${p.m}×${p.n}×${p.k}${p.transA ? ' Aᵀ' : ''}${p.transB ? ' Bᵀ' : ''}`;
  }
  return key === 'unary' || key === 'binary' || key === 'reduce' || key === 'unaryGrad' ? `${key} ${String(args[0])}` : key;
}
const timer = timeKernels(backend, label);
const totals = timer.rows;

const backbone = createModel(m.name, { numClasses: 1000 });
const method = getAdapterMethod(methodName);
const targets = method.defaultTargets ?? (m.targets === 'conv' ? backbone.namedModules().filter(([p, x]) => p && x instanceof Conv2d).map(([p]) => p) : m.targets);
const shared = SharedAdapterOptionsSchema.parse({ r: 8, alpha: 16, targets });
const model = applyMethod(backbone, methodName, {
  numClasses: 10, generator: new Generator(2),
  adapterConfig: method.configFromRun(shared, method.optionsSchema.parse({})),
}) as PeftModel;
model.train();
const gen = new Generator(3);
const x = randn([8, 3, 224, 224], { generator: gen });
const y = randint(0, 10, [8], { generator: gen });

// The first step is untimed (allocations, primitive caches): the counters restart at the second.
const hooks = model.trainingHooks();
let seen = 0;
let t1 = 0;
let last = 0;
const stepMs: number[] = [];
const counted: TrainingHooks = {
  ...hooks,
  beforeStep: (ctx) => {
    const now = performance.now();
    if (seen > 0) stepMs.push(now - last);
    last = now;
    if (seen++ === 1) {
      totals.clear();
      t1 = performance.now();
    }
    hooks.beforeStep?.(ctx);
  },
};
await timeTrainingSteps(model, counted, x, y, { warmup: 1, minRuns: steps, maxRuns: steps, budgetMs: 1e9, threads: 2 });
const wall = (performance.now() - t1) / steps;
const rows = [...totals].sort((a, b) => b[1].ms - a[1].ms);
const kernels = rows.reduce((a, [, e]) => a + e.ms, 0) / steps;
console.log(`${modelKey} ${methodName}: ${wall.toFixed(0)} ms per step, ${kernels.toFixed(0)} ms of it in backend kernels (steps: ${stepMs.map((t) => t.toFixed(0)).join(' ')} ms)\n`);
console.log('| kernel | ms/step | calls/step |\n| --- | ---: | ---: |');
for (const [name, e] of rows.slice(0, 30)) console.log(`| ${name} | ${(e.ms / steps).toFixed(1)} | ${(e.calls / steps).toFixed(0)} |`);
