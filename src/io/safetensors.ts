// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: { string: string } }),
// then the raw little-endian tensor bytes. Files are read tensor by tensor with positioned
// reads, so loading never holds more than the tensors asked for; writes are atomic.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { WeightsError } from '../errors.js';
import { writeChunksAtomic } from './atomic.js';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Backend } from '../backends/backend.js';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTES: Record<SafetensorsDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  dataOffsets: [number, number];
}

export class SafetensorsError extends WeightsError {
  override name = 'SafetensorsError';
}

/** Converts IEEE half-precision bits to a number. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** An open safetensors file: the validated header, and tensors read on demand. */
export class SafetensorsFile {
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private readonly dataStart: number;
  private fd: number | null;

  constructor(readonly path: string) {
    let size: number;
    try {
      size = statSync(path).size;
      this.fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(`cannot open ${path}: ${(e as Error).message}`);
    }
    const fd = this.fd!;
    function fail(why: string): never {
      closeSync(fd);
      throw new SafetensorsError(`${path} is not a valid safetensors file: ${why}. Re-download or re-export the checkpoint.`);
    }
    if (size < 8) fail(`it has ${size} bytes, fewer than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > 100_000_000 || 8 + headerLen > size) fail(`the header claims ${headerLen} bytes but the file has ${size}`);
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      fail(`its JSON header does not parse (${(e as Error).message})`);
    }
    this.dataStart = 8 + headerLen;
    const dataLen = size - this.dataStart;
    this.metadata = (header['__metadata__'] as Record<string, string> | undefined) ?? {};
    this.tensors = new Map();
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
      if (!info || typeof info.dtype !== 'string' || !(info.dtype in BYTES)) fail(`tensor '${name}' has unknown dtype ${JSON.stringify(info?.dtype)}`);
      if (!Array.isArray(info.shape) || info.shape.some((d) => !Number.isInteger(d) || d < 0)) fail(`tensor '${name}' has an invalid shape`);
      const [b, e] = info.data_offsets ?? [];
      if (!Number.isInteger(b) || !Number.isInteger(e) || b! < 0 || e! < b!) fail(`tensor '${name}' has invalid data_offsets`);
      const dtype = info.dtype as SafetensorsDType;
      const expected = info.shape!.reduce((p, d) => p * d, 1) * BYTES[dtype];
      if (e! - b! !== expected) fail(`tensor '${name}' (${dtype} ${JSON.stringify(info.shape)}) needs ${expected} bytes but its offsets span ${e! - b!}`);
      if (e! > dataLen) fail(`tensor '${name}' ends at byte ${e} but the data section has ${dataLen} bytes (the file is truncated)`);
      this.tensors.set(name, { dtype, shape: info.shape!, dataOffsets: [b!, e!] });
    }
    // As the reference reader: the byte ranges, in offset order, tile the data section exactly,
    // so no two tensors share bytes and no bytes lie outside a tensor.
    let end = 0;
    for (const [name, info] of [...this.tensors].sort(([, a], [, c]) => a.dataOffsets[0] - c.dataOffsets[0] || a.dataOffsets[1] - c.dataOffsets[1])) {
      const [b, e] = info.dataOffsets;
      if (b < end) fail(`tensor '${name}' starts at byte ${b}, inside the bytes of another tensor (which end at ${end}); tensors must not overlap`);
      if (b > end) fail(`bytes ${end}..${b} of the data section belong to no tensor; the data section must be contiguous`);
      end = e;
    }
    if (end !== dataLen) fail(`the tensors end at byte ${end} but the data section has ${dataLen} bytes; the data section must hold the tensors and nothing else`);
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  /** Reads one tensor as float32 (floats) or int32 (integers). */
  get(name: string, opts: { backend?: Backend<any> } = {}): Tensor {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(`${this.path} has no tensor '${name}'`);
    if (this.fd === null) throw new SafetensorsError(`${this.path} is closed`);
    const [b, e] = info.dataOffsets;
    const bytes = Buffer.alloc(e - b);
    readSync(this.fd, bytes, 0, e - b, this.dataStart + b);
    return tensor(decode(bytes, info.dtype), info.shape, { backend: opts.backend });
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function decode(bytes: Buffer, dtype: SafetensorsDType): Float32Array | Int32Array {
  const n = bytes.length / BYTES[dtype];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    }
    case 'F64':
      return Float32Array.from({ length: n }, (_, i) => dv.getFloat64(8 * i, true));
    case 'F16':
      return Float32Array.from({ length: n }, (_, i) => f16ToF32(dv.getUint16(2 * i, true)));
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true) << 16;
      return new Float32Array(out.buffer);
    }
    case 'I64':
      return Int32Array.from({ length: n }, (_, i) => Number(dv.getBigInt64(8 * i, true)));
    case 'I32':
      return Int32Array.from({ length: n }, (_, i) => dv.getInt32(4 * i, true));
    case 'I16':
      return Int32Array.from({ length: n }, (_, i) => dv.getInt16(2 * i, true));
    case 'I8':
      return Int32Array.from({ length: n }, (_, i) => dv.getInt8(i));
    case 'U8':
    case 'BOOL':
      return Int32Array.from(bytes);
  }
}

const isFloatDType = (d: SafetensorsDType) => d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';

/**
 * Copies every tensor of `want` from the safetensors file `path`, strictly: every key present,
 * none extra, each with the model's shape and a dtype of its kind (a float tensor from F16, BF16,
 * F32 or F64; an integer tensor from an integer dtype). Nothing is copied unless all fit; the
 * error (WeightsError) lists every problem. `what` names the file's role in the message.
 */
export function loadTensorsInto(want: ReadonlyMap<string, Tensor>, path: string, what: string): void {
  const f = new SafetensorsFile(path);
  try {
    const problems: string[] = [];
    for (const [k, t] of want) {
      const info = f.tensors.get(k);
      if (!info) problems.push(`  missing: ${k}`);
      else if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) problems.push(`  shape mismatch for ${k}: the model has [${t.shape.join(', ')}], the file has [${info.shape.join(', ')}]`);
      else if (isFloatDType(info.dtype) !== (t.dtype === 'float32' || t.dtype === 'float64')) problems.push(`  dtype mismatch for ${k}: the model has ${t.dtype}, the file has ${info.dtype}`);
    }
    for (const k of f.tensors.keys()) if (!want.has(k)) problems.push(`  unexpected: ${k}`);
    if (problems.length) {
      const shown = problems.length > 12 ? [...problems.slice(0, 12), `  … and ${problems.length - 12} more`] : problems;
      throw new WeightsError(`${what} ${path} does not fit the model (${problems.length} problems):\n${shown.join('\n')}\nThe file was written for another model, method, rank or number of classes.`);
    }
    for (const [k, t] of want) {
      const src = f.get(k, { backend: t.backend });
      try {
        t.backend.copy(src.view(), t.view());
      } finally {
        src.dispose();
      }
    }
  } finally {
    f.close();
  }
}

/** Reads every tensor of a safetensors file. */
export function loadSafetensors(path: string, opts: { backend?: Backend<any> } = {}): Map<string, Tensor> {
  const f = new SafetensorsFile(path);
  try {
    return new Map(f.keys().map((k) => [k, f.get(k, opts)]));
  } finally {
    f.close();
  }
}

/** A tensor to write: its name, stored dtype and shape. */
export interface TensorSpec {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

function headerBytes(specs: readonly TensorSpec[], metadata?: Record<string, string>): Buffer[] {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  let offset = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, d) => a * d, 1) * BYTES[s.dtype];
    header[s.name] = { dtype: s.dtype, shape: [...s.shape], data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBuf = Buffer.from(json, 'utf8');
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBuf.length));
  return [lenBuf, headerBuf];
}

/**
 * Writes a safetensors file tensor by tensor, atomically: `bytes(spec)` gives each tensor's
 * little-endian bytes as it is written (in the order of `specs`), so only one tensor is in memory
 * at a time, whatever the file's size.
 */
export function writeSafetensorsStreaming(path: string, specs: readonly TensorSpec[], bytes: (spec: TensorSpec) => Uint8Array, metadata?: Record<string, string>): void {
  function* chunks(): Generator<Uint8Array> {
    yield* headerBytes(specs, metadata);
    for (const s of specs) {
      const b = bytes(s);
      const want = s.shape.reduce((a, d) => a * d, 1) * BYTES[s.dtype];
      if (b.length !== want) throw new SafetensorsError(`${s.name}: ${s.dtype} ${JSON.stringify(s.shape)} needs ${want} bytes, got ${b.length}`);
      yield b;
    }
  }
  writeChunksAtomic(path, chunks());
}

/**
 * Writes tensors (float32 as F32, int32 as I32, uint8 as U8) atomically: into a temporary file
 * beside `path`, fsync'd, then renamed over it, so a crash never leaves a half-written file.
 */
export function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): void {
  const entries = [...(tensors instanceof Map ? tensors : Object.entries(tensors))].sort(([a], [b]) => (a < b ? -1 : 1));
  const byName = new Map(entries);
  const dtypeOf = (t: Tensor): SafetensorsDType => (t.dtype === 'float32' || t.dtype === 'float64' ? 'F32' : t.dtype === 'int32' ? 'I32' : 'U8');
  writeSafetensorsStreaming(path, entries.map(([name, t]) => ({ name, dtype: dtypeOf(t), shape: t.shape })), (s) => {
    const data = byName.get(s.name)!.toArray();
    const typed = s.dtype === 'F32' ? Float32Array.from(data) : s.dtype === 'I32' ? Int32Array.from(data) : Uint8Array.from(data);
    return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  }, metadata);
}
