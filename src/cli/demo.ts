// `graft demo`: the pretrained MobileNetV2 shipped in nsfwjs on Fashion-MNIST in the seeds'
// regime: 10 training images per class (8 to train, 2 to validate) and the whole 10,000-image
// test set (1:100), trained as linear probe, LoRA, DoRA, full fine-tuning and from scratch, then
// the comparison table of the papers. Every method runs on graft's defaults (train/defaults.ts),
// whose learning rates, steps, targets and input size were chosen on validation accuracy
// (docs/defaults.md); each method is evaluated on the test set once.
//
// The demo is a study (examples/demo-comparison.json is the same one as a file): one row per
// method, so it writes the study's tables, pictures and report.html, and a demo stopped part-way
// continues where it was; a method whose settings changed since is trained again.
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { currentBackend } from '../backends/registry.js';
import { parseStudy, type Study } from '../study/study-file.js';
import { prepareStudyFolder, runStudy } from '../study/runner.js';
import { runTraining } from './train-command.js';
import { writeStudyResults } from './study-command.js';

export interface DemoOptions {
  perClass: number;
  testPerClass?: number;
  /** Optimizer steps per method (default: graft's, at least 150). */
  steps?: number;
  methods: string[];
  output: string;
  seed: number;
}

/** The demo as a study: graft's defaults, the demo's data and seed, one row per method. */
export function demoStudy(o: DemoOptions): Study {
  return parseStudy({
    name: 'demo',
    description: 'nsfwjs MobileNetV2 on Fashion-MNIST: linear probe, LoRA, DoRA, full fine-tuning and scratch on graft\'s defaults',
    base: { model: 'nsfwjs_mobilenet_v2', data: { source: 'fashion-mnist', perClass: o.perClass, ...(o.testPerClass ? { testPerClass: o.testPerClass } : {}) }, ...(o.steps ? { train: { steps: o.steps } } : {}) },
    grid: { method: o.methods },
    seeds: [o.seed],
  }, 'graft demo');
}

export async function runDemo(o: DemoOptions, log: (line: string) => void = console.log): Promise<void> {
  const t0 = performance.now();
  log(`graft demo on the ${currentBackend().name} backend: nsfwjs MobileNetV2, Fashion-MNIST ${o.perClass} images per class (a fifth held out for validation), ${o.testPerClass ? `${o.testPerClass * 10}` : 'all 10,000'} test images`);
  const plan = prepareStudyFolder(demoStudy(o), o.output, { replaceChanged: true });
  const outcome = await runStudy(plan, o.output, async (config, claim) => {
    const r = await runTraining(config, log, claim);
    log(`${r.method}: test accuracy ${(100 * r.accuracy).toFixed(2)}%, weighted F1 ${(100 * r.weightedF1).toFixed(2)}%, ${r.trainSeconds.toFixed(1)} s training`);
    return r;
  }, log);
  await writeStudyResults(o.output, log);
  copyFileSync(join(o.output, 'table.md'), join(o.output, 'comparison.md'));
  log(`wall time ${((performance.now() - t0) / 1000).toFixed(0)} s; the table is in ${join(o.output, 'table.md')} (and comparison.md), the page in ${join(o.output, 'report.html')}, each method's run in ${o.output}/cells/<method>-s${o.seed}/`);
  if (outcome.failed.length) throw new Error(`${outcome.failed.length} of ${o.methods.length} methods failed (${outcome.failed.map((f) => `${f.id}: ${f.message}`).join('; ')}); the table holds the others`);
}
