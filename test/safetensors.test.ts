// safetensors reader/writer: round trip, half-precision decoding, and clear errors on bad files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as g from '../src/index.js';
import { loadSafetensors, saveSafetensors, SafetensorsFile } from '../src/io/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'graft-st-'));

function rawFile(name: string, header: object, data: Buffer): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

test('safetensors: save and load round trip exactly, with metadata, leaving no temporary file', () => {
  const path = join(dir, 'a.safetensors');
  const w = g.randn([3, 4]);
  const ids = g.tensor([1, -2, 3], undefined, { dtype: 'int32' });
  saveSafetensors(path, { 'layer.weight': w, ids }, { format: 'pt' });
  const f = new SafetensorsFile(path);
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual(f.keys().sort(), ['ids', 'layer.weight']);
  f.close();
  const back = loadSafetensors(path);
  assert.deepEqual(back.get('layer.weight')!.toArray(), w.toArray());
  assert.deepEqual([...back.get('ids')!.toArray()], [1, -2, 3]);
  assert.equal((8 + Number(readFileSync(path).readBigUInt64LE(0))) % 8, 0, 'data section is 8-byte aligned');
  assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.tmp')), []);
});

test('safetensors: F16 and BF16 decode to the float32 values they encode', () => {
  // F16: 1.0 = 0x3c00, -2.0 = 0xc000, 65504 = 0x7bff, smallest subnormal 2^-24 = 0x0001.
  const f16 = Buffer.alloc(8);
  [0x3c00, 0xc000, 0x7bff, 0x0001].forEach((v, i) => f16.writeUInt16LE(v, 2 * i));
  // BF16: 1.0 = 0x3f80, -0.5 = 0xbf00, 3.140625 = 0x4049.
  const bf16 = Buffer.alloc(6);
  [0x3f80, 0xbf00, 0x4049].forEach((v, i) => bf16.writeUInt16LE(v, 2 * i));
  const path = rawFile('half.safetensors', {
    a: { dtype: 'F16', shape: [4], data_offsets: [0, 8] },
    b: { dtype: 'BF16', shape: [3], data_offsets: [8, 14] },
  }, Buffer.concat([f16, bf16]));
  const t = loadSafetensors(path);
  assert.deepEqual([...t.get('a')!.toArray()], [1, -2, 65504, 2 ** -24]);
  assert.deepEqual([...t.get('b')!.toArray()], [1, -0.5, 3.140625]);
});

test('safetensors: truncated and corrupt files give one clear error', () => {
  const good = join(dir, 'good.safetensors');
  saveSafetensors(good, { w: g.ones([64]) });
  const bytes = readFileSync(good);
  const truncated = join(dir, 'truncated.safetensors');
  writeFileSync(truncated, bytes.subarray(0, bytes.length - 10));
  assert.throws(() => loadSafetensors(truncated), /not a valid safetensors file: tensor 'w' ends at byte 256 .* truncated/);
  const garbage = join(dir, 'garbage.safetensors');
  writeFileSync(garbage, Buffer.from('this is not a checkpoint at all'));
  assert.throws(() => loadSafetensors(garbage), /not a valid safetensors file: the header claims/);
  const badJson = rawFile('badjson.safetensors', {}, Buffer.alloc(0));
  writeFileSync(badJson, Buffer.concat([readFileSync(badJson).subarray(0, 8), Buffer.from('{x')]));
  assert.throws(() => loadSafetensors(badJson), /not a valid safetensors file/);
  const wrongSize = rawFile('size.safetensors', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8));
  assert.throws(() => loadSafetensors(wrongSize), /needs 12 bytes but its offsets span 8/);
  assert.throws(() => loadSafetensors(join(dir, 'missing.safetensors')), /cannot open/);
});
