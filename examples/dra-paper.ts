// The DRA paper's comparisons in its own layout, on what graft has here: the pretrained nsfwjs
// MobileNetV2 (and InceptionV3) on few-shot Fashion-MNIST. One command:
//
//   npx tsc -p . && node dist/examples/dra-paper.js [--models nsfwjs_mobilenet_v2,nsfwjs_inception_v3]
//     [--per-class 10] [--test-per-class N] [--steps N] [--seed 0] [--output runs/dra-paper]
//     [--no-ablation] [--no-robustness]
//
// For each model: full fine-tuning, LoRA r = 4, 8, 16, DRA (defaults: r 2…16, w 0.15/0.85),
// AdaLoRA and DyLoRA with their ranks matched to DRA's mean rank (AdaLoRA target_r = that rank,
// init_r = 1.5×; DyLoRA r = that rank) — Tables 1, 3 and 7 (mAP, Parm/M; DRA's Parm is Avg_Parm);
// DRA's trainable parameters per epoch (Table 2); the (w_imp, w_bias) ablation over the paper's
// pairs (Tables 4 and 5); and DRA and LoRA r = 8 under the four test-time perturbations at their
// default severities (Table 6). Every run uses graft's defaults otherwise (docs/defaults.md) and
// is evaluated on the test set once. Writes <output>/paper.md and paper.json, each run in
// <output>/<model>/<run>/.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import '../src/backends/all.js';
import '../src/models/all.js';
import { runConfigSchema } from '../src/train/run-config.js';
import { runTraining, type RunSummary } from '../src/cli/train-command.js';
import { evalCommand } from '../src/cli/commands.js';
import { PERTURBATIONS, PERTURBATION_DEFAULTS } from '../src/data/perturb.js';
import { markdownTable, pct } from '../src/report/tables.js';

interface Options {
  models: string[];
  perClass: number;
  testPerClass?: number;
  steps?: number;
  seed: number;
  output: string;
  ablation: boolean;
  robustness: boolean;
}

function parse(argv: string[]): Options {
  const o: Options = { models: ['nsfwjs_mobilenet_v2'], perClass: 10, seed: 0, output: 'runs/dra-paper', ablation: true, robustness: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--models') o.models = v().split(',');
    else if (a === '--per-class') o.perClass = Number(v());
    else if (a === '--test-per-class') o.testPerClass = Number(v());
    else if (a === '--steps') o.steps = Number(v());
    else if (a === '--seed') o.seed = Number(v());
    else if (a === '--output') o.output = v();
    else if (a === '--no-ablation') o.ablation = false;
    else if (a === '--no-robustness') o.robustness = false;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

interface Row extends RunSummary {
  label: string;
  /** DRA: trainable parameters per epoch. */
  perEpoch?: number[];
  meanRank?: number;
}

const M = (n: number) => (n / 1e6).toFixed(3);

async function trainOne(o: Options, model: string, label: string, method: string, extra: Record<string, unknown>): Promise<Row> {
  const dir = join(o.output, model, label);
  const config = runConfigSchema().parse({
    model, data: { source: 'fashion-mnist', perClass: o.perClass, testPerClass: o.testPerClass }, method, train: { steps: o.steps, seed: o.seed }, output: dir, ...extra,
  });
  console.log(`\n== ${model} · ${label} ==`);
  const s = await runTraining(config, (l) => console.log(l), { overwrite: true });
  const row: Row = { ...s, label };
  if (method === 'dra') {
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { dra: { trainableParamsPerEpoch: number[]; epochs: { ranks: Record<string, number> }[] } };
    row.perEpoch = report.dra.trainableParamsPerEpoch;
    const ranks = Object.values(report.dra.epochs.at(-1)?.ranks ?? {});
    row.meanRank = ranks.reduce((a, b) => a + b, 0) / Math.max(ranks.length, 1);
  }
  console.log(`${label}: mAP ${pct(s.mAP)}, accuracy ${pct(s.accuracy)}, Parm ${M(s.avgTrainableParams)} M`);
  return row;
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const t0 = performance.now();
  mkdirSync(o.output, { recursive: true });
  const md: string[] = [`# The DRA paper's comparisons on few-shot Fashion-MNIST (${o.perClass} images per class, ${o.testPerClass ? `${o.testPerClass * 10}` : 'all 10,000'} test images, seed ${o.seed})`, ''];
  const json: Record<string, unknown> = { options: o, models: {} };
  for (const model of o.models) {
    const rows: Row[] = [];
    rows.push(await trainOne(o, model, 'full', 'full', {}));
    for (const r of [4, 8, 16]) rows.push(await trainOne(o, model, `lora-r${r}`, 'lora', { adapter: { r, alpha: 2 * r } }));
    const draRow = await trainOne(o, model, 'dra', 'dra', {});
    rows.push(draRow);
    const matched = Math.max(1, Math.round(draRow.meanRank ?? 8));
    rows.push(await trainOne(o, model, `adalora-r${matched}`, 'adalora', { adapter: { alpha: 2 * matched }, adalora: { targetR: matched, initR: Math.round(1.5 * matched) } }));
    rows.push(await trainOne(o, model, `dylora-r${matched}`, 'dylora', { adapter: { r: matched, alpha: 2 * matched } }));
    md.push(`## ${model}`, '', '### Tables 1, 3, 7: methods (DRA\'s Parm is Avg_Parm, the mean over epochs)', '');
    md.push(markdownTable(['run', 'mAP', 'accuracy', 'weighted F1', 'Parm/M', 'training time (s)'], rows.map((r) => [r.label, pct(r.mAP), pct(r.accuracy), pct(r.weightedF1), M(r.avgTrainableParams), r.trainSeconds.toFixed(1)])));
    md.push('', `(AdaLoRA and DyLoRA at rank ${matched}, DRA's mean rank after training. Parm counts every trainable parameter, the new 10-class head included.)`, '');
    md.push('### Table 2: DRA\'s trainable parameters per epoch (M)', '', (draRow.perEpoch ?? []).map((p, i) => `ep${i + 1} ${M(p)}`).join(' → '), '');
    const ablation: Row[] = [];
    if (o.ablation) {
      for (const [wi, wb] of [[0, 1], [0.2, 0.8], [0.25, 0.75], [1, 0]] as const) {
        ablation.push(await trainOne(o, model, `dra-w${wi}-${wb}`, 'dra', { dra: { wImp: wi, wBias: wb } }));
      }
      const all = [...ablation.slice(0, 1), { ...draRow, label: 'dra-w0.15-0.85' }, ...ablation.slice(1)];
      md.push('### Tables 4, 5: (w_imp, w_bias) ablation', '');
      md.push(markdownTable(['(w_imp, w_bias)', 'accuracy', 'mAP', 'Avg_Parm/M'], all.map((r) => [r.label.replace('dra-w', '').replace('-', ', '), pct(r.accuracy), pct(r.mAP), M(r.avgTrainableParams)])));
      md.push('');
    }
    const robustness: Record<string, unknown> = {};
    if (o.robustness) {
      md.push(`### Table 6: robustness (mAP; severities: noise σ ${PERTURBATION_DEFAULTS.noise}, crop ${PERTURBATION_DEFAULTS.crop}, jitter ${PERTURBATION_DEFAULTS.jitter}, rotation ±${PERTURBATION_DEFAULTS.rotation}°, seed 0)`, '');
      const table: (string | number)[][] = [];
      for (const label of ['dra', 'lora-r8']) {
        const dir = join(o.output, model, label);
        await evalCommand(dir, 'fashion-mnist', () => undefined, { testPerClass: o.testPerClass, perturb: PERTURBATIONS.map((kind) => ({ kind, severity: PERTURBATION_DEFAULTS[kind] })) });
        const e = JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')) as { metrics: { mAP: number }; robustness: { conditions: { perturbation: string; metrics: { mAP: number } }[] } };
        robustness[label] = e;
        table.push([label, pct(e.metrics.mAP), ...e.robustness.conditions.map((c) => pct(c.metrics.mAP))]);
      }
      md.push(markdownTable(['run', 'clean', ...PERTURBATIONS], table), '');
    }
    (json['models'] as Record<string, unknown>)[model] = { rows, ablation, robustness };
  }
  md.push(`wall time ${((performance.now() - t0) / 1000).toFixed(0)} s`, '');
  writeFileSync(join(o.output, 'paper.md'), md.join('\n'));
  writeFileSync(join(o.output, 'paper.json'), JSON.stringify(json, null, 2));
  console.log(`\n${md.join('\n')}\nwritten to ${join(o.output, 'paper.md')}`);
}

main().catch((e) => {
  console.error(`dra-paper: ${(e as Error).message}`);
  process.exit(1);
});
