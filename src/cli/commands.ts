// `graft eval`, `predict`, `merge` and `inspect`.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { ConfigError, DataError, OutputPathError, RunFolderError, writeError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { PeftModel } from '../adapters/peft-model.js';
import { IMAGE_EXTENSIONS } from '../data/dataset.js';
import { decodeImage } from '../data/image.js';
import { prepareImage } from '../data/transforms.js';
import { ImageBatchSource } from '../data/loader.js';
import { evaluate } from '../eval/evaluate.js';
import { saveSafetensors } from '../io/safetensors.js';
import { describeTrainable, type Module } from '../nn/module.js';
import { Conv2d, Linear } from '../nn/layers.js';
import { createModel, listModels } from '../models/registry.js';
import { reportMarkdown } from '../report/tables.js';
import { robustnessMarkdown, type RobustnessRow } from '../report/robustness.js';
import { checkSeverity, type Perturbation } from '../data/perturb.js';
import { softmax } from '../ops/norm.js';
import { tensor } from '../ops/creation.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { Generator } from '../tensor/random.js';
import { matchClasses, openCheckedDataset } from './datasets.js';
import { stratifiedSplit } from '../data/splits.js';
import { isInsideRun, loadRun } from '../train/run.js';
import { describeAdapter } from './inspect-adapter.js';
import { evalSegmentationRun, predictSegmentation } from './segmentation-commands.js';

/** `graft eval RUN --data SOURCE [--perturb KINDS]`: every metric of a finished run on a labelled dataset, clean and under each perturbation. */
export async function evalCommand(runDir: string, source: string, log: (l: string) => void = console.log, opts: { rank?: number; testPerClass?: number; perturb?: Perturbation[]; perturbSeed?: number } = {}): Promise<void> {
  const run = await loadRun(runDir);
  if (run.config.task === 'segmentation') {
    if (opts.perturb?.length || opts.testPerClass !== undefined) throw new ConfigError('--perturb and --test-per-class are for classification runs; a segmentation run is evaluated on every pair of --data');
    return evalSegmentationRun(run, runDir, source, log);
  }
  const choice = run.model instanceof PeftModel ? run.model.rankChoice() : null;
  if (opts.rank !== undefined) {
    if (!choice) throw new ConfigError(`--rank: run ${runDir} used method '${run.config.method}', whose adapter has one rank; --rank is for methods trained for several ranks (dylora)`);
    choice.set(opts.rank);
  }
  const perturbations = (opts.perturb ?? []).map((p) => {
    try {
      return checkSeverity(p);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  });
  const seed = opts.perturbSeed ?? 0;
  const warn = (f: string, r: string) => log(`warning: skipped ${f}: ${r}`);
  const checked = await openCheckedDataset(source, 'test', warn, '--data');
  const all = matchClasses(checked, run.classes, source);
  const samples = opts.testPerClass !== undefined ? stratifiedSplit(all, { seed: 0, perClass: 0, testPerClass: opts.testPerClass }).test : all;
  const src = new ImageBatchSource(checked.dataset, samples, { batchSize: 16, preprocess: run.preprocess, report: (f, r) => warn(f, `unreadable image (${r})`) });
  const { report } = await evaluate(run.model, src, run.classes.length);
  const rows: RobustnessRow[] = [{ condition: 'clean', severity: null, report }];
  for (const p of perturbations) {
    log(`evaluating under ${p.kind} (severity ${p.severity}, seed ${seed})…`);
    const perturbed = new ImageBatchSource(checked.dataset, samples, { batchSize: 16, preprocess: run.preprocess, perturb: p, seed, report: () => undefined });
    rows.push({ condition: p.kind, severity: p.severity, report: (await evaluate(run.model, perturbed, run.classes.length)).report });
  }
  const rank = choice?.current();
  let md = reportMarkdown(`${run.config.model} · ${run.config.method}${rank !== undefined ? ` at rank ${rank}` : ''} on ${source}`, run.classes, report);
  if (perturbations.length) md += `\n${robustnessMarkdown(run.classes, rows, seed)}`;
  writeFileAtomic(join(runDir, 'eval.md'), md);
  const robustness = perturbations.length ? { robustness: { seed, conditions: rows.slice(1).map((r) => ({ perturbation: r.condition, severity: r.severity, metrics: r.report })) } } : {};
  writeFileAtomic(join(runDir, 'eval.json'), JSON.stringify({ source, ...(rank !== undefined ? { rank } : {}), metrics: report, ...robustness }, null, 2));
  log(md);
}

function imageFiles(inputs: string[]): string[] {
  const out: string[] = [];
  for (const p of inputs) {
    if (!existsSync(p)) throw new DataError(`${p} does not exist; give image files or folders of images`);
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p).sort()) if (IMAGE_EXTENSIONS.has(extname(f).toLowerCase())) out.push(join(p, f));
    } else out.push(p);
  }
  if (!out.length) throw new DataError(`no images to predict in ${inputs.join(', ')} (image files end in ${[...IMAGE_EXTENSIONS].join(', ')})`);
  return out;
}

/** `graft predict RUN FILES…`: the label and class scores of each image, as JSON or CSV. */
export async function predictCommand(runDir: string, inputs: string[], format: 'json' | 'csv', write: (s: string) => void = (s) => process.stdout.write(s), opts: { outputDir?: string } = {}): Promise<void> {
  const run = await loadRun(runDir);
  const files = imageFiles(inputs);
  if (run.config.task === 'segmentation') {
    if (format !== 'json') throw new ConfigError('--format csv: a segmentation run writes mask and overlay PNGs and lists them as JSON; leave --format out');
    const { errors } = await predictSegmentation(run, files, opts.outputDir ?? join(runDir, 'predictions'), write);
    if (errors.length) throw new DataError(`${errors.length} of ${files.length} images could not be read (${errors.slice(0, 3).map((e) => e.file).join(', ')}${errors.length > 3 ? ', …' : ''}); their errors are listed with the results`);
    return;
  }
  const [c, h, w] = run.preprocess.inputSize;
  const rows: { file: string; label: string; scores: number[] }[] = [];
  const errors: { file: string; error: string }[] = [];
  for (const file of files) {
    try {
      const data = new Float32Array(c * h * w);
      await prepareImage(await decodeImage(file), run.preprocess, null, new Generator(0), data, 0);
      const probs = noGrad(() => tidy(() => softmax(run.model.forward(tensor(data, [1, c, h, w])), -1).toArray()));
      let best = 0;
      for (let k = 1; k < probs.length; k++) if (probs[k]! > probs[best]!) best = k;
      rows.push({ file, label: run.classes[best]!, scores: Array.from(probs) });
    } catch (e) {
      errors.push({ file, error: (e as Error).message });
    }
  }
  if (format === 'json') write(JSON.stringify({ classes: run.classes, predictions: rows, errors }, null, 2) + '\n');
  else {
    const quote = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    write([['file', 'label', ...run.classes].map(quote).join(','), ...rows.map((r) => [quote(r.file), quote(r.label), ...r.scores.map((v) => v.toFixed(6))].join(','))].join('\n') + '\n');
    for (const e of errors) process.stderr.write(`graft predict: ${e.file}: ${e.error}\n`);
  }
  // The readable images' results are out; the exit status still says that some inputs failed.
  if (errors.length) throw new DataError(`${errors.length} of ${files.length} images could not be read (${errors.slice(0, 3).map((e) => e.file).join(', ')}${errors.length > 3 ? ', …' : ''}); their errors are listed with the results`);
}

/** `graft merge RUN --output FILE`: the adapter merged into the backbone, saved as safetensors. */
export async function mergeCommand(runDir: string, output: string, log: (l: string) => void = console.log): Promise<void> {
  if (!output.endsWith('.safetensors')) throw new OutputPathError(`--output ${output}: the merged model is one file; give a path ending in .safetensors`);
  if (existsSync(output) && statSync(output).isDirectory()) throw new OutputPathError(`--output ${output} is a folder; give a file path ending in .safetensors`);
  if (isInsideRun(runDir, output)) throw new OutputPathError(`--output ${output} would replace a file of the run ${runDir} itself; write the merged model outside the run's own files (e.g. ${join(runDir, 'merged.safetensors')} or another folder)`);
  const run = await loadRun(runDir);
  if (!(run.model instanceof PeftModel)) throw new ConfigError(`run ${runDir} used method '${run.config.method}', which has no adapter to merge; its model.safetensors is already a full model file`);
  const unmergeable = run.model.adapterLayers().filter(([, l]) => !l.canMerge()).map(([p]) => p);
  if (unmergeable.length) throw new ConfigError(`run ${runDir}: the ${run.config.method} adapter on ${unmergeable.slice(0, 3).join(', ')}${unmergeable.length > 3 ? ` and ${unmergeable.length - 3} more` : ''} cannot be merged into its base layer (e.g. LoRA on a grouped convolution); use the run folder with graft eval/predict instead`);
  // A 4-bit base is dequantised, gets ΔW and is quantised again (bitsandbytes' names in the file).
  const merged = run.model.mergeAndUnload({ requantize: run.config.quantize !== undefined });
  if (run.model.lastRequantize.size) {
    const errs = [...run.model.lastRequantize.values()];
    const max = Math.max(...errs.map((e) => e.maxAbsError));
    const rms = Math.sqrt(errs.reduce((a, e) => a + e.rmsError ** 2, 0) / errs.length);
    log(`re-quantised ${errs.length} 4-bit layers after merging: rounding error max ${max.toExponential(2)}, rms ${rms.toExponential(2)}`);
  }
  try {
    mkdirSync(dirname(output), { recursive: true });
  } catch (e) {
    throw writeError(e, output);
  }
  saveSafetensors(output, merged.stateDict(), { format: 'pt', source: runDir });
  log(`merged ${run.config.method} adapter of ${runDir} into ${run.config.model}: ${output}`);
}

/** `graft inspect`: a model's layers, the names usable as LoRA targets, parameter counts; or an adapter folder. */
export function inspectCommand(target: string | undefined, opts: { list?: boolean }, log: (l: string) => void = console.log): void {
  if (opts.list || !target) {
    log(listModels().join('\n'));
    return;
  }
  if (existsSync(target) && statSync(target).isFile()) {
    throw new ConfigError(`inspect ${target}: give a model name (graft inspect --list), a run folder or an adapter folder holding adapter_config.json; a ${extname(target) || 'plain'} file is none of them`);
  }
  const adapterDir = existsSync(join(target, 'adapter_config.json')) ? target : existsSync(join(target, 'adapter', 'adapter_config.json')) ? join(target, 'adapter') : null;
  if (existsSync(target) && !adapterDir) {
    throw new RunFolderError(`inspect ${target}: the folder holds no adapter_config.json (nor adapter/adapter_config.json); give an adapter folder, a run folder of an adapter method, or a model name`);
  }
  if (adapterDir) {
    for (const line of describeAdapter(adapterDir)) log(line);
    return;
  }
  const model: Module = createModel(target);
  const targets = new Map<string, number>();
  for (const [path, m] of model.namedModules()) {
    if (!path) continue;
    const params = m.namedParameters().filter(([k]) => !k.includes('.')).reduce((a, [, t]) => a + t.size, 0);
    const kind = m.constructor.name;
    const detail = m instanceof Linear ? ` ${m.inFeatures}→${m.outFeatures}` : m instanceof Conv2d ? ` ${m.inChannels}→${m.outChannels} k${m.kernelSize.join('×')}${m.groups > 1 ? ` groups=${m.groups}` : ''}` : '';
    log(`${path}  ${kind}${detail}${params ? `  ${params.toLocaleString('en-US')} params` : ''}`);
    if (m instanceof Linear || m instanceof Conv2d) {
      const suffix = path.split('.').pop()!;
      targets.set(suffix, (targets.get(suffix) ?? 0) + 1);
    }
  }
  log(`\nLoRA targets (name: layers): ${[...targets].map(([k, n]) => `${k}: ${n}`).join(', ')}; or 'all-linear', or a regex over the paths above`);
  log(describeTrainable(model).line);
}
