// A study on several machines through BullMQ on a real Redis (Debian's redis-server on a
// loopback port): `graft study --queue` puts six tiny cells on the queue, two `graft worker`s take
// them, one is killed with SIGKILL in the middle of a cell; the other takes that cell over once its
// job lock expires and resumes it from the checkpoint. Every cell is trained to completion once and
// the table equals the one-machine study's. `--status` reads the queue.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTwoClassFolder } from './helpers/tiny-runs.js';

const root = mkdtempSync(join(tmpdir(), 'graft-queue-'));
const p = (...parts: string[]) => join(root, ...parts);
const CLI = 'dist/src/cli/main.js';
const REDIS = '/usr/bin/redis-server';
const port = 20000 + (process.pid % 20000);
const url = `redis://127.0.0.1:${port}`;
const queueName = `graft-test-${process.pid}`;
const started: ChildProcess[] = [];

after(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Proc { child: ChildProcess; out: () => string; done: Promise<{ status: number | null; signal: NodeJS.Signals | null }> }

function graft(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  started.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (status, signal) => r({ status, signal })));
  return { child, out: () => out, done };
}

function table(dir: string): unknown {
  const t = JSON.parse(readFileSync(join(dir, 'table.json'), 'utf8')) as { rows: { cells: Record<string, unknown> }[] };
  for (const r of t.rows) delete r.cells['trainSeconds'];
  return t.rows;
}

/** The cell folder whose lock `pid` holds and which has a checkpoint already. */
function cellMidway(dir: string, pid: number): string | null {
  const cells = join(dir, 'cells');
  if (!existsSync(cells)) return null;
  for (const c of readdirSync(cells)) {
    try {
      const lock = JSON.parse(readFileSync(join(cells, c, '.graft.lock'), 'utf8')) as { pid: number };
      if (lock.pid === pid && readdirSync(join(cells, c)).some((n) => /^checkpoint-\d+$/.test(n))) return c;
    } catch {
      // no lock (yet)
    }
  }
  return null;
}

const unavailable = existsSync(REDIS) ? null : `${REDIS} is not installed: apt-get install -y redis-server`;

test('queue: two workers, one killed mid-cell; every cell done once, the same table as one machine', { skip: unavailable ?? false }, async () => {
  const redis = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(redis);
  await new Promise<void>((ready, fail) => {
    let text = '';
    redis.stdout!.on('data', (d: Buffer) => { text += d.toString(); if (/Ready to accept connections/.test(text)) ready(); });
    redis.on('exit', () => fail(new Error(`redis-server exited: ${text}`)));
  });

  await writeTwoClassFolder(p('img'));
  writeFileSync(p('study.json'), JSON.stringify({
    name: 'six',
    base: { model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, adapter: { targets: 'conv1', dropout: 0.3 }, data: { source: p('img'), perClass: 3, imageSize: 32 }, train: { epochs: 4, batchSize: 2 } },
    grid: { 'method+adapter.r': [['lora', 4], ['dora', 8]] }, baselines: { frozen: { method: 'linear-probe' } }, seeds: [1, 2],
  }));
  const one = graft(['study', p('study.json'), '--output', p('one')]);
  assert.equal((await one.done).status, 0, one.out());

  const coordinator = graft(['study', p('study.json'), '--output', p('many'), '--queue', url, '--queue-name', queueName]);
  const workerArgs = ['worker', '--queue', url, '--queue-name', queueName, '--lock-seconds', '3', '--until-empty'];
  const a = graft(workerArgs);
  const b = graft(workerArgs);
  let killed: string | null = null;
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      killed = cellMidway(p('many'), a.child.pid!);
      if (killed || a.child.exitCode !== null) {
        clearInterval(timer);
        a.child.kill('SIGKILL');
        done();
      }
    }, 20);
  });
  assert.ok(killed, `worker A was killed mid-cell:\n${a.out()}`);
  assert.equal((await a.done).signal, 'SIGKILL');
  const c = await coordinator.done;
  assert.equal(c.status, 0, coordinator.out());
  assert.equal((await b.done).status, 0, b.out());

  const all = a.out() + b.out();
  for (const cell of ['lora_4-s1', 'lora_4-s2', 'dora_8-s1', 'dora_8-s2', 'frozen-s1', 'frozen-s2']) {
    assert.equal(all.split(`cell ${cell} finished in`).length - 1, 1, `${cell} trained to completion once\n${all}`);
  }
  assert.doesNotMatch(a.out(), new RegExp(`cell ${killed} finished`));
  assert.match(b.out(), new RegExp(`cell ${killed} of study six \\(resuming from its checkpoint\\)`));
  assert.deepEqual(table(p('many')), table(p('one')));
  assert.match(coordinator.out(), /6\/6 done/);
  assert.ok(existsSync(p('many', 'report.html')));

  const status = spawnSync(process.execPath, [CLI, 'study', p('study.json'), '--output', p('many'), '--status', '--queue', url, '--queue-name', queueName], { encoding: 'utf8' });
  assert.equal(status.status, 0, status.stderr);
  assert.match(status.stdout, /6 done · 0 running · 0 waiting · 0 failed \(of 6\)/);
  // A wrong address fails at once, naming the flag.
  const bad = spawnSync(process.execPath, [CLI, 'worker', '--queue', 'redis://127.0.0.1:1'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--queue: cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
});
