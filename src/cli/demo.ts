// `graft demo`: the pretrained MobileNetV2 shipped in nsfwjs on Fashion-MNIST in the seeds'
// regime: 10 training images per class (8 to train, 2 to validate) and the whole 10,000-image
// test set (1:100), trained as linear probe, LoRA, DoRA, full fine-tuning and from scratch, then
// the comparison table of the papers. Every method runs on graft's defaults (train/defaults.ts),
// whose learning rates, steps, targets and input size were chosen on validation accuracy
// (docs/defaults.md); each method is evaluated on the test set once.
import { performance } from 'node:perf_hooks';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { currentBackend } from '../backends/registry.js';
import { comparisonTable } from '../report/comparison.js';
import { runConfigSchema, type RunConfig } from './config.js';
import { runTraining, type RunSummary } from './train-command.js';

export interface DemoOptions {
  perClass: number;
  testPerClass?: number;
  /** Optimizer steps per method (default: graft's, at least 150). */
  steps?: number;
  methods: string[];
  output: string;
  seed: number;
}

/** A method's run: graft's defaults, the demo's data and seed. */
function methodConfig(method: string, o: DemoOptions): RunConfig {
  return runConfigSchema().parse({
    model: 'nsfwjs_mobilenet_v2',
    data: { source: 'fashion-mnist', perClass: o.perClass, testPerClass: o.testPerClass },
    method,
    train: { steps: o.steps, seed: o.seed },
    output: join(o.output, method),
  });
}

export async function runDemo(o: DemoOptions, log: (line: string) => void = console.log): Promise<RunSummary[]> {
  const t0 = performance.now();
  log(`graft demo on the ${currentBackend().name} backend: nsfwjs MobileNetV2, Fashion-MNIST ${o.perClass} images per class (a fifth held out for validation), ${o.testPerClass ? `${o.testPerClass * 10}` : 'all 10,000'} test images`);
  const rows: RunSummary[] = [];
  const failed: string[] = [];
  for (const method of o.methods) {
    log(`\n== ${method} ==`);
    try {
      rows.push(await runTraining(methodConfig(method, o), log, { overwrite: true }));
    } catch (e) {
      // One method failing (a diverged run) does not take the others' results with it.
      failed.push(`${method}: ${(e as Error).message}`);
      log(`${method} failed: ${(e as Error).message}`);
      continue;
    }
    const r = rows[rows.length - 1]!;
    log(`${method}: test accuracy ${(100 * r.accuracy).toFixed(2)}%, weighted F1 ${(100 * r.weightedF1).toFixed(2)}%, ${r.trainSeconds.toFixed(1)} s training`);
  }
  const table = rows.length ? comparisonTable(rows) : '(no method finished)';
  const wall = (performance.now() - t0) / 1000;
  const failures = failed.length ? `\n\nfailed:\n${failed.map((f) => `- ${f}`).join('\n')}` : '';
  const where = join(o.output, 'comparison.md');
  log(`\n${table}${failures}\n\nwall time ${wall.toFixed(0)} s; this table is in ${where}, each method's report in ${o.output}/<method>/report.md`);
  mkdirSync(o.output, { recursive: true });
  writeFileSync(where, `${table}${failures}\n\nwall time ${wall.toFixed(0)} s\n`);
  if (failed.length) throw new Error(`${failed.length} of ${o.methods.length} methods failed (see above); the table holds the others`);
  return rows;
}
