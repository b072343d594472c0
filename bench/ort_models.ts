// onnxruntime-node's side of the model-level benchmark: one exported model per process (the
// ONNX files torch_models.py writes with a dynamic batch axis), eval-mode inference.
//
// Run by bench/models.ts: `node dist/bench/ort_models.js` with {"cache", "model", "batches",
// "policy"} JSON on stdin; prints {"ortVersion", "results": [{batch, ms, runs}], "maxAbsDiff",
// "maxRssMb"}, maxAbsDiff being the check batch's logits against PyTorch's.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import '../src/backends/all.js';
import { loadSafetensors } from '../src/io/safetensors.js';
import { modelFiles } from './model_cases.js';
import { measure, type TimingPolicy } from './timing.js';

// The part of onnxruntime-node's API used here (as in bench/ort.ts).
interface OrtTensor {
  data: Float32Array;
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface OrtModule {
  InferenceSession: { create(path: string, opts: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => unknown;
  env: { versions?: { common?: string } };
}

function randomData(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * 2;
  }
  return out;
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(0, 'utf8')) as { cache: string; model: string; batches: number[]; policy: TimingPolicy };
  const moduleName = 'onnxruntime-node';
  const ort = (await import(moduleName)) as OrtModule;
  const files = modelFiles(spec.cache, spec.model);
  const session = await ort.InferenceSession.create(files.onnx, {
    intraOpNumThreads: spec.policy.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const check = loadSafetensors(files.check);
  const x = check.get('x')!;
  const out = await session.run({ x: new ort.Tensor('float32', x.toArray() as Float32Array, x.shape) });
  const ref = check.get('logits')!.toArray();
  let maxAbsDiff = 0;
  out['logits']!.data.forEach((v, i) => (maxAbsDiff = Math.max(maxAbsDiff, Math.abs(v - ref[i]!))));
  const results = [];
  for (const b of spec.batches) {
    const shape = [b, 3, 224, 224];
    const feeds = { x: new ort.Tensor('float32', randomData(b * 3 * 224 * 224, b), shape) };
    const sample = await measure(async () => {
      const t0 = performance.now();
      await session.run(feeds);
      return performance.now() - t0;
    }, spec.policy);
    results.push({ batch: b, ...sample });
  }
  await session.release();
  process.stdout.write(JSON.stringify({ ortVersion: ort.env.versions?.common ?? 'unknown', results, maxAbsDiff, maxRssMb: process.resourceUsage().maxRSS / 1024 }) + '\n');
}

await main();
