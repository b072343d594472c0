// Building an ONNX graph: values are named strings, weights become initializers, and each
// helper appends one node (or a short fixed pattern) in ONNX's operator vocabulary at the
// opset below. The batch axis stays symbolic, so reshapes copy it with ONNX's 0 ("keep this
// dimension") instead of writing its traced size.
import type { Tensor } from '../../tensor/tensor.js';
import { DataType, encodeModel, type AttributeValue, type NodeSpec, type TensorSpec, type ValueInfoSpec } from './proto.js';

/** The operator set the exporters use: LayerNormalization (17) is the newest op they need. */
export const OPSET = 17;
/** IR version 8 is the one that goes with opset 17 (onnx/docs/Versioning.md). */
export const IR_VERSION = 8;

type Attrs = Record<string, number | string | readonly number[] | { floats: readonly number[] }>;

function attribute(v: Attrs[string]): AttributeValue {
  if (typeof v === 'string') return { kind: 'string', value: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { kind: 'int', value: v } : { kind: 'float', value: v };
  if ('floats' in v) return { kind: 'floats', value: v.floats };
  return { kind: 'ints', value: v };
}

export class OnnxGraph {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: TensorSpec[] = [];
  private readonly weightNames = new Map<Tensor, string>();
  private readonly used = new Set<string>();
  private counter = 0;

  /** A graph whose input images are `inputHeight` × `inputWidth` (the ViTs' token grid depends on it). */
  constructor(readonly inputHeight: number, readonly inputWidth: number, reserved: readonly string[] = [], readonly quantizeWeights = false) {
    for (const n of reserved) this.used.add(n);
  }

  private fresh(hint: string): string {
    let name = hint.replace(/[^A-Za-z0-9_.:/-]/g, '_');
    while (this.used.has(name)) name = `${hint}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  /** Appends a node; `name` also names its (first) output. Returns the output names. */
  node(opType: string, inputs: readonly string[], name: string, attrs: Attrs = {}, outputs = 1): string[] {
    const nodeName = this.fresh(name);
    const outs = Array.from({ length: outputs }, (_, i) => (i === 0 ? nodeName : this.fresh(`${nodeName}:${i}`)));
    const attributes = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, attribute(v)]));
    this.nodes.push({ opType, inputs, outputs: outs, name: nodeName, attributes });
    return outs;
  }

  op(opType: string, inputs: readonly string[], name: string, attrs: Attrs = {}): string {
    return this.node(opType, inputs, name, attrs)[0]!;
  }

  /** A float32 initializer holding a graft tensor's values (one per tensor, however often it is used). */
  weight(t: Tensor, name: string): string {
    const known = this.weightNames.get(t);
    if (known) return known;
    const values = Float32Array.from(t.toArray() as ArrayLike<number>);
    const n = this.fresh(name);
    this.initializers.push({ name: n, dims: t.shape, dataType: DataType.FLOAT, raw: new Uint8Array(values.buffer) });
    this.weightNames.set(t, n);
    return n;
  }

  floats(values: ArrayLike<number>, dims: readonly number[], name: string): string {
    const n = this.fresh(name);
    this.initializers.push({ name: n, dims, dataType: DataType.FLOAT, raw: new Uint8Array(Float32Array.from(values).buffer) });
    return n;
  }

  scalar(v: number, name: string): string {
    return this.floats([v], [], name);
  }

  ints(values: readonly number[], name: string): string {
    const n = this.fresh(name);
    this.initializers.push({ name: n, dims: [values.length], dataType: DataType.INT64, raw: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
    return n;
  }

  /**
   * A matrix or kernel weight: float32, or with `quantizeWeights` int8 with one scale per slice
   * along `axis` (symmetric, scale = max|w| / 127) and a DequantizeLinear in front, so the file
   * is about a quarter the size while the graph still computes in float.
   */
  matrix(values: Float32Array, dims: readonly number[], axis: number, name: string): string {
    if (!this.quantizeWeights) return this.floats(values, dims, name);
    const slices = dims[axis]!;
    const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const scales = new Float32Array(slices);
    for (let i = 0; i < values.length; i++) {
      const s = Math.floor(i / inner) % slices;
      scales[s] = Math.max(scales[s]!, Math.abs(values[i]!));
    }
    for (let s = 0; s < slices; s++) scales[s] = scales[s]! > 0 ? scales[s]! / 127 : 1;
    const q = new Int8Array(values.length);
    for (let i = 0; i < values.length; i++) q[i] = Math.max(-127, Math.min(127, Math.round(values[i]! / scales[Math.floor(i / inner) % slices]!)));
    const qName = this.fresh(`${name}/int8`);
    this.initializers.push({ name: qName, dims, dataType: DataType.INT8, raw: new Uint8Array(q.buffer) });
    const zeroName = this.fresh(`${name}/zero_point`);
    this.initializers.push({ name: zeroName, dims: [slices], dataType: DataType.INT8, raw: new Uint8Array(slices) });
    return this.op('DequantizeLinear', [qName, this.floats(scales, [slices], `${name}/scale`), zeroName], name, { axis });
  }

  // Composite patterns used by several exporters.

  /** y = x Wᵀ + b for x (…, in): MatMul with the transposed weight stored, then Add. */
  linear(x: string, weight: Tensor, bias: Tensor | null, name: string): string {
    const wt = this.matrix(transposed2d(weight), [weight.shape[1]!, weight.shape[0]!], 1, `${name}.weight_t`);
    const y = this.op('MatMul', [x, wt], `${name}/MatMul`);
    return bias ? this.op('Add', [y, this.weight(bias, `${name}.bias`)], `${name}/Add`) : y;
  }

  reshape(x: string, shape: readonly number[], name: string): string {
    return this.op('Reshape', [x, this.ints(shape, `${name}/shape`)], name);
  }

  /** x broadcast along a leading batch axis taken from `like`: (1, …) → (B, …). */
  expandBatch(x: Tensor, like: string, name: string): string {
    const batch = this.op('Slice', [this.op('Shape', [like], `${name}/Shape`), this.ints([0], `${name}/start`), this.ints([1], `${name}/end`)], `${name}/batch`);
    const shape = this.op('Concat', [batch, this.ints(x.shape.slice(1), `${name}/rest`)], `${name}/shape`, { axis: 0 });
    return this.op('Expand', [this.weight(x, name), shape], `${name}/Expand`);
  }

  /** GELU, exact: x · ½ (1 + erf(x / √2)); tanh form: x · ½ (1 + tanh(√(2/π) (x + 0.044715 x³))). */
  gelu(x: string, form: 'erf' | 'tanh', name: string): string {
    let inner: string;
    if (form === 'erf') inner = this.op('Erf', [this.op('Mul', [x, this.scalar(Math.SQRT1_2, `${name}/rsqrt2`)], `${name}/scaled`)], `${name}/Erf`);
    else {
      const cube = this.op('Mul', [this.op('Mul', [x, x], `${name}/sq`), x], `${name}/cube`);
      const poly = this.op('Add', [x, this.op('Mul', [cube, this.scalar(0.044715, `${name}/c`)], `${name}/c_cube`)], `${name}/poly`);
      inner = this.op('Tanh', [this.op('Mul', [poly, this.scalar(Math.sqrt(2 / Math.PI), `${name}/k`)], `${name}/arg`)], `${name}/Tanh`);
    }
    const half = this.op('Mul', [x, this.scalar(0.5, `${name}/half`)], `${name}/halfx`);
    return this.op('Mul', [half, this.op('Add', [inner, this.scalar(1, `${name}/one`)], `${name}/onep`)], name);
  }

  /** The serialised model with `input` (B, …inputDims) and `output` (B, …outputDims). */
  encode(input: ValueInfoSpec, output: ValueInfoSpec, metadata: Record<string, string>, producerVersion: string): Uint8Array {
    return encodeModel({
      irVersion: IR_VERSION, opsetVersion: OPSET, producerName: 'graft', producerVersion, graphName: 'graft',
      nodes: this.nodes, initializers: this.initializers, inputs: [input], outputs: [output], metadata,
    });
  }
}

function transposed2d(w: Tensor): Float32Array {
  const [rows, cols] = w.shape as [number, number];
  const src = w.toArray() as ArrayLike<number>;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}
