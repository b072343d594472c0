// The reference systems, each run as a child process on the same cases and timing policy:
// raw oneDNN from C++ (bench/onednn/raw_bench.cc), PyTorch CPU (bench/torch_ops.py) and
// onnxruntime-node (bench/ort.ts). A system that cannot run here is reported with the reason.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchCase } from './cases.js';
import type { Measurement, TimingPolicy } from './timing.js';

export type SystemName = 'graft' | 'raw' | 'torch' | 'ort';

export interface SystemRun {
  system: SystemName;
  /** Version and settings, or why the system did not run. */
  note: string;
  available: boolean;
  results: Measurement[];
}

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
export const repoRoot = join(here, '..', '..');

/** bench/results/<prefix>-<day>.json, or -2, -3, … when that day already has one. */
export function resultsPath(prefix: string, now: Date): string {
  const dir = join(repoRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const day = now.toISOString().slice(0, 10);
  for (let i = 1; ; i++) {
    const p = join(dir, i === 1 ? `${prefix}-${day}.json` : `${prefix}-${day}-${i}.json`);
    if (!existsSync(p)) return p;
  }
}

/** The checked-out commit, short form ('unknown' outside a git checkout). */
export function gitCommit(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}
/** Debian's interpreter, which has python3-torch; the python3 first on PATH may not. */
export const TORCH_PYTHON = '/usr/bin/python3';
const CHILD_TIMEOUT_MS = 15 * 60_000;

function unavailable(system: SystemName, note: string): SystemRun {
  return { system, note, available: false, results: [] };
}

/** Runs a child with `input` on stdin, progress on our stderr; returns the JSON object it prints. */
export function runChild(command: string, args: string[], input: string): { json?: Record<string, unknown>; error?: string } {
  const r = spawnSync(command, args, {
    input, cwd: repoRoot, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, maxBuffer: 64 << 20,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  if (r.error) return { error: r.error.message };
  if (r.status !== 0) return { error: `${command} exited with ${r.status ?? r.signal}` };
  const text = r.stdout.trim();
  try {
    return { json: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { error: `${command} printed no JSON: ${text.slice(0, 200)}` };
  }
}

// ---- raw oneDNN --------------------------------------------------------------------------------

const RAW_SOURCE = join(repoRoot, 'bench', 'onednn', 'raw_bench.cc');
const RAW_BINARY = join(repoRoot, 'build', 'bench', 'raw_bench');

/** Compiles raw_bench when the binary is missing or older than its source. */
function buildRaw(): string | null {
  if (existsSync(RAW_BINARY) && statSync(RAW_BINARY).mtimeMs >= statSync(RAW_SOURCE).mtimeMs) return null;
  mkdirSync(dirname(RAW_BINARY), { recursive: true });
  const args = ['-O3', '-march=native', '-std=c++17', '-fopenmp', RAW_SOURCE, '-ldnnl', '-o', RAW_BINARY];
  process.stderr.write(`bench: compiling g++ ${args.join(' ')}\n`);
  const r = spawnSync('g++', args, { encoding: 'utf8' });
  if (r.error) return `g++ could not be run (${r.error.message}); install g++ and libdnnl-dev`;
  if (r.status !== 0) {
    const first = r.stderr.split('\n').find((l) => l.includes('error')) ?? r.stderr.slice(0, 300);
    return `raw_bench.cc did not compile (${first.trim()}); it needs oneDNN 2.x headers (apt-get install libdnnl-dev)`;
  }
  return null;
}

/** Raw oneDNN on every case, plus the copy bandwidth at each of `copyBytes`. */
export function runRaw(cases: readonly BenchCase[], copyBytes: readonly number[], policy: TimingPolicy): SystemRun {
  const buildError = buildRaw();
  if (buildError) return unavailable('raw', buildError);
  const lines = [`policy ${policy.warmup} ${policy.minRuns} ${policy.maxRuns} ${policy.budgetMs} ${policy.threads}`];
  for (const c of cases) lines.push(`${c.id} ${c.op} ${Object.entries(c.params).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  for (const bytes of copyBytes) lines.push(`${copyId(bytes)} copy bytes=${bytes}`);
  const r = runChild(RAW_BINARY, [], lines.join('\n') + '\n');
  if (!r.json) return unavailable('raw', r.error!);
  return { system: 'raw', available: true, note: `oneDNN ${String(r.json['dnnl_version'])}, ${String(r.json['threads'])} threads`, results: r.json['results'] as Measurement[] };
}

export const copyId = (bytes: number) => `copy.${bytes}`;

// ---- PyTorch -----------------------------------------------------------------------------------

export function runTorch(cases: readonly BenchCase[], policy: TimingPolicy): SystemRun {
  const probe = spawnSync(TORCH_PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return unavailable('torch', `${TORCH_PYTHON} cannot import torch (apt-get install python3-torch)`);
  }
  const r = runChild(TORCH_PYTHON, [join(repoRoot, 'bench', 'torch_ops.py')], JSON.stringify({ policy, cases }));
  if (!r.json) return unavailable('torch', r.error!);
  const blas = r.json['blas'] as BlasInfo | undefined;
  const unfair = unfairBlas(blas);
  const note = `PyTorch ${String(r.json['torch_version'])}, ${String(r.json['threads'])} threads, BLAS ${blasNote(blas)}`;
  // On the reference BLAS PyTorch is no reference: its figures are left out, with the reason.
  if (unfair) return unavailable('torch', `${note}: not a fair reference, no ratios (${unfair})`);
  return { system: 'torch', available: true, note, results: r.json['results'] as Measurement[] };
}

// ---- onnxruntime-node ----------------------------------------------------------------------------

export function runOrt(cases: readonly BenchCase[], policy: TimingPolicy): SystemRun {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
  } catch {
    return unavailable('ort', 'onnxruntime-node is not installed (ONNXRUNTIME_NODE_INSTALL=skip npm install)');
  }
  const r = runChild(process.execPath, [join(here, 'ort.js')], JSON.stringify({ policy, cases }));
  if (!r.json) return unavailable('ort', r.error!);
  return { system: 'ort', available: true, note: `onnxruntime-node ${String(r.json['ort_version'])}, ${String(r.json['threads'])} intra-op threads`, results: r.json['results'] as Measurement[] };
}

// ---- the machine's arithmetic peak -------------------------------------------------------------

const PEAK_SOURCE = join(repoRoot, 'bench', 'peak', 'peak.cc');
const PEAK_BINARY = join(repoRoot, 'build', 'bench', 'peak');

export interface PeakRow {
  isa: string;
  dtype: 'fp32' | 'bf16';
  threads: number;
  gflops?: number;
  unsupported?: boolean;
}

export interface Peak {
  /** The machine's fp32 / bf16 limit in GFLOP/s (see measurePeak), undefined when not measured. */
  fp32?: number;
  bf16?: number;
  rows: PeakRow[];
  note: string;
}

/**
 * The arithmetic peak measured now (bench/peak/peak.cc: an FMA loop per instruction set, one
 * thread and every thread). Per dtype, the peak is the fastest ISA's rate on every thread, or its
 * one-thread rate times the threads when that is higher (on a shared machine another process can
 * hold a core during the all-thread loop; the one-thread loop is the cleaner measurement of one core).
 */
export function measurePeak(): Peak {
  if (!existsSync(PEAK_BINARY) || statSync(PEAK_BINARY).mtimeMs < statSync(PEAK_SOURCE).mtimeMs) {
    mkdirSync(dirname(PEAK_BINARY), { recursive: true });
    const args = ['-O3', '-std=c++17', '-fopenmp', PEAK_SOURCE, '-o', PEAK_BINARY];
    process.stderr.write(`bench: compiling g++ ${args.join(' ')}\n`);
    const r = spawnSync('g++', args, { encoding: 'utf8' });
    if (r.error || r.status !== 0) return { rows: [], note: `peak.cc did not compile (${r.error?.message ?? r.stderr.slice(0, 200)}); install g++` };
  }
  process.stderr.write('bench: measuring the arithmetic peak (FMA loops)…\n');
  const r = runChild(PEAK_BINARY, [], '');
  if (!r.json) return { rows: [], note: `the peak loop failed: ${r.error}` };
  const threads = r.json['threads'] as number;
  const rows = r.json['results'] as PeakRow[];
  const best = (dtype: string): number | undefined => {
    const v = rows.filter((x) => x.dtype === dtype && x.gflops !== undefined).map((x) => (x.threads === 1 ? x.gflops! * threads : x.gflops!));
    return v.length ? Math.max(...v) : undefined;
  };
  const fp32 = best('fp32');
  const bf16 = best('bf16');
  const desc = rows.filter((x) => x.gflops !== undefined).map((x) => `${x.dtype} ${x.isa} ${x.threads}t ${x.gflops!.toFixed(0)}`).join(', ');
  return { fp32, bf16, rows, note: `peak GFLOP/s: fp32 ${fp32?.toFixed(0) ?? '—'}, bf16 ${bf16?.toFixed(0) ?? '—'} (FMA loops: ${desc})` };
}

// ---- PyTorch's BLAS ----------------------------------------------------------------------------

export interface BlasInfo {
  kind: 'openblas' | 'blis' | 'mkl' | 'reference' | 'none';
  libraries: string[];
  threads: number | null;
}

/**
 * Why PyTorch's matrix products are not a fair reference, or undefined when they are: Debian's
 * python3-torch calls whatever libblas.so.3 is installed, and netlib's reference BLAS runs them
 * at a few GFLOP/s. `blas` is what torch_models.py / torch_ops.py found mapped in their process.
 */
export function unfairBlas(blas: BlasInfo | undefined): string | undefined {
  const pkg = spawnSync('dpkg-query', ['-W', '-f=${Status}', 'libopenblas0-pthread'], { encoding: 'utf8' });
  const installed = pkg.status === 0 && pkg.stdout.includes('install ok installed');
  const fix = 'apt-get install -y libopenblas0-pthread (update-alternatives then points libblas.so.3 at OpenBLAS)';
  if (!blas) return `PyTorch did not say which BLAS it loaded${installed ? '' : `; ${fix}`}`;
  if (blas.kind === 'reference' || blas.kind === 'none') {
    return `PyTorch runs on ${blas.kind === 'none' ? 'no BLAS it could name' : "netlib's reference BLAS"} (${blas.libraries.join(', ') || 'nothing mapped'}): ${installed ? 'libopenblas0-pthread is installed but not selected; update-alternatives --config libblas.so.3-x86_64-linux-gnu' : fix}`;
  }
  return undefined;
}

export const blasNote = (blas: BlasInfo | undefined) =>
  blas ? `${blas.kind}${blas.threads !== null ? ` (${blas.threads} threads)` : ''}, ${blas.libraries.map((l) => l.split('/').pop()).join(' + ')}` : 'unknown';
