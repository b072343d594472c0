// A minimal ONNX model writer: enough protobuf to encode the single-op float32 graphs the
// onnxruntime benchmark runs. Field numbers are those of onnx/onnx.proto (IR version 9).

/** A node attribute; the tag picks the AttributeProto field. */
export type OnnxAttr =
  | { name: string; int: number }
  | { name: string; float: number }
  | { name: string; ints: readonly number[] };

export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs?: readonly OnnxAttr[];
}

/** A float32 graph input or output with a fixed shape. */
export interface OnnxValue {
  name: string;
  shape: readonly number[];
}

/** A float32 constant. */
export interface OnnxInitializer extends OnnxValue {
  data: Float32Array;
}

export interface OnnxGraph {
  nodes: readonly OnnxNode[];
  inputs: readonly OnnxValue[];
  outputs: readonly OnnxValue[];
  initializers?: readonly OnnxInitializer[];
  opset: number;
}

const IR_VERSION = 9;
const FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR = { FLOAT: 1, INT: 2, INTS: 7 } as const; // AttributeProto.AttributeType

/** Protobuf wire encoding: varints and length-delimited fields are all these graphs need. */
class Proto {
  private readonly parts: Uint8Array[] = [];

  private raw(bytes: number[] | Uint8Array): this {
    this.parts.push(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes));
    return this;
  }

  private static varint(v: number): number[] {
    // Negative int64 values are ten bytes in two's complement.
    let n = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  }

  int(field: number, v: number): this {
    return this.raw([...Proto.varint(field << 3), ...Proto.varint(v)]);
  }

  float(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.raw([...Proto.varint((field << 3) | 5), ...b]);
  }

  bytes(field: number, data: Uint8Array): this {
    return this.raw([...Proto.varint((field << 3) | 2), ...Proto.varint(data.length)]).raw(data);
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Proto): this {
    return this.bytes(field, m.finish());
  }

  finish(): Uint8Array {
    const total = this.parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

function valueInfo(v: OnnxValue): Proto {
  const shape = new Proto();
  for (const d of v.shape) shape.message(1, new Proto().int(1, d)); // dim { dim_value }
  const tensorType = new Proto().int(1, FLOAT).message(2, shape); // elem_type, shape
  return new Proto().string(1, v.name).message(2, new Proto().message(1, tensorType)); // name, type { tensor_type }
}

function attribute(a: OnnxAttr): Proto {
  const p = new Proto().string(1, a.name);
  if ('int' in a) return p.int(3, a.int).int(20, ATTR.INT);
  if ('float' in a) return p.float(2, a.float).int(20, ATTR.FLOAT);
  for (const i of a.ints) p.int(8, i);
  return p.int(20, ATTR.INTS);
}

function node(n: OnnxNode, index: number): Proto {
  const p = new Proto();
  for (const i of n.inputs) p.string(1, i);
  for (const o of n.outputs) p.string(2, o);
  p.string(3, `${n.op}_${index}`).string(4, n.op);
  for (const a of n.attrs ?? []) p.message(5, attribute(a));
  return p;
}

function initializer(t: OnnxInitializer): Proto {
  const p = new Proto();
  for (const d of t.shape) p.int(1, d);
  const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return p.int(2, FLOAT).string(8, t.name).bytes(9, raw); // dims, data_type, name, raw_data (little-endian)
}

/** The serialised ModelProto of `g`, ready for `InferenceSession.create(bytes)`. */
export function encodeModel(g: OnnxGraph): Uint8Array {
  const graph = new Proto();
  g.nodes.forEach((n, i) => graph.message(1, node(n, i)));
  graph.string(2, 'graft_bench');
  for (const t of g.initializers ?? []) graph.message(5, initializer(t));
  for (const v of g.inputs) graph.message(11, valueInfo(v));
  for (const v of g.outputs) graph.message(12, valueInfo(v));
  return new Proto()
    .int(1, IR_VERSION)
    .string(2, 'graft-bench') // producer_name
    .message(7, graph)
    .message(8, new Proto().string(1, '').int(2, g.opset)) // opset_import { domain "", version }
    .finish();
}
