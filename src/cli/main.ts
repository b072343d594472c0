#!/usr/bin/env node
// The graft command line.
import { Command, InvalidArgumentError } from 'commander';
import { isMethodName, methodNames } from '../adapters/apply.js';
import '../backends/all.js';
import '../models/all.js';
import { ConfigError, loadRunConfig } from './config.js';
import { runDemo } from './demo.js';
import { runTraining } from './train-command.js';
import { evalCommand, inspectCommand, mergeCommand, predictCommand } from './commands.js';
import { registerExportCommand } from './export-command.js';
import { registerImportAdapterCommand } from './import-adapter-command.js';

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

/** Reports an error: status 2 for bad input (flags, config), 1 for failures while running. */
function fail(e: unknown): never {
  const err = e as Error;
  console.error(`graft: ${err.message}`);
  process.exit(err instanceof ConfigError || err instanceof InvalidArgumentError ? 2 : 1);
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
  .option('--val-fraction <f>', 'share of the training images held out for validation', number('--val-fraction'))
  .option('--method <name>', `one of ${methodNames().join(', ')}`)
  .option('--rank <r>', 'adapter rank (LoRA, DoRA)', positiveInt('--rank'))
  .option('--alpha <a>', 'adapter alpha (LoRA, DoRA: scaling alpha / r)', number('--alpha'))
  .option('--targets <names>', "comma-separated module names, a regex, or 'all-linear'")
  .option('--head-from <where>', "new head replaces 'classifier' (the last Linear) or everything after the pooled 'features'")
  .option('--image-size <n>', 'input size (square); default: the model\'s own', positiveInt('--image-size'))
  .option('--epochs <n>', 'epochs', positiveInt('--epochs'))
  .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'))
  .option('--grad-accumulation <n>', 'gradient accumulation steps', positiveInt('--grad-accumulation'))
  .option('--lr <lr>', 'learning rate', number('--lr'))
  .option('--seed <n>', 'random seed', number('--seed'))
  .option('--output <dir>', 'run folder (checkpoints, metrics.jsonl, report, adapter)')
  .option('--resume', 'continue from the newest checkpoint in the run folder')
  .action(async (o: Record<string, unknown>) => {
    try {
      const targets = typeof o['targets'] === 'string' ? (o['targets'].includes(',') || /^[\w.]+$/.test(o['targets']) && o['targets'] !== 'all-linear' ? o['targets'].split(',') : o['targets']) : undefined;
      const config = loadRunConfig(o['config'] as string | undefined, {
        model: o['model'], weights: o['weights'], 'data.source': o['data'], 'data.test': o['testData'], 'data.perClass': o['perClass'],
        'data.ratio': o['ratio'], 'data.valFraction': o['valFraction'], method: o['method'], 'adapter.r': o['rank'], 'adapter.alpha': o['alpha'],
        'adapter.targets': targets, headFrom: o['headFrom'], 'data.imageSize': o['imageSize'], 'train.epochs': o['epochs'], 'train.batchSize': o['batchSize'], 'train.gradAccumulation': o['gradAccumulation'],
        'train.lr': o['lr'], 'train.seed': o['seed'], output: o['output'],
      });
      const s = await runTraining(config, console.log, { resume: o['resume'] === true });
      console.log(`test accuracy ${(100 * s.accuracy).toFixed(2)}%, weighted F1 ${(100 * s.weightedF1).toFixed(2)}%, mAP ${(100 * s.mAP).toFixed(2)}% — report in ${s.outputDir}/report.md`);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('demo')
  .description('nsfwjs MobileNetV2 on Fashion-MNIST (20 images per class, 10,000 test images): linear probe, LoRA, DoRA, full fine-tuning and scratch compared')
  .option('--per-class <n>', 'training images per class', positiveInt('--per-class'), 20)
  .option('--test-per-class <n>', 'cap on test images per class (default: the whole test set)', positiveInt('--test-per-class'))
  .option('--epochs <n>', 'epochs per method', positiveInt('--epochs'), 6)
  .option('--methods <list>', 'comma-separated methods', (v) => {
    const list = v.split(',');
    for (const m of list) if (!isMethodName(m)) throw new InvalidArgumentError(`unknown method '${m}'; one of ${methodNames().join(', ')}`);
    return list;
  }, ['linear-probe', 'lora', 'dora', 'full', 'scratch'])
  .option('--output <dir>', 'folder for the runs and the comparison table', 'runs/demo')
  .option('--seed <n>', 'random seed', number('--seed'), 0)
  .action(async (o: { perClass: number; testPerClass?: number; epochs: number; methods: string[]; output: string; seed: number }) => {
    try {
      await runDemo({ ...o, loraTargets: '.*(expand|project)' });
    } catch (e) {
      fail(e);
    }
  });

program
  .command('eval')
  .description('evaluate a finished run on a labelled dataset (every metric, written as eval.md / eval.json in the run folder)')
  .argument('<run>', 'the run folder of graft train')
  .requiredOption('--data <source>', "image folder, .csv/.jsonl manifest, or 'fashion-mnist'")
  .action(async (run: string, o: { data: string }) => {
    try {
      await evalCommand(run, o.data);
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
  .description('a model\'s layers, the names usable as LoRA targets and parameter counts; or an adapter folder')
  .argument('[model]', 'a model name or an adapter folder')
  .option('--list', 'list the model names')
  .action((target: string | undefined, o: { list?: boolean }) => {
    try {
      inspectCommand(target, o);
    } catch (e) {
      fail(e);
    }
  });

registerExportCommand(program, fail);
registerImportAdapterCommand(program, fail);

await program.parseAsync();
