// A watch on whether a run learns: it reads the entries the trainer writes to metrics.jsonl and
// warns, once each, when the training loss has not fallen after a number of steps, or when the
// validation accuracy sits at chance after an epoch past warmup. The warning names the likely
// causes and the flags to try; a NaN/Inf loss is the trainer's to stop.

/** Steps before the loss is judged; a run shorter than twice this is judged at half its length. */
export const WATCH_STEPS = 30;
/** The loss must fall by this share of its starting value to count as falling. */
export const MIN_LOSS_DROP = 0.05;
/** Validation accuracy within this factor of chance (1 / classes) counts as chance. */
const CHANCE_FACTOR = 1.5;
/** Steps averaged at each end of the window, so one noisy batch decides nothing. */
const WINDOW = 5;

export interface LearningWatchOptions {
  numClasses: number;
  totalSteps: number;
  warmupSteps: number;
  lr: number;
  method: string;
  log: (line: string) => void;
}

export class LearningWatch {
  private readonly losses: number[] = [];
  private readonly judgeAt: number;
  private lossWarned = false;
  private chanceWarned = false;
  readonly warnings: string[] = [];

  constructor(private readonly o: LearningWatchOptions) {
    this.judgeAt = Math.max(2 * WINDOW, Math.min(WATCH_STEPS, Math.floor(o.totalSteps / 2)));
  }

  /** Feed every metrics entry; step entries carry `loss`, epoch entries `eval_accuracy`. */
  observe(entry: Record<string, number>): void {
    const step = entry['step'] ?? 0;
    if (entry['loss'] !== undefined && Number.isFinite(entry['loss'])) {
      this.losses.push(entry['loss']);
      if (!this.lossWarned && this.losses.length >= this.judgeAt) this.judgeLoss();
    }
    const acc = entry['eval_accuracy'];
    if (acc !== undefined && !this.chanceWarned && step > this.o.warmupSteps && acc <= CHANCE_FACTOR / this.o.numClasses) {
      this.chanceWarned = true;
      this.warn(`validation accuracy is ${(100 * acc).toFixed(1)}% after ${step} steps, about chance for ${this.o.numClasses} classes (${(100 / this.o.numClasses).toFixed(1)}%)`);
    }
  }

  private judgeLoss(): void {
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(this.losses.slice(0, WINDOW));
    const last = mean(this.losses.slice(-WINDOW));
    // Judged once: a loss that falls later clears nothing already said, and one warning is enough.
    this.lossWarned = true;
    if (last <= first * (1 - MIN_LOSS_DROP)) return;
    this.warn(`the training loss has not fallen in ${this.losses.length} steps (${first.toFixed(3)} → ${last.toFixed(3)})`);
  }

  private warn(what: string): void {
    const lr = this.o.lr;
    const causes = [
      `the learning rate ${lr} is too small or too large for ${this.o.method}: try --lr auto, or --lr ${(lr * 10).toPrecision(2)} / ${(lr / 10).toPrecision(2)}`,
      this.o.method === 'linear-probe' || this.o.method === 'full' || this.o.method === 'scratch' ? null
        : `the adapters sit on layers that do not change the features: see 'graft inspect <model>' and try --targets (a CNN's convolutions, e.g. '.*(expand|project)'; a ViT's all-linear)`,
      `the pretrained head is kept: --head-from features rebuilds it from the pooled features`,
      `too few optimizer steps for this data: --steps (now ${this.o.totalSteps})`,
    ].filter((c): c is string => c !== null);
    const line = `warning: ${what}. Likely causes:\n${causes.map((c) => `  - ${c}`).join('\n')}`;
    this.warnings.push(line);
    this.o.log(line);
  }
}
