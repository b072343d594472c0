// Where an inference forward pass's time goes, per backend kernel, as graft serve runs it: a LoRA
// run's model (LoRA r 8 on the MobileNetV2 project convolutions, or on ViT qkv), its adapter
// merged into copies and each conv + BatchNorm pair folded once, under noGrad. Times every method
// of the native backend (kernel-timer.ts) and prints the wall time per forward, the time inside
// kernels, and the kernels by total time (convolutions by shape and memory format).
//   node dist/bench/profile-inference.js [model] [batch] [targets]   (default nsfwjs_mobilenet_v2 1)
import { performance } from 'node:perf_hooks';
import { timeKernels } from './kernel-timer.js';
import * as g from '../src/index.js';
import '../src/models/all.js';
import { getBackend } from '../src/backends/registry.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { FoldCache, withFoldedWeights } from '../src/nn/layers.js';
import { buildRunModel } from '../src/train/run.js';
import { runConfigSchema } from '../src/train/run-config.js';
import type { ConvParams } from '../src/backends/backend.js';

const [model = 'nsfwjs_mobilenet_v2', batchArg = '1'] = process.argv.slice(2);
const n = Number(batchArg);
if (!Number.isInteger(n) || n < 1) throw new Error(`batch must be a positive integer; got '${batchArg}'`);

g.setBackend('native');
const backend = getBackend('native') as unknown as Record<string, unknown>;
function label(key: string, args: unknown[]): string {
  if (key === 'unary' || key === 'binary') return `${key} ${String(args[0])}`;
  if (key === 'conv2d' || key === 'conv2dClip' || key === 'conv2dPacked') {
    const p = args[key === 'conv2dPacked' ? 6 : 5] as ConvParams;
    const layout = `${p.srcNhwc ? 'nhwc' : 'nchw'}→${p.dstNhwc ? 'nhwc' : 'nchw'}`;
    return `${key} ${p.cIn}×${p.h}×${p.w}→${p.cOut} k${p.kh} s${p.strideH} g${p.groups} ${layout}`;
  }
  return key;
}
const timer = timeKernels(backend, label);

// The adapted layers of bench:serve's runs for its models; any other model takes a regex as the third argument.
const TARGETS: Record<string, string | string[]> = {
  nsfwjs_mobilenet_v2: '.*project',
  mobilenet_v2: 'features\\.([2-9]|1\\d)\\.conv\\.2',
  vit_small_patch16_224: ['qkv'],
};
const targets = process.argv[4] ?? TARGETS[model];
if (!targets) throw new Error(`no default LoRA targets for ${model}; pass a regex over its module paths as the third argument (graft inspect ${model} lists them)`);
const config = runConfigSchema().parse({ model, data: { source: 'unused', perClass: 1 }, method: 'lora', adapter: { r: 8, alpha: 16, targets }, train: { seed: 7 } });
const { model: built } = await buildRunModel(config, ['a', 'b', 'c', 'd', 'e']);
if (!(built instanceof PeftModel)) throw new Error(`${model}: the LoRA run built no PeftModel`);
built.eval();
const size = config.data.imageSize ?? 224;
const data = new Float32Array(n * 3 * size * size).fill(0.1);
const copies = built.mergedCopies();
const folds = new FoldCache();
const run = () => withFoldedWeights(() => built.withMergedCopies(copies, () => g.noGrad(() => g.tidy(() => built.forward(g.tensor(data, [n, 3, size, size])).toArray()))), folds);
// Warm for 2 s: the first second of a process also compiles its hot functions.
for (let t = performance.now(), i = 0; i < 5 || performance.now() - t < 2000; i++) run();
const reps = 10;
timer.clear();
const t0 = performance.now();
for (let i = 0; i < reps; i++) run();
const wall = (performance.now() - t0) / reps;
const rows = [...timer.rows].sort((a, b) => b[1].ms - a[1].ms);
const inKernels = rows.reduce((s, [, e]) => s + e.ms, 0) / reps;
console.log(`${model} batch ${n}: ${wall.toFixed(2)} ms per forward, ${inKernels.toFixed(2)} ms in kernels`);
for (const [k, e] of rows.slice(0, 40)) console.log(`${(e.ms / reps).toFixed(2).padStart(8)} ms ${String(e.calls / reps).padStart(5)}× ${k}`);
