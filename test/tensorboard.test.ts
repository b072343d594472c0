// `graft train --report-to tensorboard`: the event files parsed back by a reader written here
// (TFRecord framing with both masked CRC-32C checked, the Event and Summary protocol buffers
// decoded field by field) hold the Hugging Face Trainer's scalars (train/loss, train/learning_rate,
// train/grad_norm, train/epoch, eval/*) at the steps metrics.jsonl logged them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const root = mkdtempSync(join(tmpdir(), 'graft-tb-'));

/** CRC-32C bit by bit (no table), the reference for the writer's table-driven one. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}
const masked = (b: Uint8Array) => {
  const c = crc32cBitwise(b);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
};

class Proto {
  pos = 0;
  constructor(readonly b: Uint8Array) {}
  get done() { return this.pos >= this.b.length; }
  varint(): bigint {
    let shift = 0n;
    let v = 0n;
    for (;;) {
      const x = this.b[this.pos++]!;
      v |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) return v;
      shift += 7n;
    }
  }
  /** [field number, wire type, value]: varints as bigint, fixed64/fixed32 as their bytes, length-delimited as bytes. */
  next(): [number, number, bigint | Uint8Array] {
    const k = Number(this.varint());
    const field = k >> 3;
    const wire = k & 7;
    if (wire === 0) return [field, wire, this.varint()];
    const n = wire === 1 ? 8 : wire === 5 ? 4 : wire === 2 ? Number(this.varint()) : -1;
    if (n < 0) throw new Error(`wire type ${wire}`);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return [field, wire, v];
  }
}

interface Ev { wallTime: number; step: number; fileVersion?: string; values: Record<string, number> }

function readEvents(file: string): Ev[] {
  const buf = readFileSync(file);
  const events: Ev[] = [];
  let off = 0;
  while (off < buf.length) {
    const lenBytes = buf.subarray(off, off + 8);
    assert.equal(buf.readUInt32LE(off + 8), masked(lenBytes), `length crc at ${off}`);
    const len = Number(buf.readBigUInt64LE(off));
    const data = buf.subarray(off + 12, off + 12 + len);
    assert.equal(buf.readUInt32LE(off + 12 + len), masked(data), `data crc at ${off}`);
    off += 16 + len;
    const ev: Ev = { wallTime: 0, step: 0, values: {} };
    const p = new Proto(data);
    while (!p.done) {
      const [f, , v] = p.next();
      if (f === 1) ev.wallTime = Buffer.from(v as Uint8Array).readDoubleLE(0);
      else if (f === 2) ev.step = Number(v as bigint);
      else if (f === 3) ev.fileVersion = Buffer.from(v as Uint8Array).toString();
      else if (f === 5) {
        const s = new Proto(v as Uint8Array);
        while (!s.done) {
          const [sf, , sv] = s.next();
          assert.equal(sf, 1, 'Summary.value');
          const val = new Proto(sv as Uint8Array);
          let tag = '';
          let x = Number.NaN;
          while (!val.done) {
            const [vf, vw, vv] = val.next();
            if (vf === 1) tag = Buffer.from(vv as Uint8Array).toString();
            else if (vf === 2 && vw === 5) x = Buffer.from(vv as Uint8Array).readFloatLE(0);
          }
          ev.values[tag] = x;
        }
      }
    }
    events.push(ev);
  }
  return events;
}

test('tensorboard: CRC-32C of the standard check string', () => {
  assert.equal(crc32cBitwise(Buffer.from('123456789')), 0xe3069283);
});

test('graft train --report-to tensorboard: the event file holds the Trainer\'s scalars at their steps', async () => {
  for (const [k, c] of ['a', 'b'].entries()) {
    mkdirSync(join(root, 'img', c), { recursive: true });
    for (let i = 0; i < 6; i++) {
      const px = Buffer.alloc(16 * 16 * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * (7 + i) + k * 90) % 256;
      await sharp(px, { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(join(root, 'img', c, `${i}.png`));
    }
  }
  writeFileSync(join(root, 'config.json'), JSON.stringify({
    model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] }, method: 'lora', adapter: { targets: 'conv1' },
    data: { source: join(root, 'img'), perClass: 5, imageSize: 32, valFraction: 0.4 }, train: { epochs: 2, batchSize: 2, seed: 1 },
  }));
  const out = join(root, 'run');
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'train', '-c', join(root, 'config.json'), '--output', out, '--report-to', 'tensorboard'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const files = readdirSync(join(out, 'tensorboard'));
  assert.equal(files.length, 1);
  assert.match(files[0]!, /^events\.out\.tfevents\.\d+\..+\.\d+\.0$/);
  const events = readEvents(join(out, 'tensorboard', files[0]!));
  assert.equal(events[0]!.fileVersion, 'brain.Event:2');
  const history = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const scalarEvents = events.slice(1);
  assert.equal(scalarEvents.length, history.length);
  const f32 = (x: number) => Math.fround(x);
  history.forEach((h, i) => {
    const e = scalarEvents[i]!;
    assert.equal(e.step, h['step']);
    assert.ok(e.wallTime > 1.7e9 && e.wallTime >= events[0]!.wallTime - 1);
    if ('loss' in h) {
      assert.deepEqual(Object.keys(e.values).sort(), ['train/epoch', 'train/grad_norm', 'train/learning_rate', 'train/loss']);
      assert.equal(e.values['train/loss'], f32(h['loss']!));
      assert.equal(e.values['train/learning_rate'], f32(h['learning_rate']!));
      assert.equal(e.values['train/grad_norm'], f32(h['grad_norm']!));
    } else if (!Object.keys(h).some((k) => k.startsWith('eval_'))) {
      // The end-of-training entry (train_runtime, …) → train/train_runtime, as the Trainer logs it.
      assert.deepEqual(Object.keys(e.values).sort(), Object.keys(h).filter((k) => k !== 'step').map((k) => `train/${k}`).sort());
    } else {
      assert.ok('eval/accuracy' in e.values && 'eval/loss' in e.values && 'eval/f1' in e.values && 'eval/runtime' in e.values, JSON.stringify(e.values));
      assert.equal(e.values['eval/accuracy'], f32(h['eval_accuracy']!));
      assert.equal(e.values['train/epoch'], f32(h['epoch']!));
    }
  });
  assert.ok(scalarEvents.filter((e) => 'train/loss' in e.values).length >= 4);
  assert.equal(scalarEvents.filter((e) => 'eval/accuracy' in e.values).length, 2);
  // Without the flag, no event file.
  const plain = spawnSync(process.execPath, ['dist/src/cli/main.js', 'train', '-c', join(root, 'config.json'), '--output', join(root, 'plain')], { encoding: 'utf8' });
  assert.equal(plain.status, 0, plain.stderr);
  assert.ok(!readdirSync(join(root, 'plain')).includes('tensorboard'));
  // A bad value names the flag.
  const bad = spawnSync(process.execPath, ['dist/src/cli/main.js', 'train', '-c', join(root, 'config.json'), '--output', join(root, 'bad'), '--report-to', 'wandb'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--report-to: 'wandb' is not supported/);
});
