#!/usr/bin/env node
// The graft command line.
import { Command, InvalidArgumentError } from 'commander';
import { isMethodName, methodNames } from '../adapters/apply.js';
import '../backends/all.js';
import '../models/all.js';
import { ConfigError, loadRunConfig } from './config.js';
import { PERTURBATIONS, PERTURBATION_DEFAULTS, type PerturbationKind } from '../data/perturb.js';
import { exitCodeOf } from '../errors.js';
import { runDemo } from './demo.js';
import { composeFashionMnistSegmentation } from '../data/compose-segmentation.js';
import { runTraining } from './train-command.js';
import { reportCommand, studyCommand, workerCommand } from './study-command.js';
import { useDeterministicKernels } from '../train/deterministic.js';
import { evalCommand, inspectCommand, mergeCommand, predictCommand } from './commands.js';
import { registerServeCommand } from './serve-command.js';
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
  .option('--task <task>', "'classification' (default) or 'segmentation' (--data: a folder of images and masks, docs/segmentation.md)", (v) => {
    if (v !== 'classification' && v !== 'segmentation') throw new InvalidArgumentError(`--task must be classification or segmentation; got '${v}'`);
    return v;
  })
  .option('--seg-head <head>', "segmentation head: 'uper' (light UPerNet over four feature levels, default) or 'linear' (DINOv2's linear head)", (v) => {
    if (v !== 'uper' && v !== 'linear') throw new InvalidArgumentError(`--seg-head must be uper or linear; got '${v}'`);
    return v;
  })
  .option('--seg-channels <n>', 'width of the uper head (default 64)', positiveInt('--seg-channels'))
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
  .option('--quantize <type>', "4-bit base weights (QLoRA): 'nf4' or 'fp4' (bitsandbytes' formats; adapter methods only)")
  .option('--double-quant', 'with --quantize: quantise the block scales too (8 bits, blocks of 256)')
  .option('--quant-block <n>', 'with --quantize: elements per scale block, a power of two from 32 to 4096 (default 64)', positiveInt('--quant-block'))
  .option('--precision <p>', "products with frozen weights in training: 'fp32' (default) or 'bf16' (frozen Linear and 4-bit layers on bf16 operands, fp32 accumulation; needs AVX512_BF16, else fp32 with a notice)")
  .option('--gradient-checkpointing', 'recompute each transformer block (ViTs, Swin) or stage (ResNet, MobileNetV2, ConvNeXt, RegNet) in the backward pass instead of keeping its activations: less memory, one more forward')
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
  .option('--report-to <list>', "where logs go besides metrics.jsonl: 'tensorboard' (event files in <output>/tensorboard) or 'none'", (v) => {
    const list = v.split(',').filter((x) => x && x !== 'none');
    for (const x of list) if (x !== 'tensorboard') throw new InvalidArgumentError(`--report-to: '${x}' is not supported; give 'tensorboard' or 'none'`);
    return list;
  })
  .option('--resume', 'continue the run in the --output folder from its newest checkpoint (same configuration)')
  .option('--overwrite', 'replace the run held in the --output folder')
  .option('--rank-min <r>', 'DRA: the lowest rank a layer is given (dra.rMin, default 2)', positiveInt('--rank-min'))
  .option('--rank-max <r>', 'DRA: the highest rank a layer is given (dra.rMax, default 16)', positiveInt('--rank-max'))
  .option('--dra-weights <w_imp,w_bias>', 'DRA: the weights of layer dissimilarity and parameter share in the score (dra.wImp, dra.wBias; default 0.15,0.85)', (v) => {
    const parts = v.split(',').map((x) => Number(x.trim()));
    if (parts.length !== 2 || parts.some((x) => !Number.isFinite(x) || x < 0)) throw new InvalidArgumentError(`--dra-weights takes two numbers ≥ 0, w_imp,w_bias (such as 0.15,0.85); got '${v}'`);
    return parts;
  })
  .action(async (o: Record<string, unknown>) => {
    try {
      // The kernels read these when they first run, so they are set before any tensor exists.
      if (o['deterministic'] === true) useDeterministicKernels();
      const targets = typeof o['targets'] === 'string' ? (o['targets'].includes(',') || /^[\w.]+$/.test(o['targets']) && o['targets'] !== 'all-linear' ? o['targets'].split(',') : o['targets']) : undefined;
      const config = loadRunConfig(o['config'] as string | undefined, {
        task: o['task'], 'segmentation.head': o['segHead'], 'segmentation.channels': o['segChannels'],
        model: o['model'], weights: o['weights'], 'data.source': o['data'], 'data.test': o['testData'], 'data.perClass': o['perClass'], 'data.testPerClass': o['testPerClass'],
        'data.ratio': o['ratio'], 'data.valFraction': o['valFraction'], method: o['method'], 'adapter.r': o['rank'], 'adapter.alpha': o['alpha'],
        'adapter.targets': targets, 'mona.dim': o['monaDim'], headFrom: o['headFrom'], 'data.imageSize': o['imageSize'], 'train.epochs': o['epochs'], 'train.steps': o['steps'], 'train.deterministic': o['deterministic'], 'train.batchSize': o['batchSize'], 'train.gradAccumulation': o['gradAccumulation'],
        'train.lr': o['lr'], 'train.seed': o['seed'], output: o['output'], reportTo: o['reportTo'],
        'dra.rMin': o['rankMin'], 'dra.rMax': o['rankMax'], 'dra.wImp': (o['draWeights'] as number[] | undefined)?.[0], 'dra.wBias': (o['draWeights'] as number[] | undefined)?.[1],
        'train.gradientCheckpointing': o['gradientCheckpointing'], 'train.precision': o['precision'],
        'quantize.type': o['quantize'], 'quantize.doubleQuant': o['doubleQuant'], 'quantize.blocksize': o['quantBlock'],
      });
      const draFlags = ['rankMin', 'rankMax', 'draWeights'].filter((k) => o[k] !== undefined);
      if (draFlags.length && config.method !== 'dra') {
        throw new ConfigError(`${draFlags.map((k) => `--${k.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`)}`).join(', ')} set DRA's options, but the method is ${config.method}; add --method dra or drop them`);
      }
      if (o['monaDim'] !== undefined && config.method !== 'mona') {
        throw new ConfigError(`--mona-dim sets Mona's inner width, but the method is ${config.method}; add --method mona or drop it`);
      }
      if (config.task === 'segmentation') {
        const s = await runTraining({ ...config, task: 'segmentation' }, console.log, { resume: o['resume'] === true, overwrite: o['overwrite'] === true });
        console.log(`test mIoU ${(100 * s.mIoU).toFixed(2)}%, pixel accuracy ${(100 * s.pixelAccuracy).toFixed(2)}%, mean accuracy ${(100 * s.meanAccuracy).toFixed(2)}% — report in ${s.outputDir}/report.md`);
        return;
      }
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
  .command('study')
  .description('train every cell of a study file (a grid of run configurations × seeds) and write its tables, pictures and report.html')
  .argument('<file>', 'the study file (JSON: base, grid, baselines, seeds; see docs/studies.md)')
  .option('--output <dir>', "the study's folder (default: the file's \"output\", else runs/<name>)")
  .option('--queue <url>', 'redis://HOST:PORT: put the cells on a BullMQ queue for graft worker processes (the study folder shared by all machines) and wait for them')
  .option('--queue-name <name>', 'the BullMQ queue (default graft-studies)')
  .option('--status', 'show each cell: done, running (on which worker), waiting or failed')
  .action(async (file: string, o: { output?: string; queue?: string; queueName?: string; status?: boolean }) => {
    try {
      await studyCommand(file, o);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('worker')
  .description("take study cells from a BullMQ queue and train them into the study's shared folder")
  .requiredOption('--queue <url>', 'redis://HOST:PORT of the queue graft study --queue fills')
  .option('--queue-name <name>', 'the BullMQ queue (default graft-studies)')
  .option('--lock-seconds <s>', "how long a cell's job lock lasts unrenewed: a killed worker's cell goes to another worker after this (default 300)", positiveInt('--lock-seconds'))
  .option('--until-empty', 'exit once no cell is waiting or running (default: wait for more cells)')
  .action(async (o: { queue: string; queueName?: string; lockSeconds?: number; untilEmpty?: boolean }) => {
    try {
      await workerCommand(o);
      process.exit(0);
    } catch (e) {
      fail(e);
    }
  });

program
  .command('report')
  .description('write report.html (tables, pictures, configuration, machine) and figures/ for a run folder or a study folder')
  .argument('<dir>', 'a run folder of graft train or a study folder of graft study')
  .action(async (dir: string) => {
    try {
      await reportCommand(dir);
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
  .option('--perturb <kinds>', `robustness: also evaluate under each of these test-time perturbations, comma-separated (${PERTURBATIONS.join(', ')})`, (v) => {
    const kinds = v.split(',').map((k) => k.trim());
    for (const k of kinds) if (!(PERTURBATIONS as readonly string[]).includes(k)) throw new InvalidArgumentError(`unknown perturbation '${k}'; one of ${PERTURBATIONS.join(', ')}`);
    return kinds as PerturbationKind[];
  })
  .option('--noise-std <s>', `noise: std of the Gaussian noise on [0, 1] pixel values (default ${PERTURBATION_DEFAULTS.noise})`, number('--noise-std'))
  .option('--crop-fraction <f>', `crop: side of the random crop box as a fraction of the image side (default ${PERTURBATION_DEFAULTS.crop})`, number('--crop-fraction'))
  .option('--jitter <j>', `jitter: brightness, contrast and saturation factors uniform in [1 - j, 1 + j] (default ${PERTURBATION_DEFAULTS.jitter})`, number('--jitter'))
  .option('--rotation <deg>', `rotation: angle uniform in [-deg, deg] (default ${PERTURBATION_DEFAULTS.rotation})`, number('--rotation'))
  .option('--perturb-seed <n>', 'seed of the perturbations (default 0)', number('--perturb-seed'))
  .action(async (run: string, o: { data: string; rank?: number; testPerClass?: number; perturb?: PerturbationKind[]; noiseStd?: number; cropFraction?: number; jitter?: number; rotation?: number; perturbSeed?: number }) => {
    try {
      const given: Record<PerturbationKind, number | undefined> = { noise: o.noiseStd, crop: o.cropFraction, jitter: o.jitter, rotation: o.rotation };
      const flagOf: Record<PerturbationKind, string> = { noise: '--noise-std', crop: '--crop-fraction', jitter: '--jitter', rotation: '--rotation' };
      for (const k of PERTURBATIONS) if (given[k] !== undefined && !o.perturb?.includes(k)) throw new ConfigError(`${flagOf[k]} sets the ${k} perturbation's severity; add ${k} to --perturb`);
      const perturb = o.perturb?.map((kind) => ({ kind, severity: given[kind] ?? PERTURBATION_DEFAULTS[kind] }));
      await evalCommand(run, o.data, console.log, { rank: o.rank, testPerClass: o.testPerClass, perturb, perturbSeed: o.perturbSeed });
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
  .option('--output-dir <dir>', 'segmentation runs: where the mask and overlay PNGs go (default RUN/predictions)')
  .action(async (run: string, images: string[], o: { format: 'json' | 'csv'; outputDir?: string }) => {
    try {
      await predictCommand(run, images, o.format, undefined, { outputDir: o.outputDir });
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

program
  .command('compose-segmentation')
  .description('a segmentation set composed from real Fashion-MNIST images: several items per canvas, each mask from its own pixels, labelled by its class (docs/segmentation.md)')
  .requiredOption('--output <dir>', 'the folder to write (images/, masks/, classes.txt; or the VOC layout)')
  .option('--count <n>', 'canvases', positiveInt('--count'), 200)
  .option('--size <n>', 'canvas side in pixels', positiveInt('--size'), 64)
  .option('--items <min,max>', 'items per canvas', (v) => {
    const parts = v.split(',').map(Number);
    if (parts.length !== 2 || !parts.every((n) => Number.isInteger(n) && n > 0) || parts[0]! > parts[1]!) throw new InvalidArgumentError(`--items must be min,max with 1 ≤ min ≤ max; got '${v}'`);
    return parts as [number, number];
  }, [2, 4] as [number, number])
  .option('--seed <n>', 'random seed', number('--seed'), 0)
  .option('--split <file>', "Fashion-MNIST file the items come from: 'train' or 'test'", (v) => {
    if (v !== 'train' && v !== 'test') throw new InvalidArgumentError(`--split must be train or test; got '${v}'`);
    return v;
  }, 'train')
  .option('--layout <layout>', "'graft' or 'voc'", (v) => {
    if (v !== 'graft' && v !== 'voc') throw new InvalidArgumentError(`--layout must be graft or voc; got '${v}'`);
    return v;
  }, 'graft')
  .option('--fashion-mnist <dir>', 'the IDX folder (default /usr/share/datasets/fashion-mnist)')
  .action(async (o: { output: string; count: number; size: number; items: [number, number]; seed: number; split: 'train' | 'test'; layout: 'graft' | 'voc'; fashionMnist?: string }) => {
    try {
      const r = await composeFashionMnistSegmentation({ output: o.output, count: o.count, size: o.size, items: o.items, seed: o.seed, split: o.split, layout: o.layout, dir: o.fashionMnist });
      console.log(`wrote ${r.files} canvases (${r.items} Fashion-MNIST items, ${r.classes.length} classes) to ${o.output}`);
    } catch (e) {
      fail(e instanceof RangeError ? new ConfigError(e.message) : e);
    }
  });

registerExportCommand(program, fail);
registerImportAdapterCommand(program, fail);
registerServeCommand(program, fail);

await program.parseAsync();
