// The command line end to end on a tiny image folder made here: a corrupt file and a non-image
// file included (reported, not fatal).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const root = mkdtempSync(join(tmpdir(), 'graft-cli-'));
const data = join(root, 'images');
const run = join(root, 'run');

function graft(...args: string[]) {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

async function makeImages(): Promise<void> {
  for (const c of ['circles', 'stripes']) mkdirSync(join(data, c), { recursive: true });
  for (let i = 0; i < 4; i++) {
    const px = Buffer.alloc(32 * 32 * 3);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
      const v = (x + i) % 8 < 4 ? 230 : 20;
      px.set([v, v, v], (y * 32 + x) * 3);
    }
    await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(data, 'stripes', `s${i}.png`));
    const c = Buffer.alloc(32 * 32 * 3);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
      const r = Math.hypot(x - 16, y - 16 + i);
      c.set(r < 10 ? [200, 40, 40] : [10, 10, 60], (y * 32 + x) * 3);
    }
    await sharp(c, { raw: { width: 32, height: 32, channels: 3 } }).jpeg().toFile(join(data, 'circles', `c${i}.jpg`));
  }
  writeFileSync(join(data, 'circles', 'corrupt.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0x00, 0x01]));
  writeFileSync(join(data, 'stripes', 'README.txt'), 'not an image');
}

test('cli: train → eval → predict → merge on a tiny folder, bad images reported, not fatal', async () => {
  await makeImages();
  const t = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', data, '--per-class', '2', '--method', 'lora', '--targets', '.*project',
    '--epochs', '1', '--batch-size', '2', '--output', run);
  assert.equal(t.status, 0, t.err + t.out);
  assert.match(t.out, /trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: /);
  assert.match(t.out, /warning: skipped .*corrupt\.jpg: unreadable image/);
  assert.match(t.out, /warning: skipped .*README\.txt: not an image file/);
  assert.match(t.out, /test accuracy \d+\.\d+%/);
  assert.doesNotMatch(t.out, /single colour/, 'stripes and circles are no single colour');
  for (const f of ['run.json', 'report.json', 'report.md', 'metrics.jsonl', 'adapter/adapter_config.json', 'adapter/adapter_model.safetensors']) {
    assert.ok(existsSync(join(run, f)), `${f} written`);
  }
  const report = JSON.parse(readFileSync(join(run, 'report.json'), 'utf8')) as { classes: string[]; metrics: { confusion: number[][] } };
  assert.deepEqual(report.classes, ['circles', 'stripes']);

  const e = graft('eval', run, '--data', data);
  assert.equal(e.status, 0, e.err);
  assert.match(e.out, /\| accuracy \| \d+\.\d+% \|/);

  const p = graft('predict', run, join(data, 'stripes'), '--format', 'json');
  assert.equal(p.status, 0, p.err);
  const pred = JSON.parse(p.out) as { predictions: { file: string; label: string; scores: number[] }[] };
  assert.equal(pred.predictions.length, 4);
  for (const r of pred.predictions) assert.ok(Math.abs(r.scores.reduce((a, b) => a + b, 0) - 1) < 1e-4);
  const csv = graft('predict', run, join(data, 'circles', 'c0.jpg'), join(data, 'circles', 'corrupt.jpg'), '--format', 'csv');
  // The readable image's row is written; the unreadable one makes the exit status 2.
  assert.equal(csv.status, 2);
  assert.match(csv.out, /^file,label,circles,stripes\n.*c0\.jpg,(circles|stripes),/);
  assert.match(csv.err, /corrupt\.jpg: cannot decode image/);

  const merged = join(root, 'merged.safetensors');
  const m = graft('merge', run, '--output', merged);
  assert.equal(m.status, 0, m.err);
  assert.ok(existsSync(merged));
});

test('cli: bad flags and configurations exit with status 2 and name the field', () => {
  const lr = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', 'x', '--per-class', '2', '--lr', 'fast');
  assert.equal(lr.status, 2);
  assert.match(lr.err, /--lr must be a number; got 'fast'/);
  const cfg = join(root, 'bad.json');
  writeFileSync(cfg, JSON.stringify({ model: 'nsfwjs_mobilenet_v2', data: { source: data, perClass: 2 }, train: { epochs: 0 }, method: 'magic' }));
  const c = graft('train', '-c', cfg);
  assert.equal(c.status, 2);
  assert.match(c.err, /method: Invalid option/);
  assert.match(c.err, /train\.epochs: Too small/);
  const prec = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', 'x', '--per-class', '2', '--precision', 'fp16');
  assert.equal(prec.status, 2);
  assert.match(prec.err, /train\.precision: Invalid option/);
  const u = graft('frobnicate');
  assert.equal(u.status, 2);
  const list = graft('inspect', '--list');
  assert.equal(list.status, 0);
  assert.match(list.out, /nsfwjs_mobilenet_v2/);
  assert.match(list.out, /vit_small_patch16_224/);
});

test('cli: --precision bf16 trains a ViT with LoRA on a 4-bit base, says how, reports it, and graft eval reloads the run', async () => {
  if (!existsSync(data)) await makeImages();
  const cfg = join(root, 'vit-bf16.json');
  const out = join(root, 'run-bf16');
  writeFileSync(cfg, JSON.stringify({ model: 'vit_small_patch16_224', modelOverrides: { depth: 2, embedDim: 32, numHeads: 2 }, data: { source: data, perClass: 2, imageSize: 32 } }));
  const t = graft('train', '-c', cfg, '--method', 'lora', '--quantize', 'nf4', '--precision', 'bf16', '--epochs', '2', '--batch-size', '2', '--output', out);
  assert.equal(t.status, 0, t.err + t.out);
  assert.match(t.out, /precision bf16: /);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { metrics: { accuracy: number }; memory: { precision: string } };
  assert.equal(report.memory.precision, 'bf16');
  assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /\| training precision \| bf16/);
  const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { config: { train: { precision: string } } };
  assert.equal(run.config.train.precision, 'bf16');
  const e = graft('eval', out, '--data', data);
  assert.equal(e.status, 0, e.err);
});

test('cli: images that decode to a single colour (black shapes on a transparent background) are warned about', async () => {
  const dir = join(root, 'glyphs');
  for (const c of ['square', 'bar']) mkdirSync(join(dir, c), { recursive: true });
  for (let i = 0; i < 3; i++) {
    for (const c of ['square', 'bar']) {
      const px = Buffer.alloc(32 * 32 * 4); // transparent black
      for (let y = 8; y < 24; y++) for (let x = c === 'bar' ? 14 : 8; x < (c === 'bar' ? 18 : 24); x++) px[(y * 32 + x) * 4 + 3] = 255 - i;
      await sharp(px, { raw: { width: 32, height: 32, channels: 4 } }).png().toFile(join(dir, c, `${i}.png`));
    }
  }
  const t = graft('train', '--model', 'nsfwjs_mobilenet_v2', '--data', dir, '--per-class', '2', '--method', 'linear-probe', '--epochs', '1', '--output', join(root, 'run-glyphs'));
  assert.equal(t.status, 0, t.err + t.out);
  assert.match(t.out, /warning: \d of the first \d training images are a single colour once decoded/);
});
