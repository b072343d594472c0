// GEMMs with a frozen weight at ViT-B/16 and ViT-L/16 shapes (batch 8 at 224²: 1576 token rows),
// the products a frozen base layer computes in training: forward y = x Wᵀ, and the gradient to
// the input gx = gy W after it. Five ways, in one run:
//   fp32        `linear` on oneDNN's float32 matmul;
//   bf16        `linear` under withComputePrecision('bf16'): W packed once as bf16, x rounded;
//   NF4         `linear4bit`, an NF4 weight (block 64, double-quantised) dequantised a chunk at a
//               time to float32 inside the kernel;
//   NF4 → bf16  the same, dequantised straight to bf16;
//   raw bf16    raw oneDNN from C++ (bench/onednn/raw_bench.cc): W reordered once to the bf16
//               matmul's layout, x reordered to bf16 on every call.
// Targets (issue 12): bf16 ≥ 1.6× fp32, NF4 ≥ 0.9× fp32, NF4 → bf16 ≥ 0.8× bf16. Prints a table
// and writes bench/results/quant4-<date>.json. Speeds are reported, never asserted.
//
//   npm run build && node dist/bench/quant4.js [--quick]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import * as g from '../src/index.js';
import '../src/backends/all.js';
import { Linear } from '../src/nn/layers.js';
import { Linear4bit } from '../src/nn/quant4.js';
import { resultsPath, runRaw } from './references.js';
import type { BenchCase } from './cases.js';

const quick = process.argv.includes('--quick');
const budgetMs = quick ? 300 : 1500;
const M = 8 * 197;
const SHAPES: { model: string; layer: string; k: number; n: number }[] = [
  { model: 'ViT-B/16', layer: 'qkv', k: 768, n: 2304 },
  { model: 'ViT-B/16', layer: 'proj', k: 768, n: 768 },
  { model: 'ViT-B/16', layer: 'fc1', k: 768, n: 3072 },
  { model: 'ViT-B/16', layer: 'fc2', k: 3072, n: 768 },
  { model: 'ViT-L/16', layer: 'qkv', k: 1024, n: 3072 },
  { model: 'ViT-L/16', layer: 'fc1', k: 1024, n: 4096 },
  { model: 'ViT-L/16', layer: 'fc2', k: 4096, n: 1024 },
];

/** Median milliseconds of fn over at least 5 runs and `budgetMs` of timed work, after 2 warm-up calls. */
function time(fn: () => void): number {
  fn();
  fn();
  const runs: number[] = [];
  let total = 0;
  while (runs.length < 5 || (total < budgetMs && runs.length < 200)) {
    const t0 = performance.now();
    fn();
    const dt = performance.now() - t0;
    runs.push(dt);
    total += dt;
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)]!;
}

type Way = 'fp32' | 'bf16' | 'nf4' | 'nf4bf16';
interface Row {
  model: string; layer: string; m: number; k: number; n: number; pass: 'fwd' | 'bwd-data';
  ms: Record<Way, number>; gflops: Record<Way | 'raw', number>; rawMs: number | null;
  bf16VsFp32: number; nf4VsFp32: number; nf4bf16VsBf16: number; bf16VsRaw: number | null;
}
const rows: Row[] = [];
const load0 = loadavg();
if (g.bf16Unavailable()) console.log(`bf16: ${g.bf16Unavailable()}`);

// Raw oneDNN first, alone on the machine. Its bwd-data row is its forward plus its gradient to x,
// as graft's bwd-data rows time both.
const cases: BenchCase[] = SHAPES.map((s, i) => ({
  id: `q${i}`, op: 'linear_bf16' as BenchCase['op'], label: `${s.k}→${s.n}`, params: { m: M, k: s.k, n: s.n }, passes: [], target: 'none',
}));
const raw = runRaw(cases, [], { warmup: 3, minRuns: 5, maxRuns: 200, budgetMs, threads: cpus().length });
if (!raw.available) console.log(`raw oneDNN: ${raw.note}`);
const rawMs = (i: number, pass: string) => raw.results.find((r) => r.id === `q${i}` && r.pass === pass)?.ms ?? null;

SHAPES.forEach((s, i) => {
  const gen = new g.Generator(1);
  const fl = new Linear(s.k, s.n, { bias: false, generator: gen });
  const q = Linear4bit.fromLinear(fl, { quantType: 'nf4', doubleQuant: true });
  const x = g.randn([M, s.k], { generator: gen });
  const gy = g.randn([M, s.n], { generator: gen });
  const fwd = (layer: Linear) => () => g.tidy(() => { g.noGrad(() => layer.forward(x)); });
  const bwd = (layer: Linear) => () => g.tidy(() => {
    const xi = x.detach();
    xi.requiresGrad = true;
    layer.forward(xi).backward(gy);
    xi.grad?.dispose();
  });
  fl.weight.requiresGrad = false;
  for (const pass of ['fwd', 'bwd-data'] as const) {
    const make = pass === 'fwd' ? fwd : bwd;
    const ms: Record<Way, number> = {
      fp32: time(make(fl)),
      bf16: g.withComputePrecision('bf16', () => time(make(fl))),
      nf4: time(make(q)),
      nf4bf16: g.withComputePrecision('bf16', () => time(make(q))),
    };
    const rf = rawMs(i, 'fwd'), rb = rawMs(i, 'bwd-data');
    const r = pass === 'fwd' ? rf : rf !== null && rb !== null ? rf + rb : null;
    const flops = 2 * M * s.k * s.n * (pass === 'fwd' ? 1 : 2); // bwd-data: the forward it follows + gx
    const rate = (t: number | null) => (t ? flops / t / 1e6 : NaN);
    rows.push({
      ...s, m: M, pass, ms, rawMs: r,
      gflops: { fp32: rate(ms.fp32), bf16: rate(ms.bf16), nf4: rate(ms.nf4), nf4bf16: rate(ms.nf4bf16), raw: rate(r) },
      bf16VsFp32: ms.fp32 / ms.bf16, nf4VsFp32: ms.fp32 / ms.nf4, nf4bf16VsBf16: ms.bf16 / ms.nf4bf16, bf16VsRaw: r ? r / ms.bf16 : null,
    });
  }
  fl.dispose();
  q.dispose();
});
const load1 = loadavg();
console.log(`graft ${g.currentBackend().name} backend, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load ${load0[0]!.toFixed(2)} → ${load1[0]!.toFixed(2)}; M = ${M} rows; ${raw.available ? raw.note : 'no raw oneDNN'}`);
console.log('GFLOP/s by way; ratios are speeds (≥ 1: the first is faster). Targets: bf16 ≥ 1.6× fp32, NF4 ≥ 0.9× fp32, NF4 → bf16 ≥ 0.8× bf16.');
console.log('| model | layer | K → N | pass | fp32 | bf16 | NF4 | NF4 → bf16 | raw bf16 | bf16 / fp32 | NF4 / fp32 | NF4→bf16 / bf16 | bf16 / raw bf16 |');
console.log('| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '—');
const x2 = (v: number | null) => (v === null || !Number.isFinite(v) ? '—' : `${v.toFixed(2)}×`);
for (const r of rows) {
  console.log(`| ${r.model} | ${r.layer} | ${r.k} → ${r.n} | ${r.pass} | ${f1(r.gflops.fp32)} | ${f1(r.gflops.bf16)} | ${f1(r.gflops.nf4)} | ${f1(r.gflops.nf4bf16)} | ${f1(r.gflops.raw)} | ${x2(r.bf16VsFp32)} | ${x2(r.nf4VsFp32)} | ${x2(r.nf4bf16VsBf16)} | ${x2(r.bf16VsRaw)} |`);
}
const out = resultsPath('quant4', new Date());
writeFileSync(out, JSON.stringify({ backend: g.currentBackend().name, cpus: cpus().length, load: [load0, load1], m: M, raw: raw.available ? raw.note : null, rows }, null, 2));
console.log(`written ${out}`);
