// Classification metrics against scikit-learn (fixtures/sklearn/make_metrics_fixtures.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { classificationReport, averagePrecision } from '../src/eval/metrics.js';

interface Case {
  name: string; numClasses: number; labels: number[]; predictions: number[]; scores: number[];
  accuracy: number; macroF1: number; weightedF1: number; precision: number[]; recall: number[]; f1: number[];
  support: number[]; averagePrecision: (number | null)[]; confusion: number[][];
}

const cases = JSON.parse(readFileSync(new URL('../../fixtures/sklearn/metrics.json', import.meta.url), 'utf8')) as Case[];
const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: graft ${a}, scikit-learn ${b}`);

for (const c of cases) {
  test(`metrics match scikit-learn: ${c.name}`, () => {
    const r = classificationReport(c.labels, c.predictions, c.numClasses, c.scores);
    close(r.accuracy, c.accuracy, 'accuracy');
    close(r.macroF1, c.macroF1, 'macro F1');
    close(r.weightedF1, c.weightedF1, 'weighted F1');
    assert.deepEqual(r.confusion, c.confusion);
    r.perClass.forEach((m, k) => {
      close(m.precision, c.precision[k]!, `precision ${k}`);
      close(m.recall, c.recall[k]!, `recall ${k}`);
      close(m.f1, c.f1[k]!, `f1 ${k}`);
      assert.equal(m.support, c.support[k]);
      const ap = c.averagePrecision[k];
      if (ap === null) assert.ok(Number.isNaN(m.averagePrecision));
      else close(m.averagePrecision, ap!, `average precision ${k}`);
    });
    const aps = c.averagePrecision.filter((x): x is number => x !== null);
    close(r.mAP, aps.reduce((a, b) => a + b, 0) / aps.length, 'mAP');
  });
}

test('average precision of a perfect ranking is 1, of a reversed one is the positive rate ladder', () => {
  assert.equal(averagePrecision([true, true, false], [0.9, 0.8, 0.1]), 1);
  assert.ok(Math.abs(averagePrecision([false, false, true], [0.9, 0.8, 0.1]) - 1 / 3) < 1e-12);
});

test('metrics: average precision and the report end on NaN scores, ties and empty input', () => {
  // A NaN score ranks last: the positive at 0.9 comes first, the NaN one after the negative.
  assert.equal(averagePrecision([true, false, true], [0.9, 0.5, NaN]), (1 + 2 / 3) / 2);
  assert.equal(averagePrecision([true, false, true, false], [NaN, NaN, NaN, NaN]), 0.5);
  assert.equal(averagePrecision([true, true, false], [0.5, 0.5, 0.5]), 2 / 3);
  assert.ok(Number.isNaN(averagePrecision([], [])));
  const r = classificationReport([0, 1, 1], [0, 0, 1], 3, Float32Array.from([NaN, NaN, NaN, 0.2, 0.7, 0.1, NaN, 0.5, 0.5]));
  assert.equal(r.perClass[2]!.support, 0);
  assert.ok(Number.isNaN(r.perClass[2]!.averagePrecision));
  assert.ok(Number.isFinite(r.mAP));
});
