// Which pictures a run and a study get, from their results: curves from metrics.jsonl, the test
// confusion matrix, ranks per layer where the adapter kept them, robustness where it was measured,
// and for a study the accuracy/parameters plane with its Pareto front.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { barChart, confusionHeatmap, lineChart, paretoChart, writeFigure, type Bar, type Figure, type Series } from './charts.js';
import type { RunResult } from './results.js';
import type { StudyResults } from './study-output.js';
import { mean, sampleStd } from './study-table.js';

export const FIGURES_DIR = 'figures';

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** [step, value] of every log entry holding `key`. */
function curve(history: readonly Record<string, number>[], key: string, x: 'step' | 'epoch' = 'step'): [number, number][] {
  return history.filter((e) => isNum(e[key]) && isNum(e[x])).map((e) => [e[x]!, e[key]!]);
}

/** The point-wise mean of several runs' curves over the x values they share. */
function meanCurve(curves: readonly [number, number][][]): [number, number][] {
  if (curves.length === 0) return [];
  const maps = curves.map((c) => new Map(c));
  return curves[0]!.filter(([x]) => maps.every((m) => m.has(x))).map(([x]) => [x, mean(maps.map((m) => m.get(x)!))]);
}

export function runFigures(r: RunResult, title: string): Figure[] {
  const figs: Figure[] = [];
  const loss: Series[] = [{ name: 'training loss', points: curve(r.history, 'loss') }];
  const evalLoss = curve(r.history, 'eval_loss');
  if (evalLoss.length) loss.push({ name: 'validation loss', points: evalLoss, dashed: true });
  if (loss[0]!.points.length) figs.push(lineChart('loss', `${title}: loss`, 'step', 'loss', loss));
  const acc: Series[] = [];
  const evalAcc = curve(r.history, 'eval_accuracy', 'epoch').map(([x, y]): [number, number] => [x, 100 * y]);
  if (evalAcc.length) acc.push({ name: 'validation accuracy', points: evalAcc });
  const evalF1 = curve(r.history, 'eval_f1', 'epoch').map(([x, y]): [number, number] => [x, 100 * y]);
  if (evalF1.length) acc.push({ name: 'validation weighted F1', points: evalF1, dashed: true });
  if (acc.length) figs.push(lineChart('accuracy', `${title}: validation`, 'epoch', '%', acc));
  figs.push(confusionHeatmap('confusion', `${title}: test confusion matrix`, r.classes, r.metrics.confusion));
  if (r.ranks?.length) figs.push(barChart('ranks', `${title}: rank per layer`, 'kept rank (of the initial one)', r.ranks.map((x) => ({ label: x.layer, value: x.rank, max: x.max }))));
  if (r.rankSelection?.length) figs.push(barChart('rank-selection', `${title}: validation accuracy per rank`, 'validation accuracy (%)', r.rankSelection.map((x) => ({ label: `rank ${x.rank}`, value: x.accuracy })), { percent: true }));
  if (r.robustness?.length) figs.push(barChart('robustness', `${title}: accuracy under perturbations`, 'test accuracy (%)', [{ label: 'clean', value: r.summary.accuracy }, ...r.robustness.map((x) => ({ label: x.name, value: x.accuracy }))], { percent: true }));
  return figs;
}

export function studyFigures(results: StudyResults, rows: readonly { id: string; label: string }[], name: string): Figure[] {
  const figs: Figure[] = [];
  const done = rows.filter((r) => (results.byRow.get(r.id) ?? []).length > 0);
  const of = (id: string) => results.byRow.get(id) ?? [];
  const loss = done.map((r) => ({ name: r.label, points: meanCurve(of(r.id).map((x) => curve(x.history, 'loss'))) })).filter((s) => s.points.length);
  if (loss.length) figs.push(lineChart('loss', `${name}: training loss (mean over seeds)`, 'step', 'loss', loss));
  const acc = done.map((r) => ({ name: r.label, points: meanCurve(of(r.id).map((x) => curve(x.history, 'eval_accuracy', 'epoch'))).map(([x, y]): [number, number] => [x, 100 * y]) })).filter((s) => s.points.length);
  if (acc.length) figs.push(lineChart('accuracy', `${name}: validation accuracy (mean over seeds)`, 'epoch', 'validation accuracy (%)', acc));
  if (done.length) {
    figs.push(paretoChart('pareto', `${name}: test accuracy against trainable parameters`, done.map((r) => {
      const rs = of(r.id);
      const accs = rs.map((x) => x.summary.accuracy);
      return { label: r.label, params: mean(rs.map((x) => x.summary.trainableParams)), accuracy: mean(accs), std: sampleStd(accs) };
    })));
    // The confusion matrix of the row with the best mean test accuracy (its first seed).
    const best = done.reduce((a, b) => (mean(of(b.id).map((x) => x.summary.accuracy)) > mean(of(a.id).map((x) => x.summary.accuracy)) ? b : a));
    const first = of(best.id)[0]!;
    figs.push(confusionHeatmap('confusion', `${name}: test confusion matrix of ${best.label} (seed ${String((first.config['train'] as { seed?: number } | undefined)?.seed ?? '?')})`, first.classes, first.metrics.confusion));
  }
  const rankBars: Bar[] = [];
  done.forEach((r, g) => {
    const ranks = of(r.id)[0]?.ranks;
    if (ranks) for (const x of ranks) rankBars.push({ label: `${r.label} · ${x.layer}`, value: x.rank, max: x.max, group: g });
  });
  if (rankBars.length) figs.push(barChart('ranks', `${name}: rank per layer`, 'kept rank (of the initial one)', rankBars));
  const robust: Bar[] = [];
  done.forEach((r, g) => {
    const rs = of(r.id).filter((x) => x.robustness?.length);
    if (!rs.length) return;
    const names = rs[0]!.robustness!.map((x) => x.name);
    robust.push({ label: `${r.label} · clean`, value: mean(rs.map((x) => x.summary.accuracy)), group: g });
    for (const n of names) robust.push({ label: `${r.label} · ${n}`, value: mean(rs.map((x) => x.robustness!.find((y) => y.name === n)?.accuracy ?? Number.NaN)), group: g });
  });
  if (robust.length) figs.push(barChart('robustness', `${name}: test accuracy under perturbations`, 'test accuracy (%)', robust, { percent: true }));
  return figs;
}

/** Writes each figure as figures/<name>.svg and .png under `dir`. */
export async function writeFigures(dir: string, figs: readonly Figure[]): Promise<string[]> {
  const out = join(dir, FIGURES_DIR);
  mkdirSync(out, { recursive: true });
  const files: string[] = [];
  for (const f of figs) files.push(...(await writeFigure(out, f)));
  return files;
}
