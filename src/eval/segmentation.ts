// Segmentation metrics from a confusion matrix over pixels (ignored pixels left out), as
// mmsegmentation's: IoU_c = TP / (TP + FP + FN), accuracy_c = TP / (TP + FN), mIoU and mean
// accuracy the means over the classes where they are defined (a class absent from both the
// labels and the predictions has no IoU; one absent from the labels has no accuracy), pixel
// accuracy = Σ TP / labelled pixels. And the evaluation of a model on a segmentation source.
import type { Module } from '../nn/module.js';
import type { BatchSource } from '../data/batch.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { argmax } from '../ops/reduce.js';
import { IGNORE_INDEX } from '../data/segmentation.js';

export class PixelConfusion {
  /** counts[label · C + prediction] */
  readonly counts: Float64Array;
  constructor(readonly numClasses: number) {
    this.counts = new Float64Array(numClasses * numClasses);
  }
  /** Adds pixels: predicted classes and labels of the same length; labels equal to `ignore` are left out. */
  add(pred: ArrayLike<number>, label: ArrayLike<number>, ignore = IGNORE_INDEX): void {
    if (pred.length !== label.length) throw new RangeError(`PixelConfusion.add: ${pred.length} predictions for ${label.length} labels`);
    const c = this.numClasses;
    for (let i = 0; i < label.length; i++) {
      const y = label[i]!;
      if (y === ignore) continue;
      if (y < 0 || y >= c) throw new RangeError(`PixelConfusion.add: label ${y} is outside [0, ${c})`);
      this.counts[y * c + pred[i]!]! += 1;
    }
  }
}

export interface SegmentationReport {
  mIoU: number;
  pixelAccuracy: number;
  meanAccuracy: number;
  /** Per class: IoU and accuracy (null where undefined), labelled pixels. */
  perClass: { name: string; iou: number | null; accuracy: number | null; pixels: number }[];
  pixels: number;
}

const meanOf = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0;
};

export function segmentationReport(conf: PixelConfusion, classes: readonly string[]): SegmentationReport {
  const c = conf.numClasses;
  let correct = 0;
  let total = 0;
  const perClass = classes.slice(0, c).map((name, k) => {
    let gt = 0;
    let predicted = 0;
    for (let j = 0; j < c; j++) {
      gt += conf.counts[k * c + j]!;
      predicted += conf.counts[j * c + k]!;
    }
    const tp = conf.counts[k * c + k]!;
    correct += tp;
    total += gt;
    const union = gt + predicted - tp;
    return { name, iou: union > 0 ? tp / union : null, accuracy: gt > 0 ? tp / gt : null, pixels: gt };
  });
  return {
    mIoU: meanOf(perClass.map((p) => p.iou)),
    pixelAccuracy: total > 0 ? correct / total : 0,
    meanAccuracy: meanOf(perClass.map((p) => p.accuracy)),
    perClass,
    pixels: total,
  };
}

/** Runs `model` (logits (B, C, H, W) at the masks' size) over `source` and scores its argmax per pixel. */
export async function evaluateSegmentation(model: Module, source: BatchSource, classes: readonly string[], onBatch?: (pred: Int32Array, batch: number) => void): Promise<SegmentationReport> {
  const conf = new PixelConfusion(classes.length);
  model.eval();
  let b = 0;
  for await (const batch of source.epoch(0, 0)) {
    const pred = noGrad(() => tidy(() => argmax(model.forward(batch.x), 1).toArray() as Int32Array));
    conf.add(pred, batch.y.toArray() as Int32Array);
    onBatch?.(pred, b++);
    batch.x.dispose();
    batch.y.dispose();
  }
  return segmentationReport(conf, classes);
}
