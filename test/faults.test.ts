// The fault suite: a run killed with SIGKILL at 20 seeded moments (training, evaluation, saving)
// and then resumed ends with the metrics, the per-step losses and the adapter bytes of an
// uninterrupted run, metrics.jsonl holding each step once and every file parsing; Ctrl-C at each
// phase exits 130 and resumes the same way; a full disk and a read-only folder give clear errors
// and leave no partial files. LoRA with dropout, so resuming depends on the saved random state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { writeTwoClassFolder } from './helpers/tiny-runs.js';

const root = mkdtempSync(join(tmpdir(), 'graft-faults-'));
const p = (...parts: string[]) => join(root, ...parts);
const CLI = 'dist/src/cli/main.js';

interface Done { status: number | null; signal: NodeJS.Signals | null; out: string; err: string }

/** Runs the CLI; `onOutput` sees the output so far and may signal the child. */
function graft(args: string[], onOutput?: (text: string, child: ReturnType<typeof spawn>) => void, killAfterMs?: number): Promise<Done> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); onOutput?.(out + err, child); });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); onOutput?.(out + err, child); });
    const timer = killAfterMs !== undefined ? setTimeout(() => child.kill('SIGKILL'), killAfterMs) : null;
    child.on('close', (status, signal) => {
      if (timer) clearTimeout(timer);
      done({ status, signal, out, err });
    });
  });
}

const trainArgs = (out: string, ...more: string[]) => ['train', '-c', p('config.json'), '--output', out, ...more];

async function setup(): Promise<void> {
  await writeTwoClassFolder(p('img'));
  writeFileSync(p('config.json'), JSON.stringify({
    model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, method: 'lora', adapter: { targets: 'conv1', dropout: 0.3 },
    data: { source: p('img'), perClass: 3, imageSize: 32 }, train: { epochs: 3, batchSize: 2, seed: 3 },
  }));
}

/** What a finished run must equal: test metrics, each step's loss/grad norm/lr, adapter bytes. */
function outcome(dir: string) {
  const metrics = (JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { metrics: unknown }).metrics;
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const steps = lines.filter((l) => 'loss' in l).map((l) => ({ step: l['step'], loss: l['loss'], grad_norm: l['grad_norm'], learning_rate: l['learning_rate'] }));
  return { metrics, steps, adapter: readFileSync(join(dir, 'adapter', 'adapter_model.safetensors')).toString('base64') };
}

/** Every file of a run folder parses, no temporary file or lock is left, each step is logged once. */
function checkFolder(dir: string): void {
  const walk = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
  for (const f of walk(dir)) {
    assert.ok(!/\.tmp$|\.graft\.lock$/.test(f), `left behind: ${f}`);
    if (f.endsWith('.json')) JSON.parse(readFileSync(f, 'utf8'));
    if (f.endsWith('.jsonl')) for (const l of readFileSync(f, 'utf8').trim().split('\n')) JSON.parse(l);
    if (f.endsWith('.safetensors')) new SafetensorsFile(f).close();
  }
  const steps = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>).filter((l) => 'loss' in l).map((l) => l['step']);
  assert.deepEqual(steps, [...new Set(steps)].sort((a, b) => a! - b!), `each step once in ${dir}`);
}

/** Finishes an interrupted run: --resume, or a fresh start when it stopped before its first checkpoint. */
async function finish(dir: string): Promise<Done> {
  const r = await graft(trainArgs(dir, '--resume'));
  if (r.status === 2 && /holds no run to resume|found no checkpoint/.test(r.err)) return graft(trainArgs(dir, '--overwrite'));
  return r;
}

let reference: ReturnType<typeof outcome>;
let referenceMs = 0;

test('faults: an uninterrupted reference run', async () => {
  await setup();
  const t0 = Date.now();
  const r = await graft(trainArgs(p('ref')));
  referenceMs = Date.now() - t0;
  assert.equal(r.status, 0, r.err);
  checkFolder(p('ref'));
  reference = outcome(p('ref'));
  assert.equal(reference.steps.length, 9);
});

test('faults: kill -9 at 20 seeded moments, then --resume, equals the uninterrupted run', async () => {
  // A small LCG: the same 20 moments on every run of the suite, spread over start-up, training,
  // the final evaluation and the saving of results.
  let s = 20250611;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const moments = Array.from({ length: 20 }, () => Math.round(300 + next() * referenceMs * 1.1));
  const failures: string[] = [];
  const queue = moments.map((ms, i) => ({ ms, dir: p(`kill-${i}`) }));
  await Promise.all(Array.from({ length: 3 }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const killed = await graft(trainArgs(job.dir), undefined, job.ms);
      const r = killed.status === 0 ? killed : await finish(job.dir);
      try {
        assert.equal(r.status, 0, r.err);
        checkFolder(job.dir);
        assert.deepEqual(outcome(job.dir), reference);
      } catch (e) {
        failures.push(`killed at ${job.ms} ms (${killed.signal ?? killed.status}): ${(e as Error).message.split('\n').slice(0, 6).join(' ')}`);
      }
    }
  }));
  assert.deepEqual(failures, []);
});

test('faults: Ctrl-C in each phase exits 130 with a way on, and resuming equals the uninterrupted run', async () => {
  const phases: [string, RegExp][] = [['model built', /trainable params/], ['training', /epoch 1\/3 33%/], ['final evaluation', /evaluating on/]];
  for (const [phase, when] of phases) {
    const dir = p(`int-${phase.replace(/ /g, '-')}`);
    let sent = false;
    const r = await graft(trainArgs(dir), (text, child) => {
      if (!sent && when.test(text)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    assert.ok(sent, phase);
    assert.equal(r.status, 130, `${phase}: ${r.err}`);
    assert.match(r.err, /interrupted/);
    assert.ok(!existsSync(join(dir, '.graft.lock')), `${phase}: lock released`);
    const done = await finish(dir);
    assert.equal(done.status, 0, done.err);
    checkFolder(dir);
    assert.deepEqual(outcome(dir), reference, phase);
  }
});

const canMount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', mkdtempSync(join(tmpdir(), 'graft-probe-'))]).status === 0;

test('faults: a full disk fails with the path and ENOSPC, leaving no partial files', { skip: canMount ? false : 'mounting a tmpfs needs root' }, async () => {
  const disk = p('full');
  mkdirSync(disk);
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=160k', 'tmpfs', disk]).status, 0);
  try {
    const r = await graft(trainArgs(join(disk, 'run')));
    assert.equal(r.status, 1, r.err);
    assert.match(r.err, new RegExp(`cannot write ${disk}/run/\\S+: no space left on the device; free space or choose another --output \\(ENOSPC\\)`));
    const left = spawnSync('find', [disk, '-name', '*.tmp'], { encoding: 'utf8' }).stdout.trim();
    assert.equal(left, '', 'no temporary files left');
    assert.ok(!existsSync(join(disk, 'run', '.graft.lock')));
  } finally {
    spawnSync('umount', [disk]);
  }
});

test('faults: a read-only folder is refused at once, nothing written', { skip: canMount ? false : 'mounting a tmpfs needs root' }, async () => {
  const ro = p('ro');
  mkdirSync(ro);
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]).status, 0);
  try {
    for (const out of [ro, join(ro, 'run')]) {
      const r = await graft(trainArgs(out));
      assert.equal(r.status, 2, r.err);
      assert.match(r.err, /(cannot write in the run folder|cannot use) .*(EROFS|read-only).*choose a writable --output/);
    }
    assert.deepEqual(readdirSync(ro), []);
  } finally {
    spawnSync('umount', [ro]);
  }
});

test('faults: a run with validation resumed after Ctrl-C keeps the best checkpoint an uninterrupted run keeps', async () => {
  for (const [k, c] of ['a', 'b'].entries()) {
    mkdirSync(p('img10', c), { recursive: true });
    for (let i = 0; i < 10; i++) {
      const px = Buffer.alloc(16 * 16 * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * (5 + i) + k * 70 + ((j * i) % 13) * 9) % 256;
      await sharp(px, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(p('img10', c, `${i}.png`));
    }
  }
  writeFileSync(p('config-val.json'), JSON.stringify({
    model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, method: 'lora', adapter: { targets: 'conv1', dropout: 0.3 },
    data: { source: p('img10'), perClass: 8, valFraction: 0.25, imageSize: 32 }, train: { epochs: 5, batchSize: 4, seed: 5, lr: 0.01 },
  }));
  const args = (out: string, ...more: string[]) => ['train', '-c', p('config-val.json'), '--output', out, ...more];
  const best = (dir: string) => (JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { training: { bestCheckpoint: unknown } }).training.bestCheckpoint;
  const whole = await graft(args(p('val-ref')));
  assert.equal(whole.status, 0, whole.err);
  assert.ok(best(p('val-ref')), 'the uninterrupted run kept a best checkpoint');
  // Ctrl-C once the third epoch's checkpoint is written (3 steps an epoch: 12 training images, batch 4).
  let sent = false;
  let polling = false;
  const cut = await graft(args(p('val-int')), (_text, child) => {
    if (polling) return;
    polling = true;
    const poll = setInterval(() => {
      if (sent || child.exitCode !== null) return clearInterval(poll);
      if (existsSync(p('val-int', 'checkpoint-9'))) {
        sent = true;
        child.kill('SIGINT');
      }
    }, 5);
  });
  assert.ok(sent, 'interrupted during training');
  assert.equal(cut.status, 130, cut.err);
  assert.ok(existsSync(p('val-int', 'best.safetensors')), 'the best choice so far is on disk');
  const done = await graft(args(p('val-int'), '--resume'));
  assert.equal(done.status, 0, done.err);
  assert.deepEqual(best(p('val-int')), best(p('val-ref')));
  assert.deepEqual(outcome(p('val-int')), outcome(p('val-ref')));
  assert.ok(!existsSync(p('val-int', 'best.safetensors')), 'removed once the results are saved');
  checkFolder(p('val-int'));
});
