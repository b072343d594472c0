// NF4/FP4 quantisation against bitsandbytes' reference algorithm (fixtures/quant/
// make_quant_fixtures.py): packed codes, absmax, the double-quantised state and the dequantised
// values equal the fixture bit for bit, odd lengths and tail blocks included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { blockScales, dequantize4, dynamicMap, FP4_CODE, NF4_CODE, quantize4, checkBlocksize, type QuantType } from '../src/tensor/quant4.js';

interface Case {
  name: string; quantType: QuantType; blocksize: number; n: number;
  input: string; packed: string; absmax: string; dequant: string;
  double: { offset: number; qabsmax: string; nestedAbsmax: string; absmax: string; dequant: string };
}
const fx = JSON.parse(readFileSync(new URL('../../fixtures/quant/quant4.json', import.meta.url), 'utf8')) as {
  nf4: number[]; fp4: number[]; dynamicMap: string; cases: Case[]; ties: Record<QuantType, { input: string; packed: string }>;
};
const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const f32 = (s: string) => { const b = bytes(s); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4); };

/** Equal as float32 bit patterns (so −0 and 0 differ, as bit for bit means). */
function sameBits(got: Float32Array, want: Float32Array, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < g.length; i++) if (g[i] !== w[i]) assert.fail(`${what}[${i}]: graft ${got[i]}, reference ${want[i]}`);
}
function sameBytes(got: Uint8Array, want: Uint8Array, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) assert.fail(`${what}[${i}]: graft ${got[i]}, reference ${want[i]}`);
}

test('code tables and the dynamic map equal bitsandbytes\'', () => {
  sameBits(NF4_CODE, Float32Array.from(fx.nf4), 'NF4');
  sameBits(FP4_CODE, Float32Array.from(fx.fp4), 'FP4');
  sameBits(dynamicMap(), f32(fx.dynamicMap), 'dynamic map');
});

for (const c of fx.cases) {
  test(`quantise ${c.name}: bit for bit`, () => {
    const x = f32(c.input);
    const q = quantize4(x, [c.n], { quantType: c.quantType, blocksize: c.blocksize });
    sameBytes(q.packed, bytes(c.packed), 'packed');
    sameBits(q.state.absmax as Float32Array, f32(c.absmax), 'absmax');
    sameBits(dequantize4(q), f32(c.dequant), 'dequantised');
    const d = quantize4(x, [c.n], { quantType: c.quantType, blocksize: c.blocksize, doubleQuant: true });
    sameBytes(d.packed, bytes(c.packed), 'packed (double quant)');
    assert.equal(d.state.nested!.offset, Math.fround(c.double.offset), 'nested offset');
    sameBytes(d.state.absmax as Uint8Array, bytes(c.double.qabsmax), 'quantised absmax');
    sameBits(d.state.nested!.absmax, f32(c.double.nestedAbsmax), 'nested absmax');
    sameBits(blockScales(d.state), f32(c.double.absmax), 'absmax after double dequantisation');
    sameBits(dequantize4(d), f32(c.double.dequant), 'dequantised (double quant)');
  });
}

test('a value exactly on a midpoint takes the lower code (bucketize)', () => {
  for (const kind of ['nf4', 'fp4'] as const) {
    const x = f32(fx.ties[kind].input);
    sameBytes(quantize4(x, [x.length], { quantType: kind }).packed, bytes(fx.ties[kind].packed), `${kind} ties`);
  }
});

test('block sizes outside 32…4096 or not powers of two are refused', () => {
  for (const bs of [16, 48, 8192, 0]) assert.throws(() => checkBlocksize(bs), /power of two from 32 to 4096/);
  assert.throws(() => quantize4(new Float32Array(3), [4]), /3 values/);
});
