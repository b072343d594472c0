// Running a classifier over a dataset: predictions, softmax scores and every metric, plus
// latency at batch 1 and throughput at the best batch size.
import { performance } from 'node:perf_hooks';
import type { Module } from '../nn/module.js';
import type { BatchSource } from '../data/batch.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { softmax } from '../ops/norm.js';
import { randn } from '../ops/creation.js';
import { classificationReport, type ClassificationReport } from './metrics.js';
import { PeftModel } from '../adapters/peft-model.js';
import { withFoldedWeights } from '../nn/layers.js';

export interface Predictions {
  labels: number[];
  predictions: number[];
  /** Row-major (N, numClasses) softmax probabilities. */
  scores: Float32Array;
  seconds: number;
}

/** Forward passes over every batch of `data` (epoch 0, no augmentation expected), in eval mode. */
export async function predict(model: Module, data: BatchSource, numClasses: number): Promise<Predictions> {
  // Adapters are merged for inference, so it costs what the base model costs.
  if (model instanceof PeftModel) return model.withMerged(() => predictUnmerged(model, data, numClasses));
  return predictUnmerged(model, data, numClasses);
}

function predictUnmerged(model: Module, data: BatchSource, numClasses: number): Promise<Predictions> {
  // Weights do not change during evaluation: conv + BatchNorm pairs are folded once.
  return withFoldedWeights(() => predictEval(model, data, numClasses));
}

async function predictEval(model: Module, data: BatchSource, numClasses: number): Promise<Predictions> {
  model.eval();
  const labels: number[] = [];
  const predictions: number[] = [];
  const scores: number[] = [];
  const t0 = performance.now();
  for await (const batch of data.epoch(0, 0)) {
    const probs = noGrad(() => tidy(() => softmax(model.forward(batch.x), -1).toArray()));
    const n = batch.x.shape[0]!;
    if (probs.length !== n * numClasses) throw new Error(`evaluate: the model gives ${probs.length / n} outputs per image but the dataset has ${numClasses} classes`);
    const y = batch.y.toArray();
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < numClasses; c++) if (probs[i * numClasses + c]! > probs[i * numClasses + best]!) best = c;
      predictions.push(best);
      labels.push(y[i]!);
      for (let c = 0; c < numClasses; c++) scores.push(probs[i * numClasses + c]!);
    }
    batch.x.dispose();
    batch.y.dispose();
  }
  return { labels, predictions, scores: Float32Array.from(scores), seconds: (performance.now() - t0) / 1000 };
}

export async function evaluate(model: Module, data: BatchSource, numClasses: number): Promise<{ report: ClassificationReport; predictions: Predictions }> {
  const p = await predict(model, data, numClasses);
  return { report: classificationReport(p.labels, p.predictions, numClasses, p.scores), predictions: p };
}

export interface SpeedReport {
  latencyMs: number;
  throughput: number;
  bestBatch: number;
}

/** Median latency of a batch-1 forward pass, and the best images/s over the given batch sizes. */
export function measureSpeed(model: Module, inputShape: readonly [number, number, number], opts: { batches?: number[]; repeats?: number } = {}): SpeedReport {
  return withFoldedWeights(() => measureEval(model, inputShape, opts));
}

function measureEval(model: Module, inputShape: readonly [number, number, number], opts: { batches?: number[]; repeats?: number }): SpeedReport {
  model.eval();
  const repeats = opts.repeats ?? 5;
  const time = (b: number) => noGrad(() => tidy(() => {
    const x = randn([b, ...inputShape]);
    model.forward(x).dispose(); // warm-up
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      tidy(() => model.forward(x).toArray());
      times.push(performance.now() - t0);
    }
    times.sort((a, c) => a - c);
    return times[Math.floor(times.length / 2)]!;
  }));
  const latencyMs = time(1);
  let best = { throughput: 1000 / latencyMs, bestBatch: 1 };
  for (const b of opts.batches ?? [8, 32]) {
    const tp = (1000 * b) / time(b);
    if (tp > best.throughput) best = { throughput: tp, bestBatch: b };
  }
  return { latencyMs, ...best };
}
