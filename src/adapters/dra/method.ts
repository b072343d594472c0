// DRA as an adapter method: before training, the frozen model runs on calibration images from the
// training split and every target layer gets a rank from its CKA similarity to the next target
// layer and its parameter share (allocate.ts); after each epoch the mean relative change of the
// trained factors is compared with a threshold (the first epoch's change, then the change at the
// last re-allocation), and when it falls below it the layers' pairs are folded into their frozen
// history, the similarities are measured again on the updated model, new ranks allocated, fresh
// pairs built and the optimizer reset, at most maxReallocations times. The adapter file holds
// history and current pair per layer with their ranks (rank_pattern, history_pattern).
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { SimilarityMatrix } from '../../nn/similarity.js';
import { defaultGenerator } from '../../tensor/random.js';
import type { AdapterMethod, TrainingContext, TrainingHooks } from '../method.js';
import { draConfig, draConfigFromRun, DraOptionsSchema, fromPeftJson, toPeftJson, type DraConfig } from './config.js';
import { DraLayer } from './layer.js';
import { allocateRanks, measureSimilarity, type Allocation } from './allocate.js';

/** The DRA layers holding adapter `name`, with their paths, in model order. */
export function draLayers(model: Module, name: string): [string, DraLayer][] {
  return model.namedModules().filter((e): e is [string, DraLayer] => e[1] instanceof DraLayer && e[1].adapterNames().includes(name));
}

/** One allocation as the report shows it. */
export interface DraAllocationRecord {
  /** Epochs done when it was made (0: the calibration before training). */
  epoch: number;
  ranks: Record<string, number>;
  similarity: Record<string, number | null>;
  scores: Record<string, number>;
  n?: number;
  /** The mean relative change that triggered it (absent for the first). */
  delta?: number;
  threshold?: number;
}

interface DraState {
  threshold: number | null;
  reallocations: number;
  allocations: DraAllocationRecord[];
  epochs: { epoch: number; delta: number | null; trainableParams: number; ranks: Record<string, number>; reallocated: boolean }[];
  rankPattern: Record<string, number>;
  historyPattern: Record<string, number[]>;
  /** CKA between every pair of target layers at the first calibration. */
  calibration: SimilarityMatrix | null;
}

const record = (epoch: number, a: Allocation, extra: Partial<DraAllocationRecord> = {}): DraAllocationRecord => ({
  epoch, ranks: a.ranks, n: a.n,
  similarity: Object.fromEntries(a.layers.map((l, i) => [l, Number.isFinite(a.similarity[i]!) ? a.similarity[i]! : null])),
  scores: Object.fromEntries(a.layers.map((l, i) => [l, a.scores[i]!])),
  ...extra,
});

function trainableCount(model: Module): number {
  return model.trainableParameters().reduce((a, t) => a + t.size, 0);
}

function ranksTable(state: DraState, layers: string[]): string {
  const epochs = state.epochs;
  if (epochs.length === 0) return '';
  const head = `| layer | ${epochs.map((e) => `ep ${e.epoch}`).join(' | ')} |`;
  const rule = `| --- | ${epochs.map(() => '---').join(' | ')} |`;
  const rows = layers.map((l) => `| ${l} | ${epochs.map((e) => String(e.ranks[l] ?? '—')).join(' | ')} |`);
  return [head, rule, ...rows].join('\n');
}

export const dra: AdapterMethod<DraConfig> = {
  name: 'dra',
  peftType: 'DRA',
  summary: 'DRA: LoRA ranks allocated per layer from CKA similarity between layers and parameter share, re-allocated during training (graft\'s definition, docs/dra.md)',
  optionsKey: 'dra',
  optionsSchema: DraOptionsSchema,
  configFromRun: draConfigFromRun,
  validate: (c) => draConfig(c),
  canWrap: (m: Module) => m instanceof Linear || m instanceof Conv2d,
  isLayer: (m: Module) => m instanceof DraLayer,
  graft(target, path, name, config, opts) {
    const layer = target instanceof DraLayer ? target : new DraLayer(target as Linear | Conv2d);
    layer.addDra(name, {
      r: config.rankPattern?.[path] ?? config.r, alpha: config.loraAlpha, dropout: config.loraDropout, history: config.historyPattern?.[path] ?? [], generator: opts.generator,
    });
    return layer;
  },
  toPeftJson,
  readsPeftJson: (json) => json['peft_type'] === 'DRA',
  fromPeftJson,
  rank: (c) => {
    const ranks = Object.values(c.rankPattern ?? {});
    return ranks.length ? Math.round(ranks.reduce((a, b) => a + b, 0) / ranks.length) : c.r;
  },
  inspect: {
    tensors: ['lora_A.weight', 'lora_B.weight', ...Array.from({ length: 17 }, (_, k) => [`lora_history.${k}.A.weight`, `lora_history.${k}.B.weight`]).flat()],
    rank: (shapes) => shapes['lora_A.weight']![0]!,
  },
  trainingHooks(model, name, config): TrainingHooks {
    const layers = () => draLayers(model, name);
    const state: DraState = { threshold: null, reallocations: 0, allocations: [], epochs: [], rankPattern: {}, historyPattern: {}, calibration: null };
    let restored = false;
    let baseline: Map<Tensor, Float64Array> = new Map();
    let lastDelta: number | null = null;
    let reallocatedNow = false;
    let trainableThisEpoch = 0;

    const syncPattern = () => {
      config.rankPattern = Object.fromEntries(layers().map(([p, l]) => [p, l.rank(name)]));
      config.historyPattern = Object.fromEntries(layers().map(([p, l]) => [p, l.historyRanks(name)]));
      state.rankPattern = config.rankPattern;
      state.historyPattern = config.historyPattern;
    };
    const pairTensors = () => layers().flatMap(([, l]) => { const { A, B } = l.pair(name); return [A, B]; });
    const snapshot = () => {
      baseline = new Map(pairTensors().map((t) => [t, Float64Array.from(t.toArray() as Float32Array)]));
      trainableThisEpoch = trainableCount(model);
    };
    /**
     * Mean over the trained factors of ‖θ_e − θ_{e−1}‖ / ‖θ_{e−1}‖. A factor that was 0 (B after
     * initialisation) and is not now changed by all of itself: 1 (0 when it is still 0).
     */
    const relativeChange = (): number => {
      let sum = 0;
      let count = 0;
      for (const t of pairTensors()) {
        const prev = baseline.get(t);
        if (!prev) continue;
        const now = t.toArray() as Float32Array;
        let d = 0;
        let p = 0;
        for (let i = 0; i < now.length; i++) {
          d += (now[i]! - prev[i]!) ** 2;
          p += prev[i]! ** 2;
        }
        sum += p > 0 ? Math.sqrt(d) / Math.sqrt(p) : d > 0 ? 1 : 0;
        count++;
      }
      return count ? sum / count : 0;
    };
    const allocate = async (ctx: TrainingContext): Promise<Allocation> => {
      if (!ctx.calibrationImages) throw new Error('DRA needs calibration images from the training split: pass TrainOptions.calibration (graft train does)');
      const ls = layers();
      const m = await measureSimilarity(model, ls.map(([p]) => p), ctx.calibrationImages(), config.calibrationImages, config.estimator);
      const a = allocateRanks({ layers: ls.map(([p]) => p), similarity: m.similarity, params: ls.map(([, l]) => l.baseParams()) }, config);
      return { ...a, n: m.n, estimators: m.estimators, matrix: m.matrix };
    };
    const rankLine = (ranks: Record<string, number>) => {
      const v = Object.values(ranks);
      return `ranks ${Math.min(...v)}–${Math.max(...v)}, mean ${(v.reduce((a, b) => a + b, 0) / v.length).toFixed(1)} over ${v.length} layers`;
    };

    return {
      async beforeTraining(ctx) {
        if (restored) {
          snapshot();
          return;
        }
        if (ctx.step > 0) throw new Error('DRA: resuming needs the checkpoint\'s DRA state; this checkpoint has none');
        if (config.rankPattern && Object.keys(config.historyPattern ?? {}).some((k) => (config.historyPattern![k]!.length > 0))) {
          throw new Error('DRA: this adapter was already trained (it has a history); train a fresh adapter');
        }
        const a = await allocate(ctx);
        for (const [p, l] of layers()) l.resize(name, a.ranks[p]!, defaultGenerator);
        syncPattern();
        state.allocations.push(record(0, a));
        state.calibration = a.matrix ?? null;
        ctx.parametersChanged?.();
        ctx.log?.(`dra: calibration on ${a.n} training images: ${rankLine(a.ranks)}`);
        snapshot();
      },
      async afterEpoch(ctx) {
        const delta = relativeChange();
        lastDelta = delta;
        reallocatedNow = false;
        const epoch = ctx.epoch;
        const ranksDuring = { ...(config.rankPattern ?? {}) };
        const trainable = trainableThisEpoch;
        if (state.threshold === null) state.threshold = delta;
        else if (epoch > config.calibrationEpochs && epoch < ctx.totalEpochs && state.reallocations < config.maxReallocations && delta < state.threshold) {
          const a = await allocate(ctx);
          for (const [p, l] of layers()) l.reallocate(name, a.ranks[p]!, defaultGenerator);
          syncPattern();
          state.allocations.push(record(epoch, a, { delta, threshold: state.threshold }));
          state.threshold = delta;
          state.reallocations++;
          reallocatedNow = true;
          ctx.parametersChanged?.();
          ctx.log?.(`dra: epoch ${epoch}: relative change ${delta.toExponential(3)} below the threshold: re-allocation ${state.reallocations} of at most ${config.maxReallocations}, ${rankLine(a.ranks)}`);
        }
        state.epochs.push({ epoch, delta, trainableParams: trainable, ranks: ranksDuring, reallocated: reallocatedNow });
        snapshot();
      },
      epochMetrics() {
        return {
          dra_delta: lastDelta ?? 0, dra_threshold: state.threshold ?? 0, dra_reallocated: reallocatedNow ? 1 : 0, dra_reallocations: state.reallocations,
          dra_mean_rank: (() => { const v = Object.values(config.rankPattern ?? {}); return v.length ? v.reduce((a, b) => a + b, 0) / v.length : 0; })(),
        };
      },
      saveState() {
        return structuredClone(state);
      },
      restoreState(saved) {
        const s = saved as DraState | undefined;
        if (!s || typeof s !== 'object' || !s.rankPattern) throw new Error('DRA: the checkpoint holds no DRA state (it was written by another method or graft version); start again with --overwrite');
        for (const [p, l] of layers()) {
          const r = s.rankPattern[p];
          const h = s.historyPattern[p] ?? [];
          if (r === undefined) throw new Error(`DRA: the checkpoint has no rank for layer ${p}; start again with --overwrite`);
          // Rebuild each layer at the checkpoint's ranks and history; loading the checkpoint then fills every tensor.
          l.deleteAdapter(name);
          l.addDra(name, { r, alpha: config.loraAlpha, dropout: config.loraDropout, history: h });
        }
        Object.assign(state, structuredClone(s));
        config.rankPattern = { ...s.rankPattern };
        config.historyPattern = structuredClone(s.historyPattern);
        restored = true;
      },
      report() {
        const paths = layers().map(([p]) => p);
        const counts = state.epochs.map((e) => e.trainableParams);
        const avg = counts.length ? counts.reduce((a, b) => a + b, 0) / counts.length : trainableCount(model);
        const md = [
          '## DRA',
          '',
          `Trainable parameters per epoch: ${counts.map((c) => c.toLocaleString('en-US')).join(', ')}; Avg_Parm ${Math.round(avg).toLocaleString('en-US')} (${(avg / 1e6).toFixed(4)} M).`,
          `Re-allocations: ${state.reallocations} (at most ${config.maxReallocations}), after epochs ${state.allocations.filter((a) => a.epoch > 0).map((a) => a.epoch).join(', ') || 'none'}.`,
          '',
          'Rank per layer during each epoch:',
          '',
          ranksTable(state, paths),
          '',
        ].join('\n');
        return {
          json: { avgTrainableParams: avg, trainableParamsPerEpoch: counts, reallocations: state.reallocations, allocations: state.allocations, epochs: state.epochs },
          markdown: md + (state.calibration ? '\nCKA between the target layers on the calibration images: similarity.json, similarity.svg.\n' : ''),
          ...(state.calibration ? { similarity: state.calibration } : {}),
        };
      },
    };
  },
};
