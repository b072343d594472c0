// graft's side of the model-level benchmark, one case per process so that the process's RSS
// high-water mark (process.resourceUsage().maxRSS) belongs to that case.
//
// Run by bench/models.ts: `node dist/bench/graft_models.js` with JSON on stdin:
//   {"mode": "infer", "backend", "cache", "model", "batches", "policy"}
//     eval mode under noGrad; the logits of the cached check batch against PyTorch's, then each
//     batch size timed. Prints {"results": [{batch, ms, runs}], "maxAbsDiff", "maxAbsRef", "maxRssMb"}.
//   {"mode": "train", "backend", "cache", "case", "policy"}
//     the training case at batch 8 (forward + backward + AdamW step, the trainer's step).
//     Prints {"ms", "runs", "loss0", "lossLast", "trainable", "maxRssMb"}.
import { performance } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import '../src/models/all.js';
import { withFoldedWeights } from '../src/nn/layers.js';
import { AdamW, assign, crossEntropy, Generator, manualSeed, noGrad, randn, setBackend, tidy, type BackendName, type Tensor } from '../src/index.js';
import { buildModel } from '../src/models/build-model.js';
import { applyMethod } from '../src/adapters/apply.js';
import { loraConfig } from '../src/adapters/lora/config.js';
import { decayGroups } from '../src/train/trainer.js';
import { Conv2d, Dropout, Linear } from '../src/nn/layers.js';
import { describeTrainable } from '../src/nn/module.js';
import { loadSafetensors } from '../src/io/safetensors.js';
import { modelFiles, modelSpec, NUM_CLASSES, type TrainCase } from './model_cases.js';
import { measure, type TimingPolicy } from './timing.js';

interface InferSpec {
  mode: 'infer';
  backend: BackendName;
  cache: string;
  model: string;
  batches: number[];
  policy: TimingPolicy;
}

interface TrainSpec {
  mode: 'train';
  backend: BackendName;
  cache: string;
  case: TrainCase;
  policy: TimingPolicy;
}

const SEED = 0;
const maxRssMb = () => process.resourceUsage().maxRSS / 1024;

function maxAbs(a: ArrayLike<number>, b?: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - (b ? b[i]! : 0)));
  return m;
}

async function load(cache: string, key: string) {
  const spec = modelSpec(key);
  return buildModel({ name: spec.graft, weights: modelFiles(cache, key).weights });
}

async function infer(s: InferSpec): Promise<Record<string, unknown>> {
  const model = await load(s.cache, s.model);
  model.eval();
  const check = loadSafetensors(modelFiles(s.cache, s.model).check);
  const logits = noGrad(() => tidy(() => model.forward(check.get('x')!).toArray()));
  const ref = check.get('logits')!.toArray();
  const maxAbsDiff = maxAbs(logits, ref);
  const maxAbsRef = maxAbs(ref);
  for (const t of check.values()) t.dispose();
  manualSeed(SEED + 4);
  const results = [];
  for (const b of s.batches) {
    const x = randn([b, 3, 224, 224]);
    // As graft's own evaluation and prediction run inference: conv + BatchNorm folded once.
    const sample = await withFoldedWeights(() => measure(() => noGrad(() => tidy(() => {
      const t0 = performance.now();
      model.forward(x).toArray();
      return performance.now() - t0;
    })), s.policy));
    x.dispose();
    results.push({ batch: b, ...sample });
  }
  return { results, maxAbsDiff, maxAbsRef, maxRssMb: maxRssMb() };
}

async function trainCase(s: TrainSpec): Promise<Record<string, unknown>> {
  const c = s.case;
  const backbone = await load(s.cache, c.model);
  const convs = backbone.namedModules().filter(([p, m]) => p && m instanceof Conv2d).map(([p]) => p);
  const model = applyMethod(backbone, c.method, {
    numClasses: NUM_CLASSES, generator: new Generator(SEED + 2),
    adapterConfig: c.method === 'lora' || c.method === 'dora'
      ? loraConfig({ r: c.r, loraAlpha: c.alpha, loraDropout: 0, targetModules: c.targets === 'conv' ? convs : 'all-linear', useDora: c.method === 'dora' })
      : undefined,
  });
  const check = loadSafetensors(modelFiles(s.cache, c.model).check);
  // The head PyTorch starts from (torch_models.py), into every copy of the 10-class head.
  noGrad(() => {
    for (const [, m] of model.namedModules()) {
      if (m instanceof Linear && m.outFeatures === NUM_CLASSES) {
        assign(m.weight, check.get('head.weight')!);
        if (m.bias) assign(m.bias, check.get('head.bias')!);
      }
    }
  });
  model.train();
  // Classifier dropout off, as in torch_models.py, so that the first loss compares.
  for (const [, m] of model.namedModules()) if (m instanceof Dropout) m.train(false);
  const x = check.get('x')!;
  const y = check.get('y')!;
  const optimizer = new AdamW(decayGroups(model, 0.01), { lr: c.lr });
  const losses: number[] = [];
  const sample = await measure(() => {
    const t0 = performance.now();
    const loss = tidy(() => {
      const l = crossEntropy(model.forward(x), y);
      l.backward();
      return l.item();
    });
    optimizer.step();
    optimizer.zeroGrad();
    losses.push(loss);
    return performance.now() - t0;
  }, s.policy);
  return { ...sample, loss0: losses[0], lossLast: losses[losses.length - 1], trainable: describeTrainable(model).trainable, maxRssMb: maxRssMb() };
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(0, 'utf8')) as InferSpec | TrainSpec;
  setBackend(spec.backend);
  const out = spec.mode === 'infer' ? await infer(spec) : await trainCase(spec);
  process.stdout.write(JSON.stringify(out) + '\n');
}

await main();
