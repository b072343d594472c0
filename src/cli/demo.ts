// `graft demo`: the pretrained MobileNetV2 shipped in nsfwjs, Fashion-MNIST with 20 training
// images per class and the full 10,000-image test set (a 50:1 regime), trained as linear probe,
// LoRA, DoRA, full fine-tuning and from scratch, then the comparison table of the papers.
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
  epochs: number;
  methods: string[];
  output: string;
  seed: number;
  /** LoRA/DoRA targets: names, dotted suffixes or a regex over module paths. */
  loraTargets: string[] | string;
}

/** The demo's per-method settings: learning rates suited to each method. */
function methodConfig(method: string, o: DemoOptions): RunConfig {
  const lr: Record<string, number> = { 'linear-probe': 3e-3, lora: 2e-3, dora: 2e-3, full: 3e-4, scratch: 2e-3 };
  return runConfigSchema().parse({
    model: 'nsfwjs_mobilenet_v2',
    data: { source: 'fashion-mnist', perClass: o.perClass, testPerClass: o.testPerClass },
    method,
    headFrom: 'features',
    adapter: { r: 8, alpha: 16, targets: o.loraTargets },
    train: { epochs: o.epochs, batchSize: 20, lr: lr[method] ?? 2e-3, seed: o.seed, warmupRatio: 0.1, augment: false },
    output: join(o.output, method),
  });
}

export async function runDemo(o: DemoOptions, log: (line: string) => void = console.log): Promise<RunSummary[]> {
  const t0 = performance.now();
  log(`graft demo on the ${currentBackend().name} backend: nsfwjs MobileNetV2, Fashion-MNIST ${o.perClass} images per class, ${o.testPerClass ? `${o.testPerClass * 10}` : 'all 10,000'} test images`);
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
  log(`\n${table}${failures}\n\nwall time ${wall.toFixed(0)} s`);
  mkdirSync(o.output, { recursive: true });
  writeFileSync(join(o.output, 'comparison.md'), `${table}${failures}\n\nwall time ${wall.toFixed(0)} s\n`);
  if (failed.length) throw new Error(`${failed.length} of ${o.methods.length} methods failed (see above); the table holds the others`);
  return rows;
}
