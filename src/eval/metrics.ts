// Classification metrics from labels and scores: accuracy, precision/recall/F1 per class with
// macro and weighted averages (scikit-learn's definitions, zero_division = 0), one-vs-rest
// average precision and its macro mean (mAP), and the confusion matrix.

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
  averagePrecision: number;
}

export interface ClassificationReport {
  accuracy: number;
  macroF1: number;
  weightedF1: number;
  macroPrecision: number;
  macroRecall: number;
  weightedPrecision: number;
  weightedRecall: number;
  /** Mean over classes with at least one positive of one-vs-rest average precision. */
  mAP: number;
  perClass: ClassMetrics[];
  /** confusion[true][predicted] counts. */
  confusion: number[][];
  count: number;
}

/** Confusion matrix of integer labels in [0, numClasses). */
export function confusionMatrix(labels: ArrayLike<number>, predictions: ArrayLike<number>, numClasses: number): number[][] {
  if (labels.length !== predictions.length) throw new Error(`confusionMatrix: ${labels.length} labels but ${predictions.length} predictions`);
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    const p = predictions[i]!;
    if (y < 0 || y >= numClasses || p < 0 || p >= numClasses) throw new RangeError(`confusionMatrix: label ${y} or prediction ${p} is outside [0, ${numClasses})`);
    m[y]![p]!++;
  }
  return m;
}

/**
 * Average precision of one class from scores (higher = more positive), scikit-learn's
 * definition: Σ_k (R_k − R_{k−1}) · P_k over decreasing score thresholds (ties grouped).
 * NaN when the class has no positives. A NaN score ranks below every number (it is no evidence
 * for the class), so the sort is a total order and every tie group ends: the loop terminates on
 * any input.
 */
export function averagePrecision(isPositive: ArrayLike<boolean>, rawScores: ArrayLike<number>): number {
  const n = rawScores.length;
  if (isPositive.length !== n) throw new Error(`averagePrecision: ${isPositive.length} labels but ${n} scores`);
  const scores = Float64Array.from({ length: n }, (_, i) => (Number.isNaN(rawScores[i]!) ? -Infinity : rawScores[i]!));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (scores[b]! > scores[a]! ? 1 : scores[b]! < scores[a]! ? -1 : a - b));
  let positives = 0;
  for (let i = 0; i < n; i++) if (isPositive[i]) positives++;
  if (positives === 0) return NaN;
  let tp = 0;
  let fp = 0;
  let ap = 0;
  let prevRecall = 0;
  for (let k = 0; k < n; ) {
    const s = scores[order[k]!]!;
    // Consume every sample tied at this threshold before taking a point of the curve.
    while (k < n && scores[order[k]!] === s) {
      if (isPositive[order[k]!]) tp++;
      else fp++;
      k++;
    }
    const recall = tp / positives;
    ap += (recall - prevRecall) * (tp / (tp + fp));
    prevRecall = recall;
  }
  return ap;
}

/**
 * Every metric from true labels, predicted labels and (optionally) per-class scores, row-major
 * (N, numClasses) — softmax probabilities for mAP.
 */
export function classificationReport(labels: ArrayLike<number>, predictions: ArrayLike<number>, numClasses: number, scores?: ArrayLike<number>): ClassificationReport {
  const confusion = confusionMatrix(labels, predictions, numClasses);
  const n = labels.length;
  if (scores && scores.length !== n * numClasses) throw new Error(`classificationReport: scores must hold ${n}×${numClasses} values; got ${scores.length}`);
  let correct = 0;
  const perClass: ClassMetrics[] = [];
  for (let c = 0; c < numClasses; c++) {
    correct += confusion[c]![c]!;
    const tp = confusion[c]![c]!;
    const support = confusion[c]!.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, row) => a + row[c]!, 0);
    const precision = predicted ? tp / predicted : 0;
    const recall = support ? tp / support : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    let ap = NaN;
    if (scores) {
      const pos = Array.from({ length: n }, (_, i) => labels[i] === c);
      const col = Array.from({ length: n }, (_, i) => scores[i * numClasses + c]!);
      ap = averagePrecision(pos, col);
    }
    perClass.push({ precision, recall, f1, support, averagePrecision: ap });
  }
  const mean = (f: (m: ClassMetrics) => number) => perClass.reduce((a, m) => a + f(m), 0) / numClasses;
  const weighted = (f: (m: ClassMetrics) => number) => (n ? perClass.reduce((a, m) => a + f(m) * m.support, 0) / n : 0);
  const withPositives = perClass.filter((m) => !Number.isNaN(m.averagePrecision));
  return {
    accuracy: n ? correct / n : 0,
    macroF1: mean((m) => m.f1),
    weightedF1: weighted((m) => m.f1),
    macroPrecision: mean((m) => m.precision),
    macroRecall: mean((m) => m.recall),
    weightedPrecision: weighted((m) => m.precision),
    weightedRecall: weighted((m) => m.recall),
    mAP: withPositives.length ? withPositives.reduce((a, m) => a + m.averagePrecision, 0) / withPositives.length : NaN,
    perClass,
    confusion,
    count: n,
  };
}
