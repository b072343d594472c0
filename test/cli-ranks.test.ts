// The command line with the methods whose training decides the adapter's shape: DyLoRA's rank
// chosen on validation (per-rank accuracy in the log and report, the rank-b adapter saved beside
// the whole one, `graft eval --rank`), AdaLoRA's truncated adapter reloaded by eval, and
// `graft inspect` on a run folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const root = mkdtempSync(join(tmpdir(), 'graft-cli-ranks-'));
const data = join(root, 'images');

function graft(...args: string[]) {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

async function makeImages(): Promise<void> {
  for (const [k, name] of ['dark', 'light', 'stripes'].entries()) {
    mkdirSync(join(data, name), { recursive: true });
    for (let i = 0; i < 6; i++) {
      const px = Buffer.alloc(32 * 32 * 3);
      for (let p = 0; p < 32 * 32; p++) {
        const v = k === 0 ? 20 + i : k === 1 ? 220 - i : (p % 32) % 8 < 4 ? 230 : 20;
        px.set([v, v, v], p * 3);
      }
      await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, name, `${i}.png`));
    }
  }
}

test('cli: dylora compares its ranks on validation, saves the chosen rank alone, and eval --rank evaluates any rank', async () => {
  await makeImages();
  const run = join(root, 'dylora');
  const t = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '4', '--val-fraction', '0.5', '--method', 'dylora', '--rank', '3',
    '--targets', '.*project', '--epochs', '1', '--batch-size', '2', '--output', run);
  assert.equal(t.status, 0, t.err + t.out);
  for (const b of [1, 2, 3]) assert.match(t.out, new RegExp(`rank ${b}: validation accuracy \\d+\\.\\d+%`));
  const report = JSON.parse(readFileSync(join(run, 'report.json'), 'utf8')) as { rankSelection: { chosen: number; perRank: { rank: number }[] }; summary: { rank: number } };
  const b = report.rankSelection.chosen;
  assert.deepEqual(report.rankSelection.perRank.map((p) => p.rank), [1, 2, 3]);
  assert.equal(report.summary.rank, b);
  assert.match(readFileSync(join(run, 'report.md'), 'utf8'), /validation accuracy per rank \| 1: \d+\.\d+%, 2: /);
  const whole = JSON.parse(readFileSync(join(run, 'adapter', 'adapter_config.json'), 'utf8')) as { graft_dylora: { chosen_rank: number } };
  assert.equal(whole.graft_dylora.chosen_rank, b);
  const alone = JSON.parse(readFileSync(join(run, `adapter-r${b}`, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(alone['peft_type'], 'LORA');
  assert.equal(alone['r'], b);
  const e = graft('eval', run, '--data', data, '--rank', '1');
  assert.equal(e.status, 0, e.err);
  assert.match(e.out, /dylora at rank 1 on/);
  assert.equal((JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as { rank: number }).rank, 1);
  const bad = graft('eval', run, '--data', data, '--rank', '4');
  assert.equal(bad.status, 1);
  assert.match(bad.err, /rank 4 is outside the trained range 1…3/);
  const i = graft('inspect', run);
  assert.equal(i.status, 0, i.err);
  assert.match(i.out, /dylora \(peft_type LORA\)/);
  assert.match(i.out, /block_1_project\s+3\s+[\d,]+/);
});

test('cli: an adalora run trains, eval reloads its truncated adapter, inspect shows the kept rank per layer; bad fields exit 2', () => {
  const run = join(root, 'adalora');
  const cfg = join(root, 'adalora.json');
  writeFileSync(cfg, JSON.stringify({ adalora: { initR: 4, targetR: 2 } }));
  const t = graft('train', '-c', cfg, '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '4', '--method', 'adalora',
    '--targets', '.*project', '--epochs', '2', '--batch-size', '4', '--val-fraction', '0.5', '--output', run);
  assert.equal(t.status, 0, t.err + t.out);
  // The best validation epoch is put back before AdaLoRA cuts its tensors to the kept ranks.
  assert.match(t.out, /kept the best validation checkpoint: epoch [12] of 2/);
  const acc = /test accuracy (\d+\.\d+)%/.exec(t.out)![1];
  const json = JSON.parse(readFileSync(join(run, 'adapter', 'adapter_config.json'), 'utf8')) as { rank_pattern: Record<string, boolean[]> };
  const kept = Object.values(json.rank_pattern).map((v) => v.filter(Boolean).length);
  assert.equal(kept.reduce((a, k) => a + k, 0), 2 * kept.length);
  const e = graft('eval', run, '--data', data);
  assert.equal(e.status, 0, e.err);
  assert.ok(existsSync(join(run, 'eval.json')));
  const i = graft('inspect', join(run, 'adapter'));
  assert.equal(i.status, 0, i.err);
  assert.match(i.out, /adalora \(peft_type ADALORA\).*init_r=4, target_r=2/);
  assert.match(i.out, /block_1_project\s+[0-4]\s+[\d,]+/);
  assert.ok(acc !== undefined);
  writeFileSync(cfg, JSON.stringify({ adalora: { initR: 0, orthRegWeigth: 1 } }));
  const b = graft('train', '-c', cfg, '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '4', '--method', 'adalora');
  assert.equal(b.status, 2);
  assert.match(b.err, /adalora\.initR: Too small/);
  assert.match(b.err, /adalora: Unrecognized key: "orthRegWeigth"/);
});
