// After training an adapter that computes at several ranks (a method with `rankChoice`, DyLoRA):
// the validation split evaluated at each candidate rank, the best kept (the lowest rank among
// equals, being the cheapest), or the highest rank when there is no validation split.
import type { RankChoice } from '../adapters/method.js';
import type { Module } from '../nn/module.js';
import type { BatchSource } from '../data/batch.js';
import { evaluate } from '../eval/evaluate.js';

export interface RankSelection {
  chosen: number;
  /** Validation accuracy and weighted F1 per candidate rank; null without a validation split. */
  perRank: { rank: number; accuracy: number; weightedF1: number }[] | null;
}

export async function chooseRank(model: Module, choice: RankChoice, val: BatchSource | null, numClasses: number, log: (l: string) => void): Promise<RankSelection> {
  if (!val) {
    log(`no validation split (data.valFraction is 0): keeping the highest rank, ${choice.maxRank}; set data.valFraction to choose the rank on validation images`);
    choice.set(choice.maxRank);
    return { chosen: choice.maxRank, perRank: null };
  }
  model.eval();
  const perRank: RankSelection['perRank'] & object = [];
  for (const rank of choice.candidates) {
    choice.set(rank);
    const { report } = await evaluate(model, val, numClasses);
    perRank.push({ rank, accuracy: report.accuracy, weightedF1: report.weightedF1 });
    log(`  rank ${rank}: validation accuracy ${(100 * report.accuracy).toFixed(2)}%, weighted F1 ${(100 * report.weightedF1).toFixed(2)}%`);
  }
  const best = perRank.reduce((a, b) => (b.accuracy > a.accuracy ? b : a));
  choice.set(best.rank);
  log(`rank ${best.rank} chosen on validation accuracy`);
  return { chosen: best.rank, perRank };
}

/** One line for report.md: "1: 80.00%, 2: 82.50%". */
export function perRankLine(s: RankSelection): string {
  return s.perRank ? s.perRank.map((p) => `${p.rank}: ${(100 * p.accuracy).toFixed(2)}%`).join(', ') : 'no validation split';
}
