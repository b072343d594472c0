#!/usr/bin/env node
// The graft command line.
import { Command, InvalidArgumentError } from 'commander';
import { isMethodName, methodNames } from '../adapters/apply.js';
import '../backends/all.js';
import '../models/all.js';
import { loadRunConfig } from './config.js';
import { exitCodeOf } from '../errors.js';
import { runDemo } from './demo.js';
import { runTraining } from './train-command.js';
import { useDeterministicKernels } from '../train/deterministic.js';
import { evalCommand, inspectCommand, mergeCommand, predictCommand } from './commands.js';

function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer; got '${v}'`);
    return n;
  };
}

function number(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number; got '${v}'`);
    return n;
  };
}

/** Reports an error: status 2 for bad input (src/errors.ts), 1 for failures while running, 130 for Ctrl-C. */
function fail(e: unknown): never {
  const err = e as Error;
  console.error(`graft: ${err.message}`);
  process.exit(err instanceof InvalidArgumentError ? 2 : exitCodeOf(err));
}

const program = new Command('graft')
  .description('Parameter-efficient fine-tuning of vision models')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command('train')
  .description('fine-tune a backbone on labelled images and report test metrics')
  .option('-c, --config <file>', 'run configuration (JSON); flags override its fields')
  .option('--model <name>', 'backbone name (see graft inspect --list)')
  .option('--weights <path>', 'checkpoint: a .safetensors file, a folder holding model.safetensors, or hf:ORG/NAME (Hub cache, downloaded when online)')
  .option('--data <source>', "image folder, .csv/.jsonl manifest, or 'fashion-mnist'")
  .option('--test-data <source>', 'separate test images')
  .option('--per-class <n>', 'training images per class', positiveInt('--per-class'))
  .option('--ratio <test:train>', 'test:train ratio such as 98:1', (v) => {
    const m = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(v);
    if (!m) throw new InvalidArgumentError(`--ratio must look like 98:1; got '${v}'`);
    return [Number(m[1]), Number(m[2])];
  })
  .option('--test-per-class <n>', 'cap on test images per class (quick runs)', positiveInt('--test-per-class'))
  .option('--val-fraction <f>', 'share of the training images held out for validation (default 0.2 when every class has 5 images, else 0)', number('--val-fraction'))
  .option('--method <name>', `one of ${methodNames().join(', ')}`)
  .option('--rank <r>', 'adapter rank r (methods with a rank; DyLoRA: the highest rank; AdaLoRA uses adalora.initR/targetR instead, as PEFT)', positiveInt('--rank'))
  .option('--alpha <a>', 'adapter alpha (scaling alpha / r; DyLoRA: alpha / b; AdaLoRA: alpha / init_r)', number('--alpha'))
  .option('--targets <names>', "comma-separated module names, a regex, or 'all-linear' ('all-blocks' for mona, its default)")
  .option('--mona-dim <d>', "Mona's inner width (default 64, as the reference)", positiveInt('--mona-dim'))
  .option('--head-from <where>', "new head replaces 'classifier' (the last Linear) or everything after the pooled 'features'")
  .option('--image-size <n>', 'input size (square); default: the model\'s own', positiveInt('--image-size'))
  .option('--epochs <n>', 'epochs (or --steps)', positiveInt('--epochs'))
  .option('--steps <n>', 'optimizer steps, rounded up to whole epochs (default: 10 epochs, at least 150 steps)', positiveInt('--steps'))
  .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'))
  .option('--grad-accumulation <n>', 'gradient accumulation steps', positiveInt('--grad-accumulation'))
  .option('--lr <lr>', "learning rate, or 'auto' for a range test (default: the method's, see docs/defaults.md)", (v) => (v === 'auto' ? v : number('--lr')(v)))
  .option('--deterministic', 'the same metrics on every x86-64 CPU (AVX2 kernels; docs/reproducibility.md)')
  .option('--seed <n>', 'random seed', number('--seed'))
  .option('--output <dir>', 'run folder (checkpoints, metrics.jsonl, report, adapter)')
  .option('--resume', 'continue the run in the --output folder from its newest checkpoint (same configuration)')
  .option('--overwrite', 'replace the run held in the --output folder')
  .action(async (o: Record<string, unknown>) => {
    try {
      // The kernels read these when they first run, so they are set before any tensor exists.
      if (o['deterministic'] === true) useDeterministicKernels();
      const targets = typeof o['targets'] === 'string' ? (o['targets'].includes(',') || /^[\w.]+$/.test(o['targets']) && o['targets'] !== 'all-linear' ? o['targets'].split(',') : o['targets']) : undefined;
      const config = loadRunConfig(o['config'] as string | undefined, {
        model: o['model'], weights: o['weights'], 'data.source': o['data'], 'data.test': o['testData'], 'data.perClass': o['perClass'], 'data.testPerClass': o['testPerClass'],
        'data.ratio': o['ratio'], 'data.valFraction': o['valFraction'], method: o['method'], 'adapter.r': o['rank'], 'adapter.alpha': o['alpha'],
        'adapter.targets': targets, 'mona.dim': o['monaDim'], headFrom: o['headFrom'], 'data.imageSize': o['imageSize'], 'train.epochs': o['epochs'], 'train.steps': o['steps'], 'train.deterministic': o['deterministic'], 'train.batchSize': o['batchSize'], 'train.gradAccumulation': o['gradAccumulation'],
        'train.lr': o['lr'], 'train.seed': o['seed'], output: o['output'],
      });
      const s = await runTraining(config, console.log, { resume: o['resume'] === true, overwrite: o['overwrite'] === true });
      console.log(`test accuracy ${(100 * s.accuracy).toFixed(2)}%, weighted F1 ${(100 * s.weightedF1).toFixed(2)}%, mAP ${(100 * s.mAP).toFixed(2)}% — report in ${s.outputDir}/report.md`);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('demo')
  .description('nsfwjs MobileNetV2 on Fashion-MNIST (10 images per class, 10,000 test images): linear probe, LoRA, DoRA, full fine-tuning and scratch compared')
  .option('--per-class <n>', 'training images per class', positiveInt('--per-class'), 10)
  .option('--test-per-class <n>', 'cap on test images per class (default: the whole test set)', positiveInt('--test-per-class'))
  .option('--steps <n>', 'optimizer steps per method (default: graft\'s)', positiveInt('--steps'))
  .option('--methods <list>', 'comma-separated methods', (v) => {
    const list = v.split(',');
    for (const m of list) if (!isMethodName(m)) throw new InvalidArgumentError(`unknown method '${m}'; one of ${methodNames().join(', ')}`);
    return list;
  }, ['linear-probe', 'lora', 'dora', 'full', 'scratch'])
  .option('--output <dir>', 'folder for the runs and the comparison table', 'runs/demo')
  .option('--seed <n>', 'random seed', number('--seed'), 0)
  .action(async (o: { perClass: number; testPerClass?: number; steps?: number; methods: string[]; output: string; seed: number }) => {
    try {
      await runDemo(o);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('eval')
  .description('evaluate a finished run on a labelled dataset (every metric, written as eval.md / eval.json in the run folder)')
  .argument('<run>', 'the run folder of graft train')
  .requiredOption('--data <source>', "image folder, .csv/.jsonl manifest, or 'fashion-mnist'")
  .option('--test-per-class <n>', 'cap on images per class (a stratified sample, seed 0)', positiveInt('--test-per-class'))
  .option('--rank <b>', 'evaluate at rank b (methods trained for several ranks: dylora); default: the rank chosen after training', positiveInt('--rank'))
  .action(async (run: string, o: { data: string; rank?: number; testPerClass?: number }) => {
    try {
      await evalCommand(run, o.data, console.log, { rank: o.rank, testPerClass: o.testPerClass });
    } catch (e) {
      fail(e);
    }
  });

program
  .command('predict')
  .description('labels and class scores for image files or folders')
  .argument('<run>', 'the run folder of graft train')
  .argument('<images...>', 'image files or folders')
  .option('--format <format>', 'json or csv', (v) => {
    if (v !== 'json' && v !== 'csv') throw new InvalidArgumentError(`--format must be json or csv; got '${v}'`);
    return v;
  }, 'json')
  .action(async (run: string, images: string[], o: { format: 'json' | 'csv' }) => {
    try {
      await predictCommand(run, images, o.format);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('merge')
  .description("merge a run's LoRA/DoRA adapter into its backbone and save the model as safetensors")
  .argument('<run>', 'the run folder of graft train')
  .requiredOption('--output <file>', 'the merged model file (.safetensors)')
  .action(async (run: string, o: { output: string }) => {
    try {
      await mergeCommand(run, o.output);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('inspect')
  .description('a model\'s layers, the names usable as adapter targets and parameter counts; or an adapter (or run) folder: method, rank and parameters per layer')
  .argument('[model]', 'a model name, an adapter folder, or a run folder (its adapter/)')
  .option('--list', 'list the model names')
  .action((target: string | undefined, o: { list?: boolean }) => {
    try {
      inspectCommand(target, o);
    } catch (e) {
      fail(e);
    }
  });

await program.parseAsync();
