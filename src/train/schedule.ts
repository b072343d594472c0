// Learning-rate schedules as multipliers of the base rate, by optimizer step (the Hugging Face
// Trainer's get_scheduler semantics: linear warmup from 0, then the decay).

export type ScheduleKind = 'cosine' | 'constant' | 'linear';

/** The LR multiplier at `step` (0-based) of `total` steps with `warmup` warmup steps. */
export function lrMultiplier(kind: ScheduleKind, step: number, total: number, warmup: number): number {
  if (step < warmup) return step / Math.max(1, warmup);
  if (kind === 'constant') return 1;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (kind === 'linear') return Math.max(0, 1 - progress);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
