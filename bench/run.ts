// `npm run bench`: op-level speed of graft against raw oneDNN, PyTorch and onnxruntime, all
// measured in the same run on the same cases (bench/cases.ts), reported as ratios.
//
//   node dist/bench/run.js [--quick] [--only <id or op>] [--skip raw,torch,ort] [--rounds N]
//   GRAFT_BACKEND=reference node dist/bench/run.js --quick     (smoke check without the addon)
//
// Prints a table and writes bench/results/ops-<date>.json. Speeds are reported, never asserted.
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { getBackend, nativeLoadError, setBackend, type BackendName } from '../src/index.js';
import { copySizes, selectCases, type BenchCase } from './cases.js';
import { measureGraft } from './graft_ops.js';
import { gitCommit, measurePeak, resultsPath, runOrt, runRaw, runTorch, type SystemName, type SystemRun } from './references.js';
import { buildRows, formatTable, TARGET_COPY, TARGET_LATENCY_US, TARGET_RAW, type Row } from './table.js';
import { timingPolicy, type Measurement, type TimingPolicy } from './timing.js';

interface Args {
  quick: boolean;
  only?: string;
  skip: Set<SystemName>;
  /** graft and raw oneDNN alternate this many times; each row keeps each system's best round. */
  rounds?: number;
}

const USAGE = 'usage: node dist/bench/run.js [--quick] [--only <case id or op>] [--skip raw,torch,ort] [--rounds N]';

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, skip: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') args.quick = true;
    else if (a === '--only' && argv[i + 1]) args.only = argv[++i];
    else if (a === '--rounds' && argv[i + 1]) {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--rounds takes a whole number ≥ 1; got '${argv[i]}'\n${USAGE}`);
      args.rounds = n;
    }
    else if (a === '--skip' && argv[i + 1]) {
      for (const s of argv[++i]!.split(',')) {
        if (s !== 'raw' && s !== 'torch' && s !== 'ort') throw new Error(`--skip takes raw, torch, ort; got '${s}'\n${USAGE}`);
        args.skip.add(s);
      }
    } else throw new Error(`unknown argument '${a}'\n${USAGE}`);
  }
  return args;
}

/** Native when it loads (or GRAFT_BACKEND says), else reference with the reason. */
function chooseBackend(): { name: BackendName; note: string } {
  const env = process.env['GRAFT_BACKEND'];
  if (env && env !== 'native' && env !== 'reference') throw new Error(`GRAFT_BACKEND='${env}' is not a backend; use 'reference' or 'native'`);
  if (env === 'reference') return { name: 'reference', note: 'reference (GRAFT_BACKEND=reference)' };
  try {
    getBackend('native');
    return { name: 'native', note: 'native' };
  } catch (e) {
    if (env === 'native') throw e;
    return { name: 'reference', note: `reference: the native backend did not load (${nativeLoadError()}); build it with npm run build:native` };
  }
}

/**
 * graft and raw oneDNN, alternating case by case and round by round (graft on a case, then raw
 * oneDNN on it, then the next case; again each round), so that a change in the shared machine's
 * load falls on both; the rows keep each system's fastest round (table.ts takes the fastest
 * matching measurement). The memory-bandwidth copy runs once per round.
 */
async function runInterleaved(cases: readonly BenchCase[], policy: TimingPolicy, note: string, rounds: number, raw: boolean): Promise<[SystemRun, SystemRun | null]> {
  const graft: Measurement[] = [];
  const rawResults: Measurement[] = [];
  let rawRun: SystemRun | null = null;
  const rawStep = (cs: readonly BenchCase[], copies: number[], round: number) => {
    if (!raw || (rawRun && !rawRun.available)) return;
    const r = runRaw(cs, copies, policy);
    rawRun = r;
    rawResults.push(...r.results.map((m) => ({ ...m, round })));
  };
  for (let round = 1; round <= rounds; round++) {
    const tag = rounds > 1 ? ` (round ${round}/${rounds})` : '';
    for (const c of cases) {
      graft.push(...(await measureGraft(c, policy)).map((m) => ({ ...m, round })));
      process.stderr.write(`graft${tag}: ${c.id} done\n`);
      rawStep([c], copySizes([c], false), round);
    }
    rawStep([], copySizes([], true), round);
  }
  const best = rounds > 1 ? `, best of ${rounds} rounds` : '';
  const graftRun: SystemRun = { system: 'graft', available: true, note: note + best, results: graft };
  if (!raw) return [graftRun, null];
  const r = rawRun as SystemRun | null;
  if (!r || !r.available) return [graftRun, r];
  return [graftRun, { ...r, note: r.note + best, results: rawResults }];
}

function summary(rows: readonly Row[]): string[] {
  const missed = rows.filter((r) => r.met === false);
  const unjudged = rows.filter((r) => r.met === null && r.target !== '');
  const lines = [`targets: GFLOP/s ≥ ${TARGET_RAW}× raw oneDNN (plain layouts), GB/s ≥ ${TARGET_COPY * 100}% of memory bandwidth (a 1 GiB copy), < ${TARGET_LATENCY_US} µs per tiny op`];
  lines.push(`${rows.filter((r) => r.met === true).length} rows meet their target, ${missed.length} miss${unjudged.length ? `, ${unjudged.length} could not be judged` : ''}`);
  for (const r of missed) lines.push(`  MISS ${r.id} ${r.pass}: ${r.target}`);
  return lines;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cases = selectCases(args.only);
  const threads = availableParallelism();
  const policy = timingPolicy(args.quick, threads);
  const backend = chooseBackend();
  setBackend(backend.name);
  const startLoad = loadavg();
  const started = new Date();

  const skipped = (s: SystemName): SystemRun => ({ system: s, note: 'skipped (--skip)', available: false, results: [] });
  const rounds = args.rounds ?? (args.quick ? 1 : 3);
  const [graftRun, rawRun] = await runInterleaved(cases, policy, backend.note, rounds, !args.skip.has('raw'));
  const runs: Record<SystemName, SystemRun> = {
    graft: graftRun,
    raw: rawRun ?? skipped('raw'),
    torch: args.skip.has('torch') ? skipped('torch') : runTorch(cases, policy),
    ort: args.skip.has('ort') ? skipped('ort') : runOrt(cases, policy),
  };
  const peak = measurePeak();
  const rows = buildRows(cases, runs, peak.fp32);

  const header = [
    `graft op benchmarks, ${started.toISOString()}, commit ${gitCommit()}`,
    `machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} threads, load average ${startLoad.map((l) => l.toFixed(2)).join(' ')} at start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end`,
    `timing: median of ${policy.minRuns}–${policy.maxRuns} runs after ${policy.warmup} warm-up, ~${policy.budgetMs} ms per pass${args.quick ? ' (--quick)' : ''}; graft and raw oneDNN alternate case by case, ${rounds} round${rounds > 1 ? 's' : ''}, PyTorch and ORT run once`,
    ...Object.values(runs).map((r) => `${r.system.padEnd(5)}: ${r.note}`),
    `${peak.note}; % peak = graft's GFLOP/s ÷ the fp32 peak`,
    '× = graft speed ÷ reference speed (> 1: graft faster); "dnnl any" lets oneDNN pick blocked layouts, reorders included',
  ];
  const errors = Object.values(runs).flatMap((r) => r.results.filter((m) => m.error).map((m) => `${r.system} ${m.id}${m.pass ? ' ' + m.pass : ''}: ${m.error}`));
  const report = [...header, '', formatTable(rows), '', ...summary(rows), ...(errors.length ? ['', 'not measured:', ...errors.map((e) => '  ' + e)] : [])];
  process.stdout.write(report.join('\n') + '\n');

  const path = resultsPath('ops', started);
  writeFileSync(path, JSON.stringify({
    date: started.toISOString(), commit: gitCommit(), args: { quick: args.quick, only: args.only ?? null, skip: [...args.skip], rounds },
    machine: { cpu: cpus()[0]?.model, threads, node: process.version, loadavgStart: startLoad, loadavgEnd: loadavg() },
    policy, backend: backend.name, peak,
    systems: Object.fromEntries(Object.values(runs).map((r) => [r.system, { available: r.available, note: r.note }])),
    rows, measurements: Object.fromEntries(Object.values(runs).map((r) => [r.system, r.results])),
  }, null, 2) + '\n');
  process.stdout.write(`wrote ${path}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
