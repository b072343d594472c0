// GEMMs with a frozen weight at ViT-B/16 and ViT-L/16 shapes (batch 8 at 224²: 1576 token rows):
// fp32 `linear` (oneDNN) against `linear4bit` with an NF4 weight (block 64, double-quantised),
// which dequantises the weight a chunk at a time inside the kernel. Forward y = x Wᵀ and the
// gradient to the input gx = gy W (what a frozen base layer computes in training). Prints a
// table and writes bench/results/quant4-<date>.json. Speeds are reported, never asserted.
//
//   npm run build && node dist/bench/quant4.js [--quick]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import * as g from '../src/index.js';
import '../src/backends/all.js';
import { Linear } from '../src/nn/layers.js';
import { Linear4bit } from '../src/nn/quant4.js';
import { resultsPath } from './references.js';

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

interface Row { model: string; layer: string; m: number; k: number; n: number; pass: 'fwd' | 'bwd-data'; fp32Ms: number; nf4Ms: number; fp32Gflops: number; nf4Gflops: number; ratio: number }
const rows: Row[] = [];
const load0 = loadavg();
for (const s of SHAPES) {
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
    const fp32Ms = time(make(fl));
    const nf4Ms = time(make(q));
    const flops = 2 * M * s.k * s.n * (pass === 'fwd' ? 1 : 2); // bwd-data: the forward it follows + gx
    rows.push({ ...s, m: M, pass, fp32Ms, nf4Ms, fp32Gflops: flops / fp32Ms / 1e6, nf4Gflops: flops / nf4Ms / 1e6, ratio: fp32Ms / nf4Ms });
  }
  fl.dispose();
  q.dispose();
}
const load1 = loadavg();
console.log(`graft ${g.currentBackend().name} backend, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load ${load0[0]!.toFixed(2)} → ${load1[0]!.toFixed(2)}; M = ${M} rows`);
console.log('| model | layer | K → N | pass | fp32 ms | NF4 ms | fp32 GFLOP/s | NF4 GFLOP/s | NF4 speed / fp32 |');
console.log('| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.model} | ${r.layer} | ${r.k} → ${r.n} | ${r.pass} | ${r.fp32Ms.toFixed(2)} | ${r.nf4Ms.toFixed(2)} | ${r.fp32Gflops.toFixed(1)} | ${r.nf4Gflops.toFixed(1)} | ${r.ratio.toFixed(2)}× |`);
const out = resultsPath('quant4', new Date());
writeFileSync(out, JSON.stringify({ backend: g.currentBackend().name, cpus: cpus().length, load: [load0, load1], m: M, rows }, null, 2));
console.log(`written ${out}`);
