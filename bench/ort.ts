// onnxruntime-node reference for graft's op benchmarks: forward (inference) only, one tiny
// single-op ONNX model per case, built in memory by bench/onnx_model.ts. Weights are graph
// inputs, not initializers, so the models stay a few hundred bytes.
//
// Run by bench/run.ts as a child process: `node dist/bench/ort.js` with
// {"policy", "cases"} JSON on stdin; prints {"ort_version", "threads", "results"} JSON.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { BenchCase } from './cases.js';
import { encodeModel, type OnnxGraph, type OnnxValue } from './onnx_model.js';
import { LATENCY_CALLS, measure, type Measurement, type TimingPolicy } from './timing.js';

// The part of onnxruntime-node's API used here, declared locally so that graft builds without
// the optional package installed.
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, unknown>>;
  release(): Promise<void>;
}

interface OrtModule {
  InferenceSession: { create(model: Uint8Array, opts: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => unknown;
  env: { versions?: { common?: string } };
}

/** Opset 20 is the first with Gelu; LayerNormalization needs 17. */
const OPSET = 20;

type ModelSpec = { graph: OnnxGraph } | { unavailable: string };

function single(op: string, inputs: OnnxValue[], outShape: readonly number[], attrs: OnnxGraph['nodes'][number]['attrs'] = []): ModelSpec {
  return {
    graph: {
      opset: OPSET,
      inputs,
      outputs: [{ name: 'y', shape: outShape }],
      nodes: [{ op, inputs: inputs.map((v) => v.name), outputs: ['y'], attrs }],
    },
  };
}

function modelFor(c: BenchCase): ModelSpec {
  const p = c.params;
  switch (c.op) {
    case 'linear':
      return single('Gemm', [{ name: 'x', shape: [p.m, p.k] }, { name: 'w', shape: [p.n, p.k] }, { name: 'b', shape: [p.n] }], [p.m, p.n], [{ name: 'transB', int: 1 }]);
    case 'matmul':
    case 'overhead_matmul':
      return single('MatMul', [{ name: 'x', shape: [p.m, p.k] }, { name: 'w', shape: [p.k, p.n] }], [p.m, p.n]);
    case 'attention': {
      // The unfused definition; onnxruntime fuses what it recognises.
      const shape = [p.batch, p.heads, p.n, p.d];
      return {
        graph: {
          opset: OPSET,
          inputs: [{ name: 'q', shape }, { name: 'k', shape }, { name: 'v', shape }],
          outputs: [{ name: 'y', shape }],
          initializers: [{ name: 'scale', shape: [], data: Float32Array.of(1 / Math.sqrt(p.d)) }],
          nodes: [
            { op: 'Transpose', inputs: ['k'], outputs: ['kT'], attrs: [{ name: 'perm', ints: [0, 1, 3, 2] }] },
            { op: 'MatMul', inputs: ['q', 'kT'], outputs: ['s'] },
            { op: 'Mul', inputs: ['s', 'scale'], outputs: ['sScaled'] },
            { op: 'Softmax', inputs: ['sScaled'], outputs: ['prob'], attrs: [{ name: 'axis', int: -1 }] },
            { op: 'MatMul', inputs: ['prob', 'v'], outputs: ['y'] },
          ],
        },
      };
    }
    case 'conv': {
      const outH = (p.h + 2 * p.pad - p.kh) / p.stride + 1;
      const outW = (p.w + 2 * p.pad - p.kw) / p.stride + 1;
      return single('Conv', [{ name: 'x', shape: [p.n, p.c, p.h, p.w] }, { name: 'w', shape: [p.cout, p.c / p.groups, p.kh, p.kw] }], [p.n, p.cout, outH, outW], [
        { name: 'group', int: p.groups },
        { name: 'kernel_shape', ints: [p.kh, p.kw] },
        { name: 'pads', ints: [p.pad, p.pad, p.pad, p.pad] },
        { name: 'strides', ints: [p.stride, p.stride] },
      ]);
    }
    case 'add':
      return single('Add', [{ name: 'a', shape: [p.rows, p.cols] }, { name: 'b', shape: [p.rows, p.cols] }], [p.rows, p.cols]);
    case 'bias_add':
      return single('Add', [{ name: 'x', shape: [p.rows, p.cols] }, { name: 'b', shape: [p.cols] }], [p.rows, p.cols]);
    case 'overhead_add':
      return single('Add', [{ name: 'a', shape: [p.n] }, { name: 'b', shape: [p.n] }], [p.n]);
    case 'gelu':
      return single('Gelu', [{ name: 'x', shape: [p.rows, p.cols] }], [p.rows, p.cols]);
    case 'layernorm':
      return single('LayerNormalization', [{ name: 'x', shape: [p.rows, p.cols] }, { name: 'scale', shape: [p.cols] }, { name: 'bias', shape: [p.cols] }],
        [p.rows, p.cols], [{ name: 'axis', int: -1 }, { name: 'epsilon', float: 1e-5 }]);
    case 'softmax':
      return single('Softmax', [{ name: 'x', shape: [p.rows, p.cols] }], [p.rows, p.cols], [{ name: 'axis', int: -1 }]);
    case 'batchnorm':
      return { unavailable: 'onnxruntime has only inference-mode BatchNormalization (running statistics), not the training forward' };
  }
}

function randomData(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * 0.5;
  }
  return out;
}

async function measureCase(ort: OrtModule, c: BenchCase, policy: TimingPolicy): Promise<Measurement[]> {
  const spec = modelFor(c);
  if ('unavailable' in spec) return [{ id: c.id, error: spec.unavailable }];
  const session = await ort.InferenceSession.create(encodeModel(spec.graph), {
    intraOpNumThreads: policy.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  try {
    const feeds: Record<string, unknown> = {};
    spec.graph.inputs.forEach((v, i) => {
      feeds[v.name] = new ort.Tensor('float32', randomData(v.shape.reduce((a, b) => a * b, 1), i + 1), v.shape);
    });
    const latency = c.passes[0]!.name === 'call';
    const calls = latency ? LATENCY_CALLS : 1;
    const s = await measure(async () => {
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) await session.run(feeds);
      return performance.now() - t0;
    }, policy, calls);
    return [{ id: c.id, pass: latency ? 'call' : 'fwd', variant: 'ort', ...s }];
  } finally {
    await session.release();
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(0, 'utf8')) as { policy: TimingPolicy; cases: BenchCase[] };
  const moduleName = 'onnxruntime-node';
  const ort = (await import(moduleName)) as OrtModule;
  const results: Measurement[] = [];
  for (const c of spec.cases) {
    try {
      results.push(...(await measureCase(ort, c, spec.policy)));
    } catch (e) {
      results.push({ id: c.id, error: (e as Error).message.split('\n')[0] });
    }
    process.stderr.write(`ort: ${c.id} done\n`);
  }
  process.stdout.write(JSON.stringify({ ort_version: ort.env.versions?.common ?? 'unknown', threads: spec.policy.threads, results }) + '\n');
}

await main();
