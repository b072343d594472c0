// `npm run bench:models`: whole-model speed of graft against onnxruntime-node and PyTorch on the
// same weights, in one run: inference (ViT-S/16, ViT-B/16, ResNet-18, MobileNetV2 at 224², batch
// 1 and 8) and training steps (LoRA/DoRA/conv LoRA/full fine-tuning at batch 8), reported as
// ratios next to their targets, and each row as a share of the machine's arithmetic peak measured
// in the same run (bench/peak/peak.cc). PyTorch counts as a reference only on an optimised BLAS
// (OpenBLAS here): on netlib's reference BLAS the ratios against it are refused.
//
//   node dist/bench/models.js [--quick] [--only <substr>] [--skip torch,ort]
//
// bench/torch_models.py builds the torchvision models from a fixed seed and writes their state
// dicts (safetensors), ONNX exports and a check batch into bench/.cache/models/ (git-ignored,
// reused when present). Every measurement runs in its own child process, so each peak RSS
// belongs to one case. Prints a table and writes bench/results/models-<date>.json.
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { getBackend, nativeLoadError } from '../src/index.js';
import { INFER_BATCHES, MODELS, TRAIN_BATCH, TRAIN_CASES, type ModelSpec, type TrainCase } from './model_cases.js';
import { blasNote, gitCommit, measurePeak, repoRoot, resultsPath, runChild, TORCH_PYTHON, unfairBlas, type BlasInfo, type Peak } from './references.js';
import { fmt } from './table.js';
import type { TimingPolicy } from './timing.js';

type Ref = 'torch' | 'ort';

interface Args {
  quick: boolean;
  only?: string;
  skip: Set<Ref>;
}

const USAGE = 'usage: node dist/bench/models.js [--quick] [--only <substring of a case id>] [--skip torch,ort]';
const CACHE = 'bench/.cache/models';

/** Targets: graft ÷ reference speed at least this much; `vitLoraPeak` a share of the fp32 peak. */
const TARGETS = {
  cnnOrt: 1,
  vitOrt: 1.2,
  inferTorch: 1.5,
  vitLoraTorch: 2,
  vitLoraPeak: 0.7,
  cnnTrainTorch: 1.5,
  trainTorch: 1,
};

/**
 * The policy of bench/timing.ts sized for whole models: a model step takes 10 ms to minutes, so
 * the budget is seconds; a step slower than 3× the budget is timed once after one warm-up.
 */
function modelTimingPolicy(quick: boolean, threads: number): TimingPolicy {
  return quick
    ? { warmup: 1, minRuns: 3, maxRuns: 10, budgetMs: 2000, threads }
    : { warmup: 2, minRuns: 5, maxRuns: 30, budgetMs: 8000, threads };
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, skip: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') args.quick = true;
    else if (a === '--only' && argv[i + 1]) args.only = argv[++i];
    else if (a === '--skip' && argv[i + 1]) {
      for (const s of argv[++i]!.split(',')) {
        if (s !== 'torch' && s !== 'ort') throw new Error(`--skip takes torch, ort; got '${s}'\n${USAGE}`);
        args.skip.add(s);
      }
    } else throw new Error(`unknown argument '${a}'\n${USAGE}`);
  }
  return args;
}

interface Sample {
  ms: number;
  runs: number;
}

interface InferRow {
  id: string;
  model: string;
  batch: number;
  graft?: Sample;
  ort?: Sample;
  torch?: Sample;
  /** Forward FLOPs per image (torch_models.py's count). */
  flops?: number;
  graftDiff?: number;
  ortDiff?: number;
  logitScale?: number;
  target: string;
  met: boolean | null;
}

interface TrainRow {
  id: string;
  label: string;
  graft?: Sample & { loss0: number; lossLast: number; trainable: number; maxRssMb: number };
  torch?: Sample & { loss0: number; lossLast: number; trainable: number; maxRssMb: number };
  /** A step's FLOPs per image: forward + backward (torch_models.py's count). */
  flops?: number;
  target: string;
  met: boolean | null;
}

const errors: string[] = [];

function child(what: string, command: string, args: string[], spec: unknown): Record<string, unknown> | undefined {
  process.stderr.write(`${what}…\n`);
  const r = runChild(command, args, JSON.stringify(spec));
  if (!r.json) errors.push(`${what}: ${r.error}`);
  return r.json;
}

const graftChild = (what: string, spec: unknown) => child(`graft ${what}`, process.execPath, [join(repoRoot, 'dist', 'bench', 'graft_models.js')], spec);
const ortChild = (what: string, spec: unknown) => child(`ort ${what}`, process.execPath, [join(repoRoot, 'dist', 'bench', 'ort_models.js')], spec);
const torchChild = (what: string, spec: unknown) => child(`torch ${what}`, TORCH_PYTHON, [join(repoRoot, 'bench', 'torch_models.py')], spec);

const perBatch = (json: Record<string, unknown> | undefined, batch: number): Sample | undefined =>
  (json?.['results'] as (Sample & { batch: number })[] | undefined)?.find((r) => r.batch === batch);

const ratio = (a: Sample | undefined, b: Sample | undefined) => (a && b ? b.ms / a.ms : undefined);

/** Why PyTorch is no fair reference in this run (its BLAS), or undefined. */
let torchUnfair: string | undefined;
/** graft over PyTorch, refused (undefined) when PyTorch's BLAS is not a fair reference. */
const torchRatio = (a: Sample | undefined, b: Sample | undefined) => (torchUnfair ? undefined : ratio(a, b));

let peak: Peak = { rows: [], note: 'not measured' };
/** GFLOP/s of `flops` per image at `batch` images per `s.ms`. */
const gflops = (s: Sample | undefined, flops: number | undefined, batch: number) => (s && flops ? (flops * batch) / s.ms / 1e6 : undefined);
/** The share of the fp32 peak. */
const ofPeak = (g: number | undefined) => (g !== undefined && peak.fp32 ? g / peak.fp32 : undefined);

/** Each target a row has, as "0.85× ORT (≥0.8)"; met when all are. */
function judge(checks: [string, number | undefined, number][]): [string, boolean | null] {
  if (checks.length === 0) return ['', null];
  const parts = checks.map(([ref, x, min]) => (x === undefined ? `≥${min}× ${ref}: —` : `${x.toFixed(2)}× ${ref} (≥${min})`));
  const known = checks.filter(([, x]) => x !== undefined);
  if (known.some(([, x, min]) => x! < min)) return [parts.join(', '), false];
  return [parts.join(', '), known.length === checks.length ? true : null];
}

let ortVersion = 'unknown';

/** A logit difference beyond float32 rounding through a deep network: 1e-3 of the logits' size. */
const logitsDiffer = (diff: number | undefined, scale: number | undefined) => diff !== undefined && scale !== undefined && diff > 1e-3 * Math.max(scale, 1);

function inferRows(models: readonly ModelSpec[], policy: TimingPolicy, backend: string, args: Args, flops: Record<string, number>): { rows: InferRow[]; rss: Record<string, Record<string, number>> } {
  const rows: InferRow[] = [];
  const rss: Record<string, Record<string, number>> = {};
  for (const m of models) {
    const spec = { cache: CACHE, model: m.key, batches: [...INFER_BATCHES], policy };
    const g = graftChild(`${m.key} inference`, { mode: 'infer', backend, ...spec });
    const o = args.skip.has('ort') ? undefined : ortChild(`${m.key} inference`, spec);
    const t = args.skip.has('torch') ? undefined : torchChild(`${m.key} inference`, { mode: 'infer', ...spec });
    if (o?.['ortVersion']) ortVersion = String(o['ortVersion']);
    const scale = g?.['maxAbsRef'] as number | undefined;
    if (logitsDiffer(g?.['maxAbsDiff'] as number | undefined, scale)) errors.push(`${m.key}: graft's logits differ from PyTorch's by ${String(g!['maxAbsDiff'])} (logits up to ${String(scale)})`);
    if (logitsDiffer(o?.['maxAbsDiff'] as number | undefined, scale)) errors.push(`${m.key}: ORT's logits differ from PyTorch's by ${String(o!['maxAbsDiff'])} (logits up to ${String(scale)})`);
    rss[m.key] = Object.fromEntries([['graft', g?.['maxRssMb']], ['ort', o?.['maxRssMb']], ['torch', t?.['max_rss_mb']]].filter(([, v]) => v !== undefined)) as Record<string, number>;
    for (const batch of INFER_BATCHES) {
      const row: InferRow = {
        id: `${m.key}.infer.b${batch}`, model: m.label, batch,
        graft: perBatch(g, batch), ort: perBatch(o, batch), torch: perBatch(t, batch), flops: flops[m.key],
        graftDiff: g?.['maxAbsDiff'] as number | undefined, ortDiff: o?.['maxAbsDiff'] as number | undefined, logitScale: g?.['maxAbsRef'] as number | undefined,
        target: '', met: null,
      };
      const checks: [string, number | undefined, number][] = [];
      checks.push(['ORT', ratio(row.graft, row.ort), m.key.startsWith('vit') ? TARGETS.vitOrt : TARGETS.cnnOrt], ['PyTorch', torchRatio(row.graft, row.torch), TARGETS.inferTorch]);
      [row.target, row.met] = judge(checks);
      rows.push(row);
    }
  }
  return { rows, rss };
}

function trainRows(cases: readonly TrainCase[], policy: TimingPolicy, backend: string, args: Args, flops: Record<string, number>): TrainRow[] {
  return cases.map((c) => {
    const spec = { cache: CACHE, case: c, policy };
    const row: TrainRow = {
      id: c.id, label: c.label,
      graft: graftChild(`${c.id} training`, { mode: 'train', backend, ...spec }) as TrainRow['graft'],
      flops: flops[c.id],
      target: '', met: null,
    };
    if (!args.skip.has('torch')) {
      const t = torchChild(`${c.id} training`, { mode: 'train', ...spec });
      if (t) row.torch = { ms: t['ms'] as number, runs: t['runs'] as number, loss0: t['loss0'] as number, lossLast: t['loss_last'] as number, trainable: t['trainable'] as number, maxRssMb: t['max_rss_mb'] as number };
    }
    if (row.graft && row.torch && row.graft.trainable !== row.torch.trainable) {
      errors.push(`${c.id}: graft trains ${row.graft.trainable} parameters, PyTorch ${row.torch.trainable}`);
    }
    if (row.graft && row.torch && Math.abs(row.graft.loss0 - row.torch.loss0) > 1e-4 * Math.max(1, Math.abs(row.torch.loss0))) {
      errors.push(`${c.id}: first loss graft ${row.graft.loss0}, PyTorch ${row.torch.loss0}`);
    }
    const torchTarget = c.id === 'vit_s16.lora' ? TARGETS.vitLoraTorch : c.id === 'vit_s16.dora' ? TARGETS.trainTorch : TARGETS.cnnTrainTorch;
    const checks: [string, number | undefined, number][] = [['PyTorch', torchRatio(row.graft, row.torch), torchTarget]];
    if (c.id === 'vit_s16.lora') checks.push(['fp32 peak', ofPeak(gflops(row.graft, row.flops, TRAIN_BATCH)), TARGETS.vitLoraPeak]);
    [row.target, row.met] = judge(checks);
    return row;
  });
}

const ips = (s: Sample | undefined, batch: number) => (s ? fmt((1000 * batch) / s.ms) : '—');
const ms = (s: Sample | undefined) => (s ? fmt(s.ms) : '—');
const x = (v: number | undefined) => (v === undefined ? '' : v.toFixed(2));
const sci = (v: number | undefined) => (v === undefined ? '—' : v.toExponential(1));
const ok = (met: boolean | null) => (met === null ? '' : met ? 'ok' : 'MISS');
const pct = (v: number | undefined) => (v === undefined ? '—' : `${(v * 100).toFixed(0)}%`);

function table(header: string[], body: string[][], numeric: Set<number>): string {
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(...all.map((line) => line[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), rule, ...body.map(line)].join('\n');
}

function inferTable(rows: readonly InferRow[]): string {
  const header = ['model', 'batch', 'graft img/s', 'ms', 'GFLOP/s', '% peak', 'ORT img/s', '% peak', '× ORT', 'PyTorch img/s', '% peak', '× PyTorch', 'max|Δ| graft', 'max|Δ| ORT', 'target', ''];
  const body = rows.map((r) => [
    r.model, String(r.batch), ips(r.graft, r.batch), ms(r.graft), fmt(gflops(r.graft, r.flops, r.batch)), pct(ofPeak(gflops(r.graft, r.flops, r.batch))),
    ips(r.ort, r.batch), pct(ofPeak(gflops(r.ort, r.flops, r.batch))), x(ratio(r.graft, r.ort)),
    ips(r.torch, r.batch), pct(ofPeak(gflops(r.torch, r.flops, r.batch))), x(torchRatio(r.graft, r.torch)), sci(r.graftDiff), sci(r.ortDiff), r.target, ok(r.met),
  ]);
  return table(header, body, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]));
}

function trainTable(rows: readonly TrainRow[]): string {
  const header = ['training case', 'trainable', 'graft img/s', 'GFLOP/s', '% peak', 'peak MB', 'PyTorch img/s', '% peak', 'peak MB', '× PyTorch', 'loss₀ graft', 'loss₀ PyTorch', 'target', ''];
  const body = rows.map((r) => [
    r.label, r.graft ? r.graft.trainable.toLocaleString('en-US') : '—', ips(r.graft, TRAIN_BATCH),
    fmt(gflops(r.graft, r.flops, TRAIN_BATCH)), pct(ofPeak(gflops(r.graft, r.flops, TRAIN_BATCH))), r.graft ? r.graft.maxRssMb.toFixed(0) : '—',
    ips(r.torch, TRAIN_BATCH), pct(ofPeak(gflops(r.torch, r.flops, TRAIN_BATCH))), r.torch ? r.torch.maxRssMb.toFixed(0) : '—', x(torchRatio(r.graft, r.torch)),
    r.graft ? r.graft.loss0.toFixed(5) : '—', r.torch ? r.torch.loss0.toFixed(5) : '—', r.target, ok(r.met),
  ]);
  return table(header, body, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const threads = availableParallelism();
  const policy = modelTimingPolicy(args.quick, threads);
  const backend = 'native';
  try {
    getBackend('native');
  } catch {
    throw new Error(`the native backend did not load (${nativeLoadError()}); build it with npm run build:native`);
  }
  const match = (id: string) => !args.only || id.includes(args.only);
  const models = MODELS.filter((m) => INFER_BATCHES.some((b) => match(`${m.key}.infer.b${b}`)));
  const cases = TRAIN_CASES.filter((c) => match(`${c.id}.train`));
  if (!models.length && !cases.length) throw new Error(`--only '${args.only}' matches no case (ids: ${[...MODELS.map((m) => `${m.key}.infer.b1|b8`), ...TRAIN_CASES.map((c) => `${c.id}.train`)].join(', ')})`);
  const startLoad = loadavg();
  const started = new Date();

  // The weights, ONNX files and check batches: PyTorch writes them once into the cache.
  const needed = [...new Set([...models.map((m) => m.key), ...cases.map((c) => c.model)])];
  const prep = torchChild('preparing cached models', { mode: 'prepare', cache: CACHE, models: needed, cases, threads });
  if (!prep) throw new Error(`${TORCH_PYTHON} bench/torch_models.py could not prepare the models (${errors.join('; ')}); it needs python3-torch and python3-torchvision`);
  const blas = prep['blas'] as BlasInfo | undefined;
  torchUnfair = args.skip.has('torch') ? undefined : unfairBlas(blas);
  if (torchUnfair) errors.push(`no ratio against PyTorch: ${torchUnfair}`);
  peak = measurePeak();
  if (peak.fp32 === undefined) errors.push(`no share of the peak: ${peak.note}`);

  // Inference warms up for the whole budget (at most 200 calls) in every system: a server runs
  // warm, and the first second of a JavaScript process also compiles its hot functions.
  const inferPolicy = { ...policy, warmup: 200 };
  const infer = inferRows(models, inferPolicy, backend, args, prep['flops'] as Record<string, number>);
  const train = trainRows(cases, policy, backend, args, prep['train_flops'] as Record<string, number>);

  const header = [
    `graft model benchmarks, ${started.toISOString()}, commit ${gitCommit()}`,
    `machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} threads, load average ${startLoad.map((l) => l.toFixed(2)).join(' ')} at start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end`,
    `timing: median of ${policy.minRuns}–${policy.maxRuns} runs after ${policy.warmup} warm-up (inference: up to ${inferPolicy.warmup} warm-up calls within ~${policy.budgetMs} ms), ~${policy.budgetMs} ms per case (one run after one warm-up when a run exceeds ${3 * policy.budgetMs} ms)${args.quick ? ' (--quick)' : ''}`,
    `graft: ${backend} backend; PyTorch ${String(prep['torch_version'])} (${TORCH_PYTHON}), ${threads} threads${args.skip.has('torch') ? ' (skipped)' : ''}; onnxruntime-node ${ortVersion}${args.skip.has('ort') ? ' (skipped)' : ''}, ${threads} intra-op threads`,
    `PyTorch's BLAS: ${blasNote(blas)}${torchUnfair ? ' (NOT a fair reference: ratios against PyTorch refused)' : ''}`,
    `${peak.note}; % peak = a row's GFLOP/s (products' FLOPs counted by torch_models.py) ÷ the fp32 peak`,
    '× = graft speed ÷ reference speed (> 1: graft faster); max|Δ| = largest logit difference from PyTorch on the cached check batch of 8',
  ];
  const lines = [...header];
  if (infer.rows.length) lines.push('', `inference, 224², eval mode (logits up to ${fmt(Math.max(...infer.rows.map((r) => r.logitScale ?? 0)))} in size)`, '', inferTable(infer.rows));
  if (train.length) lines.push('', `training step at batch ${TRAIN_BATCH}, 224²: forward + backward + AdamW; 10-class head; loss₀ = first step's loss on the same batch and head`, '', trainTable(train));
  const all = [...infer.rows, ...train];
  lines.push('', `targets: inference ≥ ${TARGETS.cnnOrt}× ORT (ViTs ≥ ${TARGETS.vitOrt}×) and ≥ ${TARGETS.inferTorch}× PyTorch; ViT-S LoRA training ≥ ${TARGETS.vitLoraPeak * 100}% of the fp32 peak and ≥ ${TARGETS.vitLoraTorch}× PyTorch; ResNet-18 conv LoRA and MobileNetV2 full fine-tuning ≥ ${TARGETS.cnnTrainTorch}× PyTorch; DoRA ≥ ${TARGETS.trainTorch}× PyTorch`);
  lines.push(`${all.filter((r) => r.met === true).length} rows meet their target, ${all.filter((r) => r.met === false).length} miss`);
  for (const r of all.filter((r) => r.met === false)) lines.push(`  MISS ${r.id}: ${r.target}`);
  if (errors.length) lines.push('', 'problems:', ...errors.map((e) => '  ' + e));
  process.stdout.write(lines.join('\n') + '\n');

  const path = resultsPath('models', started);
  writeFileSync(path, JSON.stringify({
    date: started.toISOString(), commit: gitCommit(), args: { quick: args.quick, only: args.only ?? null, skip: [...args.skip] },
    machine: { cpu: cpus()[0]?.model, threads, node: process.version, loadavgStart: startLoad, loadavgEnd: loadavg() },
    policy, torchVersion: prep['torch_version'], torchBlas: blas ?? null, torchUnfair: torchUnfair ?? null, peak, targets: TARGETS,
    inference: infer.rows, inferenceMaxRssMb: infer.rss, training: train, errors,
  }, null, 2) + '\n');
  process.stdout.write(`wrote ${path}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:models: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
