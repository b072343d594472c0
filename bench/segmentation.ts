// `npm run bench:segmentation`: training images/s of Swin-T + the light UPerNet head (64
// channels, 11 classes) per method (linear-probe: frozen backbone; LoRA on every Linear; Mona;
// full fine-tuning), against PyTorch (torchvision swin_t under the same head,
// bench/torch_segmentation.py) where PyTorch has the method without an adapter library
// (linear-probe and full). A step is what `graft train --task segmentation` does: the method's
// hooks, forward to logits at the input size, per-pixel cross-entropy (ignore index 255),
// backward, AdamW. Each case runs in its own child process. Prints a table and writes
// bench/results/segmentation-<date>.json.
//
//   node dist/bench/segmentation.js [--quick] [--image N] [--batch B]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AdamW, crossEntropy, Generator, manualSeed, noGrad, randn, randint, setBackend, tidy, add, tensor } from '../src/index.js';
import '../src/backends/all.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import '../src/models/all.js';
import { describeTrainable } from '../src/nn/module.js';
import { buildRunModel } from '../src/train/run.js';
import { runConfigSchema } from '../src/train/run-config.js';
import { decayGroups } from '../src/train/trainer.js';
import { gitCommit, repoRoot, resultsPath, runChild, TORCH_PYTHON } from './references.js';
import { type TimingPolicy } from './timing.js';
import { timeTrainingSteps } from './train-step.js';

const CLASSES = 11;
const CHANNELS = 64;
const METHODS = ['linear-probe', 'lora', 'mona', 'full'] as const;
const TORCH_METHODS = new Set(['linear-probe', 'full']);

interface CaseSpec { method: string; batch: number; image: number; policy: TimingPolicy }
interface CaseResult { ms?: number; runs?: number; trainable?: number; total?: number; maxRssMb?: number; loss0?: number; error?: string; note?: string }

async function runCase(s: CaseSpec): Promise<CaseResult> {
  setBackend('native');
  manualSeed(1);
  const classes = Array.from({ length: CLASSES }, (_, i) => `c${i}`);
  const c = runConfigSchema().parse({ task: 'segmentation', model: 'swin_tiny', method: s.method, data: { source: 'unused', imageSize: s.image }, segmentation: { head: 'uper', channels: CHANNELS } });
  const { model } = await buildRunModel(c, classes);
  model.train();
  const gen = new Generator(3);
  const x = randn([s.batch, 3, s.image, s.image], { generator: gen });
  const labels = randint(0, CLASSES, [s.batch, s.image, s.image], { generator: gen }).toArray() as Int32Array;
  labels.fill(255, 0, 2 * s.image);
  const y = tensor(labels, [s.batch, s.image, s.image]);
  const hooks = model instanceof PeftModel ? model.trainingHooks() : {};
  const sample = await timeTrainingSteps(model, hooks, x, y, s.policy, { ignoreIndex: 255 });
  const t = describeTrainable(model);
  return { ...sample, trainable: t.trainable, total: t.total, maxRssMb: process.resourceUsage().maxRSS / 1024, loss0: sample.loss0 };
}

function parseArgs(argv: readonly string[]): { quick: boolean; image: number; batch: number } {
  const a = { quick: false, image: 224, batch: 4 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--quick') a.quick = true;
    else if (argv[i] === '--image' && argv[i + 1]) a.image = Number(argv[++i]);
    else if (argv[i] === '--batch' && argv[i + 1]) a.batch = Number(argv[++i]);
    else throw new Error(`unknown argument '${argv[i]}'; usage: node dist/bench/segmentation.js [--quick] [--image N] [--batch B]`);
  }
  if (!(Number.isInteger(a.image) && a.image >= 32 && Number.isInteger(a.batch) && a.batch >= 2)) throw new Error('--image must be an integer ≥ 32 and --batch one ≥ 2');
  return a;
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits));

async function main(): Promise<void> {
  if (process.argv[2] === '--case') {
    let out: CaseResult;
    try {
      out = await runCase(JSON.parse(process.argv[3]!) as CaseSpec);
    } catch (e) {
      out = { error: (e as Error).message.split('\n')[0] };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const args = parseArgs(process.argv.slice(2));
  const threads = cpus().length;
  const policy: TimingPolicy = args.quick
    ? { warmup: 1, minRuns: 3, maxRuns: 5, budgetMs: 2000, threads }
    : { warmup: 2, minRuns: 5, maxRuns: 10, budgetMs: 8000, threads };
  const load0 = loadavg();
  const rows: { method: string; graft: CaseResult; torch?: CaseResult }[] = [];
  let torchNote = '';
  for (const method of METHODS) {
    const spec: CaseSpec = { method, batch: args.batch, image: args.image, policy };
    process.stderr.write(`graft ${method}…\n`);
    const g = runChild(process.execPath, [join(repoRoot, 'dist', 'bench', 'segmentation.js'), '--case', JSON.stringify(spec)], '');
    const row: (typeof rows)[number] = { method, graft: (g.json as CaseResult | undefined) ?? { error: g.error } };
    if (TORCH_METHODS.has(method)) {
      process.stderr.write(`torch ${method}…\n`);
      const t = runChild(TORCH_PYTHON, [join(repoRoot, 'bench', 'torch_segmentation.py')], JSON.stringify({ method, batch: args.batch, image: args.image, classes: CLASSES, channels: CHANNELS, policy }));
      const j = t.json as (CaseResult & { max_rss_mb?: number; torch_version?: string; blas?: { kind: string; threads: number } }) | undefined;
      if (j) {
        row.torch = { ...j, maxRssMb: j.max_rss_mb };
        torchNote = `PyTorch ${j.torch_version} on ${j.blas?.kind} (${j.blas?.threads} threads)`;
      } else row.torch = { error: t.error };
    }
    rows.push(row);
  }
  const ips = (r?: CaseResult) => (r?.ms ? (1000 * args.batch) / r.ms : undefined);
  const lines = [
    '| method | trainable | trainable % | graft img/s | PyTorch img/s | graft ÷ PyTorch | graft peak MB | PyTorch peak MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    const g = r.graft;
    const share = g.trainable !== undefined && g.total ? (100 * g.trainable) / g.total : undefined;
    lines.push(`| ${r.method}${g.error ? ` (error: ${g.error})` : ''} | ${g.trainable?.toLocaleString('en-US') ?? '—'} | ${fmt(share)} | ${fmt(ips(g))} | ${r.torch ? (r.torch.error ? `error: ${r.torch.error}` : fmt(ips(r.torch))) : 'no adapter library'} | ${r.torch ? fmt((ips(g) ?? NaN) / (ips(r.torch) ?? NaN)) : ''} | ${fmt(g.maxRssMb, 0)} | ${r.torch ? fmt(r.torch.maxRssMb, 0) : ''} |`);
  }
  const head = `graft ${gitCommit()}, Swin-T + UPerNet-lite (${CHANNELS} ch, ${CLASSES} classes), batch ${args.batch} at ${args.image}², ${threads} threads; ${torchNote || 'PyTorch did not run'}; load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${loadavg().map((l) => l.toFixed(2)).join(' ')}`;
  process.stdout.write(`${head}\n\n${lines.join('\n')}\n`);
  const path = resultsPath('segmentation', new Date());
  writeFileSync(path, JSON.stringify({ commit: gitCommit(), batch: args.batch, image: args.image, policy, torch: torchNote, loadavg: [load0, loadavg()], rows }, null, 2));
  process.stdout.write(`\nwritten ${path}\n`);
}

await main();
