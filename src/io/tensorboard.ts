// TensorBoard event files: TFRecord framing (uint64 length, masked CRC-32C of the length, the
// record, masked CRC-32C of the record; all little-endian) around `Event` protocol buffers
// (tensorflow/core/util/event.proto: wall_time = 1 double, step = 2 int64, file_version = 3
// string, summary = 5 { value = 1 { tag = 1 string, simple_value = 2 float } }). The first event
// of a file holds file_version "brain.Event:2". Each record is written with one write call, so a
// killed process leaves whole records behind it.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeError } from '../errors.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as TFRecord uses. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant. */
export function maskedCrc(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

const key = (field: number, wire: number) => varint((field << 3) | wire);

function lengthDelimited(field: number, bytes: Uint8Array): number[] {
  return [...key(field, 2), ...varint(bytes.length), ...bytes];
}

function double(field: number, v: number): number[] {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return [...key(field, 1), ...b];
}

function float(field: number, v: number): number[] {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return [...key(field, 5), ...b];
}

/** An Event with file_version. */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return Uint8Array.from([...double(1, wallTime), ...lengthDelimited(3, Buffer.from('brain.Event:2'))]);
}

/** An Event with a Summary of scalar values (simple_value). */
export function scalarEvent(wallTime: number, step: number, scalars: Record<string, number>): Uint8Array {
  const values = Object.entries(scalars).flatMap(([tag, v]) => lengthDelimited(1, Uint8Array.from([...lengthDelimited(1, Buffer.from(tag)), ...float(2, v)])));
  return Uint8Array.from([...double(1, wallTime), ...key(2, 0), ...varint(Math.round(step)), ...lengthDelimited(5, Uint8Array.from(values))]);
}

/** One TFRecord around `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(data.length));
  const head = Buffer.alloc(4);
  head.writeUInt32LE(maskedCrc(len));
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(maskedCrc(data));
  return Buffer.concat([len, head, Buffer.from(data), tail]);
}

/**
 * The tags the Hugging Face Trainer's TensorBoard callback gives a log entry (rewrite_logs):
 * eval_x → eval/x, test_x → test/x, anything else → train/x; the step is the event's step, not a
 * scalar.
 */
export function hfScalars(entry: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (k === 'step' || typeof v !== 'number' || !Number.isFinite(v)) continue;
    if (k.startsWith('eval_')) out[`eval/${k.slice(5)}`] = v;
    else if (k.startsWith('test_')) out[`test/${k.slice(5)}`] = v;
    else out[`train/${k}`] = v;
  }
  return out;
}

/** An events.out.tfevents.<time>.<host>.<pid> file in `dir`, appended to event by event. */
export class TensorBoardWriter {
  readonly file: string;
  private fd: number | null;

  constructor(dir: string) {
    const now = Date.now() / 1000;
    this.file = join(dir, `events.out.tfevents.${Math.floor(now)}.${hostname()}.${process.pid}.0`);
    try {
      mkdirSync(dir, { recursive: true });
      this.fd = openSync(this.file, 'a');
    } catch (e) {
      throw writeError(e, this.file);
    }
    this.write(fileVersionEvent(now));
  }

  private write(event: Uint8Array): void {
    if (this.fd === null) return;
    try {
      writeSync(this.fd, tfRecord(event));
    } catch (e) {
      throw writeError(e, this.file);
    }
  }

  /** A trainer log entry (metrics.jsonl's form) as the Trainer's scalars at its step. */
  log(entry: Record<string, number>): void {
    const scalars = hfScalars(entry);
    if (Object.keys(scalars).length) this.write(scalarEvent(Date.now() / 1000, entry['step'] ?? 0, scalars));
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
