// Loading a float checkpoint quantised layer by layer, against loading it in float, and loading
// the 4-bit checkpoint graft then saves (bitsandbytes' names): seconds, the peak of live tensor
// bytes and the peak resident memory of each load, each in a fresh process. The checkpoint is
// written first, a tensor at a time, with random weights (U(±1/√fan_in), stored as bf16 by
// default, as Hugging Face ships DINOv3), under the model's own (transformers) names.
// A float load that would not fit in memory is left out and said so. Nothing is asserted.
//
//   npm run build && node dist/bench/quantize-load.js [--model dinov3_vitl16] [--dtype BF16|F32] [--keep]
//   node dist/bench/quantize-load.js --model dinov3_vit7b16      # 13.4 GB of disk for the file
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import '../src/backends/all.js';
import '../src/models/all.js';
import { createModel } from '../src/models/registry.js';
import { buildModel } from '../src/models/build-model.js';
import { isDeferred, withDeferredWeights } from '../src/nn/layers.js';
import { isQuantized } from '../src/nn/quant4.js';
import { saveSafetensors, writeSafetensorsStreaming, type TensorSpec } from '../src/io/safetensors.js';
import { memory, resetPeakMemory } from '../src/tensor/memory.js';
import { resultsPath } from './references.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
};
const GiB = 2 ** 30;

interface LoadResult {
  way: string;
  seconds: number;
  peakTensorBytes: number;
  modelBytes: number;
  peakRssBytes: number;
  fourBitLayers: number;
}

async function child(way: string, file: string, model: string, save: string | null): Promise<void> {
  const t0 = performance.now();
  resetPeakMemory();
  const m = await buildModel({ name: model, weights: file, numClasses: 0, ...(way === 'nf4 at load' ? { quantize: { quantType: 'nf4', doubleQuant: true } } : {}) });
  const seconds = (performance.now() - t0) / 1000;
  const r: LoadResult = {
    way, seconds, peakTensorBytes: memory().peakBytes, modelBytes: memory().liveBytes,
    peakRssBytes: process.resourceUsage().maxRSS * 1024, fourBitLayers: m.namedModules().filter(([, x]) => isQuantized(x)).length,
  };
  process.stdout.write(`${JSON.stringify(r)}\n`);
  if (save) saveSafetensors(save, m.stateDict());
}

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** The checkpoint under the model's names: deferred weights random, everything else as initialised. */
function writeCheckpoint(model: string, file: string, dtype: 'BF16' | 'F32'): number {
  const m = withDeferredWeights(() => createModel(model, { numClasses: 0 }));
  const state = m.stateDict();
  const specs: TensorSpec[] = [...state].map(([name, t]) => ({ name, dtype: t.dtype === 'float32' ? dtype : 'I32', shape: t.shape }));
  const rand = xorshift(7);
  let params = 0;
  writeSafetensorsStreaming(file, specs, (s) => {
    const t = state.get(s.name)!;
    const n = t.size;
    params += n;
    const bound = 1 / Math.sqrt(s.shape.slice(1).reduce((a, b) => a * b, 1));
    const values = isDeferred(t) ? null : t.toArray();
    const value = (i: number) => (values ? Number(values[i]) : (2 * rand() - 1) * bound);
    if (s.dtype === 'I32') return new Uint8Array(Int32Array.from(values!).buffer);
    if (s.dtype === 'F32') {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = value(i);
      return new Uint8Array(out.buffer);
    }
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      f[0] = value(i);
      out[i] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16; // round to nearest even
    }
    return new Uint8Array(out.buffer);
  });
  m.dispose();
  return params;
}

async function main(): Promise<void> {
  const model = arg('--model', 'dinov3_vitl16');
  const dtype = arg('--dtype', 'BF16') === 'F32' ? 'F32' : 'BF16';
  const dir = mkdtempSync(join(tmpdir(), 'graft-qload-'));
  const file = join(dir, `${model}.safetensors`);
  const fourBitFile = join(dir, `${model}-nf4.safetensors`);
  const t0 = performance.now();
  const params = writeCheckpoint(model, file, dtype);
  const writeSeconds = (performance.now() - t0) / 1000;
  const fileBytes = statSync(file).size;
  console.log(`${model}: ${(params / 1e9).toFixed(2)} B parameters, written as ${dtype} in ${writeSeconds.toFixed(0)} s (${(fileBytes / GiB).toFixed(2)} GiB)`);

  const self = fileURLToPath(import.meta.url);
  const env = { ...process.env, GRAFT_POOL_MB: process.env['GRAFT_POOL_MB'] ?? '512' };
  const run = (way: string, from: string, save: string | null): LoadResult | null => {
    const r = spawnSync(process.execPath, ['--max-old-space-size=8192', self, '--child', way, from, model, save ?? ''], { env, encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) {
      console.log(`${way}: failed (${r.stderr.trim().split('\n').slice(-3).join(' | ')})`);
      return null;
    }
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as LoadResult;
  };
  const floatBytes = params * 4;
  const results: (LoadResult | { way: string; skipped: string })[] = [];
  if (floatBytes < 0.6 * totalmem()) results.push(run('float', file, null) ?? { way: 'float', skipped: 'failed' });
  else results.push({ way: 'float', skipped: `the float model (${(floatBytes / GiB).toFixed(1)} GiB) does not fit in ${(totalmem() / GiB).toFixed(0)} GiB` });
  results.push(run('nf4 at load', file, fourBitFile) ?? { way: 'nf4 at load', skipped: 'failed' });
  results.push(run('4-bit file', fourBitFile, null) ?? { way: '4-bit file', skipped: 'failed' });

  console.log(`\n| load (${model}) | seconds | peak tensor GiB | model GiB | peak RSS GiB | 4-bit layers |`);
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    if ('skipped' in r) console.log(`| ${r.way} | — | — | — | — | ${r.skipped} |`);
    else console.log(`| ${r.way} | ${r.seconds.toFixed(1)} | ${(r.peakTensorBytes / GiB).toFixed(2)} | ${(r.modelBytes / GiB).toFixed(2)} | ${(r.peakRssBytes / GiB).toFixed(2)} | ${r.fourBitLayers} |`);
  }
  console.log(`(fp32 model: ${(floatBytes / GiB).toFixed(2)} GiB; host buffer pool capped at ${env.GRAFT_POOL_MB} MiB)`);
  const out = resultsPath('quantize-load', new Date());
  writeFileSync(out, JSON.stringify({ model, dtype, params, fileBytes, writeSeconds, results }, null, 2));
  console.log(`written ${out}`);
  if (!process.argv.includes('--keep')) rmSync(dir, { recursive: true, force: true });
  else console.log(`kept ${dir}`);
}

const at = process.argv.indexOf('--child');
if (at >= 0) {
  const [way, file, model, save] = process.argv.slice(at + 1);
  await child(way!, file!, model!, save || null);
} else await main();
