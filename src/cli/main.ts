#!/usr/bin/env node
// The graft command line.
import { Command, InvalidArgumentError } from 'commander';
import { runDemo } from './demo.js';

function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer; got '${v}'`);
    return n;
  };
}

const program = new Command('graft')
  .description('Parameter-efficient fine-tuning of vision models')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

program
  .command('demo')
  .description('train a small CNN on real Fashion-MNIST images and report test accuracy')
  .option('--per-class <n>', 'training images per class', positiveInt('--per-class'), 500)
  .option('--epochs <n>', 'training epochs', positiveInt('--epochs'), 4)
  .option('--batch-size <n>', 'batch size', positiveInt('--batch-size'), 32)
  .option('--seed <n>', 'random seed', (v) => Number(v), 0)
  .option('--data-dir <dir>', 'folder with the Fashion-MNIST IDX files')
  .action((o: { perClass: number; epochs: number; batchSize: number; seed: number; dataDir?: string }) => {
    try {
      runDemo(o);
    } catch (e) {
      console.error(`graft demo: ${(e as Error).message}`);
      process.exit(1);
    }
  });

program.parse();
