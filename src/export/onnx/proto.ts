// The ONNX protobuf messages graft writes, hand-encoded. Field numbers are those of onnx.proto
// (onnx/onnx.proto3, IR version 8): only the fields an inference graph needs are written.
// Protobuf wire format: each field is a varint key (field << 3 | wire type) followed by a
// varint (type 0), 8 bytes (type 1), a length-delimited payload (type 2) or 4 bytes (type 5).

class Writer {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }
  private varint(v: number | bigint): void {
    let n = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (n >= 0x80n) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    this.push(Uint8Array.from(out));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number | bigint): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, w: Writer): this {
    return this.bytes(field, w.finish());
  }
  /** A packed repeated int64 field. */
  packedInts(field: number, values: readonly number[]): this {
    const inner = new Writer();
    for (const v of values) inner.varint(v);
    return this.bytes(field, inner.finish());
  }
  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(4 * values.length);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setFloat32(4 * i, v, true));
    return this.bytes(field, b);
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** TensorProto.DataType codes. */
export const DataType = { FLOAT: 1, INT8: 3, INT64: 7 } as const;

export interface TensorSpec {
  name: string;
  dims: readonly number[];
  dataType: (typeof DataType)[keyof typeof DataType];
  /** Little-endian element bytes (TensorProto.raw_data). */
  raw: Uint8Array;
}

export type AttributeValue =
  | { kind: 'float'; value: number }
  | { kind: 'int'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'tensor'; value: TensorSpec };

export interface NodeSpec {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name: string;
  attributes?: Readonly<Record<string, AttributeValue>>;
}

/** A graph input or output: element type FLOAT, each dimension a size or a symbolic name. */
export interface ValueInfoSpec {
  name: string;
  dims: readonly (number | string)[];
}

export interface ModelSpec {
  irVersion: number;
  opsetVersion: number;
  producerName: string;
  producerVersion: string;
  graphName: string;
  nodes: readonly NodeSpec[];
  initializers: readonly TensorSpec[];
  inputs: readonly ValueInfoSpec[];
  outputs: readonly ValueInfoSpec[];
  metadata: Readonly<Record<string, string>>;
}

function tensorProto(t: TensorSpec): Writer {
  // TensorProto: dims 1, data_type 2, name 8, raw_data 9.
  return new Writer().packedInts(1, t.dims).int(2, t.dataType).string(8, t.name).bytes(9, t.raw);
}

// AttributeProto.AttributeType codes.
const ATTRIBUTE_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function attributeProto(name: string, a: AttributeValue): Writer {
  // AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20.
  const w = new Writer().string(1, name);
  if (a.kind === 'float') w.float(2, a.value);
  else if (a.kind === 'int') w.int(3, a.value);
  else if (a.kind === 'string') w.string(4, a.value);
  else if (a.kind === 'tensor') w.message(5, tensorProto(a.value));
  else if (a.kind === 'floats') w.packedFloats(7, a.value);
  else w.packedInts(8, a.value);
  return w.int(20, ATTRIBUTE_TYPE[a.kind]);
}

function nodeProto(n: NodeSpec): Writer {
  // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name).string(4, n.opType);
  for (const [k, a] of Object.entries(n.attributes ?? {})) w.message(5, attributeProto(k, a));
  return w;
}

function valueInfoProto(v: ValueInfoSpec): Writer {
  // ValueInfoProto{name 1, type 2}; TypeProto{tensor_type 1}; Tensor{elem_type 1, shape 2};
  // TensorShapeProto{dim 1}; Dimension{dim_value 1 | dim_param 2}.
  const shape = new Writer();
  for (const d of v.dims) shape.message(1, typeof d === 'number' ? new Writer().int(1, d) : new Writer().string(2, d));
  const tensorType = new Writer().int(1, DataType.FLOAT).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType));
}

/** The serialised ModelProto. */
export function encodeModel(m: ModelSpec): Uint8Array {
  // GraphProto: node 1, name 2, initializer 5, input 11, output 12.
  const graph = new Writer();
  for (const n of m.nodes) graph.message(1, nodeProto(n));
  graph.string(2, m.graphName);
  for (const t of m.initializers) graph.message(5, tensorProto(t));
  for (const i of m.inputs) graph.message(11, valueInfoProto(i));
  for (const o of m.outputs) graph.message(12, valueInfoProto(o));
  // ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7, opset_import 8
  // (OperatorSetIdProto{domain 1, version 2}; the default domain is the empty string), metadata_props 14.
  const model = new Writer().int(1, m.irVersion).string(2, m.producerName).string(3, m.producerVersion).message(7, graph);
  model.message(8, new Writer().string(1, '').int(2, m.opsetVersion));
  for (const [k, v] of Object.entries(m.metadata)) model.message(14, new Writer().string(1, k).string(2, v));
  return model.finish();
}
