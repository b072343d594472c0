// Stratified, seeded splits: k images per class, or a test:train ratio such as the papers' 98:1,
// with a validation split carved from the training side.
import { Generator } from '../tensor/random.js';
import type { Sample } from './dataset.js';

export interface SplitOptions {
  seed: number;
  /** Training images per class (the rest is test). */
  perClass?: number;
  /** test:train, e.g. [98, 1]. */
  ratio?: [number, number];
  /** Fraction of the training side held out for validation (stratified), default 0. */
  valFraction?: number;
  /** Cap on test images per class (after the train split), for quick runs. */
  testPerClass?: number;
}

export interface Split {
  train: Sample[];
  val: Sample[];
  test: Sample[];
}

export function shuffled<T>(items: readonly T[], gen: Generator): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = gen.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function stratifiedSplit(samples: readonly Sample[], opts: SplitOptions): Split {
  if ((opts.perClass === undefined) === (opts.ratio === undefined)) throw new Error('split: give exactly one of perClass or ratio');
  const gen = new Generator(opts.seed);
  const byClass = new Map<number, Sample[]>();
  for (const s of samples) {
    if (!byClass.has(s.label)) byClass.set(s.label, []);
    byClass.get(s.label)!.push(s);
  }
  const out: Split = { train: [], val: [], test: [] };
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    const items = shuffled(byClass.get(label)!, gen);
    let nTrain: number;
    if (opts.perClass !== undefined) {
      if (items.length < opts.perClass) throw new Error(`split: class ${label} has ${items.length} images, fewer than perClass=${opts.perClass}`);
      nTrain = opts.perClass;
    } else {
      const [test, train] = opts.ratio!;
      nTrain = Math.max(1, Math.round((items.length * train) / (test + train)));
    }
    const trainSide = items.slice(0, nTrain);
    const nVal = Math.round(trainSide.length * (opts.valFraction ?? 0));
    out.val.push(...trainSide.slice(0, nVal));
    out.train.push(...trainSide.slice(nVal));
    const rest = items.slice(nTrain);
    out.test.push(...(opts.testPerClass !== undefined ? rest.slice(0, opts.testPerClass) : rest));
  }
  return out;
}
