// Resolving a data source name to a dataset, the checks every source passes before training or
// evaluation (two classes or more, every image readable or reported, every class with images,
// test classes matched to training classes by name), and the train/val/test split the config asks for.
import { existsSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { DataError } from '../errors.js';
import { imageFolder, inMemoryDataset, manifest, type LabeledDataset, type Sample } from '../data/dataset.js';
import { FASHION_MNIST_CLASSES, loadFashionMnist } from '../data/idx.js';
import { stratifiedSplit } from '../data/splits.js';
import type { RunConfig } from './config.js';
import { defaultValFraction } from '../train/defaults.js';

const MANIFEST_EXTENSIONS = new Set(['.csv', '.jsonl', '.ndjson']);

export function openDataset(source: string, split: 'train' | 'test' = 'train'): LabeledDataset {
  if (source === 'fashion-mnist' || source.startsWith('fashion-mnist:')) {
    const dir = source.includes(':') ? source.slice(source.indexOf(':') + 1) : undefined;
    const { images, labels } = loadFashionMnist(split, dir);
    return inMemoryDataset(FASHION_MNIST_CLASSES, images.data, images.shape, labels);
  }
  if (!existsSync(source)) throw new DataError(`data source ${source} does not exist (give an image folder, a .csv/.jsonl manifest, or 'fashion-mnist')`);
  if (statSync(source).isDirectory()) return imageFolder(source);
  if (!MANIFEST_EXTENSIONS.has(extname(source).toLowerCase())) {
    throw new DataError(`data source ${source} is a file but not a manifest (.csv, .jsonl); give an image folder (one subfolder per class) or a manifest listing path and label`);
  }
  return manifest(source);
}

/**
 * The readable samples of `ds`: each file whose header does not decode is reported once with its
 * reason and left out, so it counts neither toward per-class numbers nor toward the totals.
 */
async function readableSamples(ds: LabeledDataset, samples: readonly Sample[], report: (file: string, reason: string) => void): Promise<Sample[]> {
  const check = ds.check;
  if (!check) return [...samples];
  const ok: boolean[] = new Array<boolean>(samples.length);
  const chunk = 64;
  for (let i = 0; i < samples.length; i += chunk) {
    const part = samples.slice(i, i + chunk);
    const reasons = await Promise.all(part.map((s) => check.call(ds, s)));
    reasons.forEach((r, j) => {
      ok[i + j] = r === null;
      if (r !== null) report(String(part[j]!.source), r);
    });
  }
  return samples.filter((_, i) => ok[i]);
}

export interface CheckedDataset {
  dataset: LabeledDataset;
  samples: Sample[];
}

/**
 * Opens `source` and checks it: at least two classes, every file reported (skipped files with their
 * reason), every class left with at least one readable image. `role` names the source in messages.
 */
export async function openCheckedDataset(source: string, split: 'train' | 'test', report: (file: string, reason: string) => void, role = 'data source'): Promise<CheckedDataset> {
  const dataset = openDataset(source, split);
  for (const s of dataset.skipped) report(s.file, s.reason);
  if (dataset.classes.length < 2) {
    throw new DataError(`${role} ${source} has ${dataset.classes.length} class (${dataset.classes.join(', ')}); a classifier needs at least two: add a folder (or label) per class`);
  }
  const samples = await readableSamples(dataset, dataset.samples, report);
  const empty = dataset.classes.filter((_, i) => !samples.some((s) => s.label === i));
  if (empty.length && split === 'train') {
    throw new DataError(`${role} ${source}: class${empty.length > 1 ? 'es' : ''} ${empty.map((c) => `'${c}'`).join(', ')} ha${empty.length > 1 ? 've' : 's'} no readable images; add images or remove ${empty.length > 1 ? 'them' : 'it'}`);
  }
  if (samples.length === 0) throw new DataError(`${role} ${source} has no readable images`);
  return { dataset, samples };
}

/**
 * `test`'s samples relabelled by class name into `classes` (the run's): a test class the run does
 * not know is an error; a run class the test set lacks is fine (it has no support).
 */
export function matchClasses(test: CheckedDataset, classes: readonly string[], source: string): Sample[] {
  const index = new Map(classes.map((c, i) => [c, i]));
  const unknown = test.dataset.classes.filter((c) => !index.has(c));
  if (unknown.length) {
    throw new DataError(`${source} has classes [${test.dataset.classes.join(', ')}] but the run's classes are [${classes.join(', ')}]; ${unknown.map((c) => `'${c}'`).join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not among them (classes are matched by name)`);
  }
  const map = test.dataset.classes.map((c) => index.get(c)!);
  return test.samples.map((s) => ({ source: s.source, label: map[s.label]! }));
}

export interface PreparedData {
  train: { dataset: LabeledDataset; samples: Sample[] };
  val: { dataset: LabeledDataset; samples: Sample[] };
  test: { dataset: LabeledDataset; samples: Sample[] };
  classes: string[];
  /** The validation share used (the default's when data.valFraction is left out), and why there is none when so. */
  valFraction: number;
  valNote: string | null;
}

/** Applies the config's split rules; Fashion-MNIST's test side is its own 10,000-image test set. */
export async function prepareData(c: RunConfig, report: (file: string, reason: string) => void): Promise<PreparedData> {
  const source = await openCheckedDataset(c.data.source, 'train', report, 'data.source');
  const classes = source.dataset.classes;
  const testSource = c.data.test ? await openCheckedDataset(c.data.test, 'test', report, 'data.test') : c.data.source.startsWith('fashion-mnist') ? await openCheckedDataset(c.data.source, 'test', report) : null;
  const seed = c.train.seed;
  let trainSide: Sample[];
  let testSamples: Sample[];
  if (c.data.perClass !== undefined || c.data.ratio !== undefined) {
    const counts = classes.map((_, i) => source.samples.filter((s) => s.label === i).length);
    const short = c.data.perClass !== undefined ? classes.filter((_, i) => counts[i]! < c.data.perClass!) : [];
    if (short.length) {
      throw new DataError(`data.perClass is ${c.data.perClass} but ${short.map((n) => `'${n}' has ${counts[classes.indexOf(n)]}`).join(', ')} readable image${short.length > 1 || counts[classes.indexOf(short[0]!)] !== 1 ? 's' : ''}; lower --per-class or add images`);
    }
    const s = stratifiedSplit(source.samples, { seed, perClass: c.data.perClass, ratio: c.data.ratio, testPerClass: c.data.testPerClass });
    trainSide = s.train;
    testSamples = s.test;
  } else {
    trainSide = source.samples;
    testSamples = [];
  }
  let test = { dataset: source.dataset, samples: testSamples };
  if (testSource) {
    const all = matchClasses(testSource, classes, c.data.test ?? c.data.source);
    const capped = c.data.testPerClass !== undefined ? stratifiedSplit(all, { seed, perClass: 0, testPerClass: c.data.testPerClass }).test : all;
    test = { dataset: testSource.dataset, samples: capped };
  }
  const counts = classes.map((_, label) => trainSide.filter((s) => s.label === label).length);
  const auto = c.data.valFraction === undefined ? defaultValFraction(counts) : { valFraction: c.data.valFraction, note: null };
  const valFraction = auto.valFraction;
  const v = valFraction > 0 ? stratifiedSplit(trainSide, { seed: seed + 1, ratio: [1 - valFraction, valFraction] }) : null;
  // stratifiedSplit's "train" side of a [rest, val] ratio is the validation part.
  const train = v ? v.test : trainSide;
  const val = v ? v.train : [];
  if (test.samples.length === 0) throw new DataError('no test images: every image went to training; lower data.perClass, use data.ratio, or give data.test');
  return { train: { dataset: source.dataset, samples: train }, val: { dataset: source.dataset, samples: val }, test, classes, valFraction, valNote: auto.note };
}
