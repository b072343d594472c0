// Resolving a data source name to a dataset and the train/val/test split the config asks for.
import { existsSync, statSync } from 'node:fs';
import { imageFolder, inMemoryDataset, manifest, type LabeledDataset, type Sample } from '../data/dataset.js';
import { FASHION_MNIST_CLASSES, loadFashionMnist } from '../data/idx.js';
import { stratifiedSplit } from '../data/splits.js';
import type { RunConfig } from './config.js';
import { defaultValFraction } from '../train/defaults.js';

export function openDataset(source: string, split: 'train' | 'test' = 'train'): LabeledDataset {
  if (source === 'fashion-mnist' || source.startsWith('fashion-mnist:')) {
    const dir = source.includes(':') ? source.slice(source.indexOf(':') + 1) : undefined;
    const { images, labels } = loadFashionMnist(split, dir);
    return inMemoryDataset(FASHION_MNIST_CLASSES, images.data, images.shape, labels);
  }
  if (!existsSync(source)) throw new Error(`data source ${source} does not exist (give an image folder, a .csv/.jsonl manifest, or 'fashion-mnist')`);
  return statSync(source).isDirectory() ? imageFolder(source) : manifest(source);
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
export function prepareData(c: RunConfig): PreparedData {
  const source = openDataset(c.data.source, 'train');
  const testSource = c.data.test ? openDataset(c.data.test, 'test') : c.data.source.startsWith('fashion-mnist') ? openDataset(c.data.source, 'test') : null;
  const seed = c.train.seed;
  let trainSide: Sample[];
  let testSamples: Sample[];
  if (c.data.perClass !== undefined || c.data.ratio !== undefined) {
    const s = stratifiedSplit(source.samples, { seed, perClass: c.data.perClass, ratio: c.data.ratio, testPerClass: c.data.testPerClass });
    trainSide = s.train;
    testSamples = s.test;
  } else {
    trainSide = source.samples;
    testSamples = [];
  }
  let test = { dataset: source, samples: testSamples };
  if (testSource) {
    const all = testSource.samples;
    const capped = c.data.testPerClass !== undefined ? stratifiedSplit(all, { seed, perClass: 0, testPerClass: c.data.testPerClass }).test : all;
    test = { dataset: testSource, samples: capped };
  }
  const counts = source.classes.map((_, label) => trainSide.filter((s) => s.label === label).length);
  const auto = c.data.valFraction === undefined ? defaultValFraction(counts) : { valFraction: c.data.valFraction, note: null };
  const valFraction = auto.valFraction;
  const v = valFraction > 0 ? stratifiedSplit(trainSide, { seed: seed + 1, ratio: [1 - valFraction, valFraction] }) : null;
  // stratifiedSplit's "train" side of a [rest, val] ratio is the validation part.
  const train = v ? v.test : trainSide;
  const val = v ? v.train : [];
  if (test.samples.length === 0) throw new Error('no test images: use data.perClass/data.ratio on a larger source, or give data.test');
  return { train: { dataset: source, samples: train }, val: { dataset: source, samples: val }, test, classes: source.classes, valFraction, valNote: auto.note };
}
