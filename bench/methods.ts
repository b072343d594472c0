// `npm run bench:methods`: training throughput and peak memory of every registered adapter method
// beside LoRA, in one run: ViT-S/16 with every Linear targeted and ResNet-18 with every Conv2d
// targeted, batch 8 at 224², each method with its defaults at the shared rank 8 / alpha 16.
// Each case runs in its own child process (so its peak RSS is its own); a step is what the
// trainer does: the method's hooks, forward, cross-entropy (+ the method's extra loss), backward,
// AdamW. The cases run in rounds (3, or 1 with --quick), each round every case in the same order,
// and a method's ratio to LoRA is the median of its per-round ratios, so drift in the machine's
// speed between cases cancels. Prints a table of images/s as ratios to LoRA's against the targets,
// and writes bench/results/methods-<date>.json.
//
//   node dist/bench/methods.js [--quick] [--only <substring of a case id>] [--rounds N]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AdamW, crossEntropy, Generator, manualSeed, noGrad, randn, randint, setBackend, tidy, add } from '../src/index.js';
import '../src/backends/all.js';
import { applyMethod } from '../src/adapters/apply.js';
import { SharedAdapterOptionsSchema } from '../src/adapters/method.js';
import { adapterMethods, getAdapterMethod } from '../src/adapters/registry.js';
import { PeftModel } from '../src/adapters/peft-model.js';
import { createModel } from '../src/models/registry.js';
import '../src/models/all.js';
import { Conv2d } from '../src/nn/layers.js';
import { describeTrainable } from '../src/nn/module.js';
import { decayGroups } from '../src/train/trainer.js';
import { gitCommit, repoRoot, resultsPath, runChild } from './references.js';
import { median, type TimingPolicy } from './timing.js';
import { timeTrainingSteps } from './train-step.js';

const BATCH = 8;
const MODELS = {
  // `blocks`: whether methods that wrap whole blocks (Mona) apply; they take every block.
  vit_s16: { name: 'vit_small_patch16_224', targets: 'all-linear' as const, label: 'ViT-S/16, every Linear', blocks: true },
  resnet18: { name: 'resnet18', targets: 'conv' as const, label: 'ResNet-18, every Conv2d', blocks: false },
};
type ModelKey = keyof typeof MODELS;

/** images/s at least this share of LoRA's (the issue's targets); methods not listed have none. */
const TARGETS: Record<string, number> = { loha: 0.85, lokr: 0.85, ia3: 0.85, dylora: 0.85, adalora: 0.7, oft: 0.7, dora: 0.5 };

interface CaseSpec {
  model: ModelKey;
  method: string;
  policy: TimingPolicy;
}

interface CaseResult {
  ms?: number;
  runs?: number;
  trainable?: number;
  total?: number;
  maxRssMb?: number;
  loss0?: number;
  error?: string;
}

async function runCase(s: CaseSpec): Promise<CaseResult> {
  setBackend('native');
  manualSeed(1);
  const m = MODELS[s.model];
  const backbone = createModel(m.name, { numClasses: 1000 });
  const method = getAdapterMethod(s.method);
  const targets = method.defaultTargets ?? (m.targets === 'conv' ? backbone.namedModules().filter(([p, x]) => p && x instanceof Conv2d).map(([p]) => p) : m.targets);
  const shared = SharedAdapterOptionsSchema.parse({ r: 8, alpha: 16, targets });
  const model = applyMethod(backbone, s.method, {
    numClasses: 10, generator: new Generator(2),
    adapterConfig: method.configFromRun(shared, method.optionsSchema.parse({})),
  }) as PeftModel;
  model.train();
  const gen = new Generator(3);
  const x = randn([BATCH, 3, 224, 224], { generator: gen });
  const y = randint(0, 10, [BATCH], { generator: gen });
  const hooks = model.trainingHooks();
  const sample = await timeTrainingSteps(model, hooks, x, y, s.policy);
  const t = describeTrainable(model);
  return { ...sample, trainable: t.trainable, total: t.total, maxRssMb: process.resourceUsage().maxRSS / 1024, loss0: sample.loss0 };
}

function parseArgs(argv: readonly string[]): { quick: boolean; only?: string; rounds?: number } {
  const args: { quick: boolean; only?: string; rounds?: number } = { quick: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--quick') args.quick = true;
    else if (argv[i] === '--only' && argv[i + 1]) args.only = argv[++i];
    else if (argv[i] === '--rounds' && argv[i + 1] && Number.isInteger(Number(argv[i + 1])) && Number(argv[i + 1]) >= 1) args.rounds = Number(argv[++i]);
    else throw new Error(`unknown argument '${argv[i]}'; usage: node dist/bench/methods.js [--quick] [--only <substring>] [--rounds N ≥ 1]`);
  }
  return args;
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined ? '—' : v.toFixed(digits));

async function main(): Promise<void> {
  if (process.argv[2] === '--case') {
    const spec = JSON.parse(process.argv[3]!) as CaseSpec;
    let out: CaseResult;
    try {
      out = await runCase(spec);
    } catch (e) {
      out = { error: (e as Error).message.split('\n')[0] };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const args = parseArgs(process.argv.slice(2));
  const policy: TimingPolicy = args.quick
    ? { warmup: 1, minRuns: 3, maxRuns: 6, budgetMs: 2000, threads: cpus().length }
    : { warmup: 2, minRuns: 4, maxRuns: 8, budgetMs: 3000, threads: cpus().length };
  // Rounds: every case once per round, in the same order, so a slow drift of the machine's speed
  // (other jobs, clocks) falls on LoRA and the method alike; a ratio is the median of its rounds.
  const rounds = args.rounds ?? (args.quick ? 1 : 3);
  const methods = ['lora', ...adapterMethods().map((m) => m.name).filter((n) => n !== 'lora')];
  const specs: (CaseSpec & { id: string })[] = [];
  for (const model of Object.keys(MODELS) as ModelKey[]) {
    for (const method of methods) {
      const id = `${model}.${method}`;
      if (getAdapterMethod(method).wraps && !MODELS[model].blocks) continue;
      specs.push({ id, model, method, policy });
    }
  }
  // --only keeps the matching cases and, for their ratios, LoRA on the same models.
  const chosen = specs.filter((c) => !args.only || c.id.includes(args.only));
  specs.splice(0, specs.length, ...specs.filter((c) => chosen.includes(c) || (c.method === 'lora' && chosen.some((x) => x.model === c.model))));
  const load0 = loadavg();
  const perRound: CaseResult[][] = specs.map(() => []);
  for (let round = 0; round < rounds; round++) {
    specs.forEach((spec, i) => {
      process.stderr.write(`round ${round + 1}/${rounds} ${spec.id}…\n`);
      const { id: _id, ...c } = spec;
      const r = runChild(process.execPath, [join(repoRoot, 'dist', 'bench', 'methods.js'), '--case', JSON.stringify(c)], '');
      perRound[i]!.push((r.json as CaseResult | undefined) ?? { error: r.error });
    });
  }
  const rows = specs.map((spec, i) => {
    const results = perRound[i]!;
    const failed = results.find((r) => r.error);
    const ms = results.map((r) => r.ms).filter((v): v is number => v !== undefined);
    const loraIndex = specs.findIndex((x) => x.model === spec.model && x.method === 'lora');
    const ratios = loraIndex < 0 ? [] : results.map((r, k) => (r.ms && perRound[loraIndex]![k]?.ms ? perRound[loraIndex]![k]!.ms! / r.ms : undefined)).filter((v): v is number => v !== undefined);
    return {
      ...spec, ...results[0], error: failed?.error,
      ms: ms.length ? median(ms) : undefined, msRounds: ms,
      ratio: ratios.length ? median(ratios) : undefined, ratioRounds: ratios,
      maxRssMb: Math.max(...results.map((r) => r.maxRssMb ?? 0)) || undefined,
    };
  });
  const lines = [
    `| model | method | trainable | img/s | × LoRA${rounds > 1 ? ` (median of ${rounds} rounds; range)` : ''} | target | peak MB | loss₀ |  |`,
    '| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |',
  ];
  for (const r of rows) {
    const ips = r.ms ? (1000 * BATCH) / r.ms : undefined;
    const target = TARGETS[r.method];
    const verdict = r.error ? `error: ${r.error}` : target === undefined || r.ratio === undefined ? '' : r.ratio >= target ? 'ok' : 'below';
    const range = r.ratioRounds.length > 1 ? ` (${fmt(Math.min(...r.ratioRounds))}–${fmt(Math.max(...r.ratioRounds))})` : '';
    lines.push(`| ${MODELS[r.model].label} | ${r.method} | ${r.trainable?.toLocaleString('en-US') ?? '—'} | ${fmt(ips)} | ${fmt(r.ratio)}${r.method === 'lora' ? '' : range} | ${target === undefined ? '' : `≥${target}×`} | ${fmt(r.maxRssMb, 0)} | ${fmt(r.loss0, 5)} | ${verdict} |`);
  }
  const table = lines.join('\n');
  process.stdout.write(`graft ${gitCommit()}, batch ${BATCH} at 224², ${cpus().length} threads, load ${load0.map((l) => l.toFixed(2)).join(' ')} → ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n\n${table}\n`);
  const path = resultsPath('methods', new Date());
  writeFileSync(path, JSON.stringify({ commit: gitCommit(), batch: BATCH, policy, rounds, loadavg: [load0, loadavg()], rows }, null, 2));
  process.stdout.write(`\nwritten ${path}\n`);
}

await main();
