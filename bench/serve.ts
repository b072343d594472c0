// Load test of `graft serve` beside onnxruntime-node. Models: nsfwjs' pretrained MobileNetV2
// (its Keras graph), torchvision's
// MobileNetV2 and ViT-S/16 with random weights (no checkpoint is assumed local). For each, two
// LoRA runs on one base are written (adapter and head tensors seeded away from their
// initialisation, as a trained run's), `graft serve` holds both, and autocannon posts one image to
// 127.0.0.1, the two adapters in turn, at 1, 8 and 32 concurrent clients for a fixed time. Beside
// it, onnxruntime-node runs the same merged model (`graft export --format onnx` of the first run)
// in a plain loop: decode + preprocess + session.run of one image, with as many loops in flight as
// clients. The server's RSS is sampled through the run (/proc/PID/status).
//
//   npm run bench:serve [-- --seconds 6] [-- --only nsfwjs|mobilenet|vit] [-- --max-batch N]
// Prints a table and writes bench/results/serve-<date>.json.
// SERVE_NODE_FLAGS='--cpu-prof --cpu-prof-dir=DIR' passes node flags to the server process (a CPU profile of graft serve under load).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import sharp from 'sharp';
import * as g from '../src/index.js';
import '../src/models/all.js';
import { decodeImage } from '../src/data/image.js';
import { prepareImage } from '../src/data/transforms.js';
import type { PreprocessConfig } from '../src/data/preprocess.js';
import { buildRunModel, saveTrainedModel, writeRunManifest } from '../src/train/run.js';
import { runConfigSchema } from '../src/train/run-config.js';
import { gitCommit, resultsPath } from './references.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const CLIENTS = [1, 8, 32];
const TARGET = 0.8;

interface Case { id: string; label: string; weightsNote: string; config: Record<string, unknown>; targets: string | string[]; /** No ONNX exporter for it: served rows only. */ noOnnx?: boolean }
const CASES: Case[] = [
  { id: 'nsfwjs', label: 'MobileNetV2 (nsfwjs_mobilenet_v2)', weightsNote: 'pretrained', config: { model: 'nsfwjs_mobilenet_v2', data: { source: 'unused', perClass: 1 } }, targets: '.*project' },
  { id: 'mobilenet', label: 'MobileNetV2 (torchvision layout)', weightsNote: 'random weights', config: { model: 'mobilenet_v2', data: { source: 'unused', perClass: 1 } }, targets: 'features\\.([2-9]|1\\d)\\.conv\\.2' },
  { id: 'vit', label: 'ViT-S/16', weightsNote: 'random weights', config: { model: 'vit_small_patch16_224', data: { source: 'unused', perClass: 1 } }, targets: ['qkv'] },
];
const CLASSES = ['drawing', 'hentai', 'neutral', 'porn', 'sexy'];

const args = process.argv.slice(2);
const arg = (k: string) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : undefined; };
const SECONDS = Number(arg('--seconds') ?? 6);
const only = arg('--only');
const maxBatch = arg('--max-batch');

async function makeRun(c: Case, seed: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `graft-bench-serve-${c.id}-`));
  const cfg = runConfigSchema().parse({ ...c.config, method: 'lora', adapter: { r: 8, alpha: 16, targets: c.targets }, train: { seed: 7 } });
  const { model, config } = await buildRunModel(cfg, CLASSES);
  const gen = new g.Generator(seed);
  g.noGrad(() => { for (const p of model.trainableParameters()) g.assign(p, g.add(p, g.randn(p.shape, { std: 0.02, generator: gen }))); });
  writeRunManifest(dir, { config, classes: CLASSES });
  saveTrainedModel(dir, model);
  model.dispose();
  return dir;
}

async function image(): Promise<Buffer> {
  const w = 320, h = 240;
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7 + ((i / 3 / w) | 0) * 3) % 256;
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function startServer(a: string, b: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [...(process.env['SERVE_NODE_FLAGS'] ?? '').split(' ').filter(Boolean), CLI, 'serve', '--adapter', `a=${a}`, '--adapter', `b=${b}`, '--port', '0', '--max-queue', '256', ...(maxBatch ? ['--max-batch', maxBatch] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => { out += d; const m = /listening on (\S+)/.exec(out); if (m) resolve(m[1]!); });
    child.on('exit', (code) => reject(new Error(`graft serve exited ${code}`)));
  });
  return { child, url };
}

interface Row { model: string; system: string; clients: number; rps: number; p50: number; p99: number; errors: number; rssMb?: [number, number] }

async function served(url: string, pid: number, body: Buffer, clients: number): Promise<Row & { samples: number[] }> {
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(rssMb(pid)), 250);
  const headers = { 'content-type': 'image/jpeg' };
  const r = await autocannon({
    url, connections: clients, duration: SECONDS, pipelining: 1,
    requests: [{ method: 'POST', path: '/v1/predict?adapter=a', headers, body }, { method: 'POST', path: '/v1/predict?adapter=b', headers, body }],
  });
  clearInterval(timer);
  return { model: '', system: 'graft serve (2 adapters)', clients, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.non2xx + r.errors + r.timeouts, rssMb: [Math.min(...samples), Math.max(...samples)], samples };
}

interface OrtModule {
  InferenceSession: { create(model: string, opts: Record<string, unknown>): Promise<{ run(f: Record<string, unknown>): Promise<Record<string, unknown>>; inputNames: readonly string[]; release(): Promise<void> }> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => unknown;
}

async function ortLoop(onnx: string, pre: PreprocessConfig, body: Buffer, clients: number): Promise<Row> {
  const moduleName = 'onnxruntime-node';
  const ort = (await import(moduleName)) as OrtModule;
  const session = await ort.InferenceSession.create(onnx, { intraOpNumThreads: cpus().length, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const [c, h, w] = pre.inputSize;
  const lat: number[] = [];
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      const data = new Float32Array(c * h * w);
      await prepareImage(await decodeImage(body), pre, null, new g.Generator(0), data, 0);
      await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', data, [1, c, h, w]) });
      lat.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: clients }, loop));
  // The loops in flight at the end finish after it: divide by the time they took, not SECONDS.
  const elapsed = (performance.now() - t0) / 1000;
  await session.release();
  lat.sort((x, y) => x - y);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return { model: '', system: 'onnxruntime-node loop', clients, rps: lat.length / elapsed, p50: q(0.5), p99: q(0.99), errors: 0 };
}

const started = new Date();
const body = await image();
const rows: Row[] = [];
const rss: Record<string, number[]> = {};
for (const c of CASES.filter((x) => !only || x.id === only)) {
  const a = await makeRun(c, 1);
  const b = await makeRun(c, 2);
  const onnx = join(a, 'merged.onnx');
  if (!c.noOnnx) execFileSync(process.execPath, [CLI, 'export', a, '--format', 'onnx', '--output', onnx], { stdio: 'inherit' });
  const probe = await buildRunModel(runConfigSchema().parse({ ...c.config, method: 'linear-probe' }), CLASSES);
  const pre = probe.preprocess;
  probe.model.dispose();
  const { child, url } = await startServer(a, b);
  rss[c.id] = [];
  try {
    await autocannon({ url, connections: 2, duration: 1, requests: [{ method: 'POST', path: '/v1/predict?adapter=a', headers: { 'content-type': 'image/jpeg' }, body }] }); // warm-up
    for (const n of CLIENTS) {
      const r = await served(url, child.pid!, body, n);
      rss[c.id]!.push(...r.samples);
      const { samples: _s, ...row } = r;
      rows.push({ ...row, model: `${c.label}, ${c.weightsNote}` });
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
  }
  if (!c.noOnnx) for (const n of CLIENTS) rows.push({ ...(await ortLoop(onnx, pre, body, n)), model: `${c.label}, ${c.weightsNote}` });
}

const lines = ['| model | system | clients | req/s | p50 ms | p99 ms | non-2xx, errors, timeouts | server RSS MB (min–max) | served / ORT |', '|---|---|---:|---:|---:|---:|---:|---|---:|'];
const ratio = (r: Row) => {
  if (!r.system.startsWith('graft')) return '';
  const o = rows.find((x) => x.model === r.model && x.clients === r.clients && !x.system.startsWith('graft'));
  return o ? `${(r.rps / o.rps).toFixed(2)}×${r.rps / o.rps >= TARGET ? '' : ' (below ' + TARGET + '×)'}` : '';
};
for (const r of rows) lines.push(`| ${r.model} | ${r.system} | ${r.clients} | ${r.rps.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.errors} | ${r.rssMb ? `${r.rssMb[0].toFixed(0)}–${r.rssMb[1].toFixed(0)}` : ''} | ${ratio(r)} |`);
lines.push('', `graft serve --max-batch ${maxBatch ?? 16} (default 16); ${SECONDS} s per row, one 320×240 JPEG, 127.0.0.1; machine: ${cpus().length}× ${cpus()[0]?.model}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end; target: served ≥ ${TARGET}× the onnxruntime loop`);
process.stdout.write(lines.join('\n') + '\n');
const path = resultsPath('serve', started);
writeFileSync(path, JSON.stringify({ date: started.toISOString(), commit: gitCommit(), seconds: SECONDS, maxBatch: maxBatch ? Number(maxBatch) : 16, machine: { cpus: cpus().length, cpu: cpus()[0]?.model, loadavgEnd: loadavg() }, rows, rssSamplesMb: rss, target: TARGET }, null, 2) + '\n');
process.stdout.write(`wrote ${path}\n`);
