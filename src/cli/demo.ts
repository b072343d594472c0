// `graft demo`: trains a small CNN from scratch on real Fashion-MNIST images with the tensor
// engine and reports accuracy on the full 10,000-image test set.
import { performance } from 'node:perf_hooks';
import { loadFashionMnist, FASHION_MNIST_CLASSES, type IdxArray } from '../data/idx.js';
import { Module } from '../nn/module.js';
import { BatchNorm2d, Conv2d, Linear, MaxPool2d } from '../nn/layers.js';
import { currentBackend } from '../backends/registry.js';
import { tensor } from '../ops/creation.js';
import { relu } from '../ops/elementwise.js';
import { crossEntropy } from '../ops/nn.js';
import { argmax } from '../ops/reduce.js';
import { reshape } from '../ops/layout.js';
import { AdamW } from '../train/optim.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { Generator } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';

class SmallCnn extends Module {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Conv2d;
  bn2: BatchNorm2d;
  pool: MaxPool2d;
  fc: Linear;
  constructor(numClasses: number, gen: Generator) {
    super();
    this.conv1 = this.module('conv1', new Conv2d(1, 32, 3, { padding: 1, bias: false, generator: gen }));
    this.bn1 = this.module('bn1', new BatchNorm2d(32));
    this.conv2 = this.module('conv2', new Conv2d(32, 64, 3, { padding: 1, bias: false, generator: gen }));
    this.bn2 = this.module('bn2', new BatchNorm2d(64));
    this.pool = this.module('pool', new MaxPool2d(2));
    this.fc = this.module('fc', new Linear(64 * 7 * 7, numClasses, { generator: gen }));
  }
  forward(x: Tensor): Tensor {
    let h = this.pool.forward(relu(this.bn1.forward(this.conv1.forward(x))));
    h = this.pool.forward(relu(this.bn2.forward(this.conv2.forward(h))));
    return this.fc.forward(reshape(h, [x.shape[0]!, -1]));
  }
}

export interface DemoOptions {
  perClass: number;
  epochs: number;
  batchSize: number;
  seed: number;
  dataDir?: string;
}

/** Picks `perClass` indices of each class with a seeded shuffle. */
function stratified(labels: Uint8Array, perClass: number, gen: Generator): number[] {
  const order = Array.from(labels.keys());
  for (let i = order.length - 1; i > 0; i--) {
    const j = gen.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const taken = new Map<number, number>();
  return order.filter((i) => {
    const c = labels[i]!;
    const n = taken.get(c) ?? 0;
    if (n >= perClass) return false;
    taken.set(c, n + 1);
    return true;
  });
}

function batchOf(images: IdxArray, labels: Uint8Array, idx: readonly number[]): { x: Tensor; y: Tensor } {
  const px = 28 * 28;
  const data = new Float32Array(idx.length * px);
  // Fashion-MNIST's own mean and std over the training set.
  idx.forEach((k, b) => {
    for (let i = 0; i < px; i++) data[b * px + i] = (images.data[k * px + i]! / 255 - 0.286) / 0.353;
  });
  return {
    x: tensor(data, [idx.length, 1, 28, 28]),
    y: tensor(Int32Array.from(idx, (k) => labels[k]!), [idx.length]),
  };
}

export function runDemo(opts: DemoOptions, log: (line: string) => void = console.log): { accuracy: number; trainSeconds: number } {
  const gen = new Generator(opts.seed);
  const train = loadFashionMnist('train', opts.dataDir);
  const test = loadFashionMnist('test', opts.dataDir);
  const chosen = stratified(train.labels, opts.perClass, gen);
  log(`graft demo: Fashion-MNIST, ${chosen.length} training images (${opts.perClass} per class), ${test.labels.length} test images, backend ${currentBackend().name}`);
  const model = new SmallCnn(FASHION_MNIST_CLASSES.length, gen);
  const opt = new AdamW(model.parameters(), { lr: 2e-3, weightDecay: 1e-4 });
  const t0 = performance.now();
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    const order = [...chosen];
    for (let i = order.length - 1; i > 0; i--) {
      const j = gen.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let lossSum = 0;
    let steps = 0;
    model.train();
    for (let s = 0; s < order.length; s += opts.batchSize) {
      lossSum += tidy(() => {
        const { x, y } = batchOf(train.images, train.labels, order.slice(s, s + opts.batchSize));
        opt.zeroGrad();
        const loss = crossEntropy(model.forward(x), y);
        loss.backward();
        opt.step();
        return loss.item();
      });
      steps++;
    }
    log(`  epoch ${epoch + 1}/${opts.epochs}  loss ${(lossSum / steps).toFixed(4)}  ${(((epoch + 1) * order.length) / ((performance.now() - t0) / 1000)).toFixed(0)} img/s`);
  }
  const trainSeconds = (performance.now() - t0) / 1000;
  model.eval();
  let correct = 0;
  const t1 = performance.now();
  noGrad(() => {
    for (let s = 0; s < test.labels.length; s += 250) {
      const idx = Array.from({ length: Math.min(250, test.labels.length - s) }, (_, i) => s + i);
      correct += tidy(() => {
        const { x } = batchOf(test.images, test.labels, idx);
        const pred = argmax(model.forward(x), 1).toArray();
        return idx.reduce((n, k, i) => n + (pred[i] === test.labels[k] ? 1 : 0), 0);
      });
    }
  });
  const evalSeconds = (performance.now() - t1) / 1000;
  const accuracy = correct / test.labels.length;
  log('');
  log('| model | train images | epochs | train time (s) | test images | test accuracy | eval img/s |');
  log('| --- | --- | --- | --- | --- | --- | --- |');
  log(`| small CNN from scratch | ${chosen.length} | ${opts.epochs} | ${trainSeconds.toFixed(1)} | ${test.labels.length} | ${(100 * accuracy).toFixed(2)}% | ${(test.labels.length / evalSeconds).toFixed(0)} |`);
  model.dispose();
  return { accuracy, trainSeconds };
}
