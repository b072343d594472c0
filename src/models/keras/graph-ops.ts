// TensorFlow ops of a TF.js graph model (a frozen GraphDef in NHWC, as tensorflowjs_converter
// writes it, with grappler's fused _FusedConv2D / FusedDepthwiseConv2dNative / _FusedMatMul) on
// graft's NCHW tensors. Convolutions and matmuls become graft Conv2d / Linear layers whose
// weights come from the op's constant inputs:
//   Conv2D filter (KH, KW, Cin, Cout) → (Cout, Cin, KH, KW)
//   depthwise filter (KH, KW, Cin, M) → (Cin·M, 1, KH, KW), groups = Cin
//   MatMul b (Cin, Cout), or (Cout, Cin) with transpose_b → (Cout, Cin)
import type { Module } from '../../nn/module.js';
import { Conv2d, Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import type { TfjsWeight } from '../../io/tfjs.js';
import { add, affine, clamp, div, exp, ge, maximum, minimum, mul, relu, relu6, sigmoid, sub, tanh, where } from '../../ops/elementwise.js';
import { concat, permute, reshape, squeeze } from '../../ops/layout.js';
import { mean } from '../../ops/reduce.js';
import { softmax } from '../../ops/norm.js';
import { padImage, samePads, staticSamePadding, tfPool2d, type Pair, type Pads } from './tf-windows.js';

export interface TfAttrValue {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { i?: (string | number)[]; s?: string[]; f?: number[] };
  shape?: { dim?: { size: string | number }[] };
  tensor?: { dtype?: string; tensorShape?: { dim?: { size: string | number }[] }; intVal?: number[]; floatVal?: number[]; int64Val?: (string | number)[] };
}

export interface TfNodeDef {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, TfAttrValue>;
}

/** A constant input that becomes a parameter: which one, and how to reach graft's layout. */
export interface WeightBinding {
  constName: string;
  param: 'weight' | 'bias';
  toGraft(t: Tensor): Tensor;
}

export interface BuiltOp {
  /** Values read at run time (activations and data constants), by node name. */
  inputs: string[];
  module: Module | null;
  weights: WeightBinding[];
  /** Constants read while building (axes, paddings, shapes): not parameters. */
  staticConsts: string[];
  run(inputs: Tensor[], module: Module | null): Tensor;
}

export interface OpContext {
  node: TfNodeDef;
  /** Data inputs by node name (control inputs dropped). */
  inputs: string[];
  isConst(name: string): boolean;
  constValue(name: string): TfjsWeight;
  generator?: Generator;
}

type Builder = (ctx: OpContext) => BuiltOp;

function fail(node: TfNodeDef, msg: string): never {
  throw new Error(`graph node '${node.name}' (${node.op}): ${msg}`);
}

const decode = (s: string) => Buffer.from(s, 'base64').toString('utf8');
const attrString = (n: TfNodeDef, key: string, fallback?: string) => (n.attr?.[key]?.s !== undefined ? decode(n.attr[key]!.s!) : fallback);
const attrInts = (n: TfNodeDef, key: string) => (n.attr?.[key]?.list?.i ?? []).map(Number);
const attrBool = (n: TfNodeDef, key: string) => n.attr?.[key]?.b === true;
const attrFloat = (n: TfNodeDef, key: string, fallback: number) => n.attr?.[key]?.f ?? fallback;

function nhwc(node: TfNodeDef): void {
  const f = attrString(node, 'data_format', 'NHWC');
  if (f !== 'NHWC') fail(node, `data_format ${f} is not supported; TF.js graph models use NHWC`);
}

/** An NHWC-layout constant broadcast against a graft tensor of rank `rank`. */
function alignConstant(c: Tensor, rank: number): Tensor {
  if (rank !== 4 || c.rank === 0) return c;
  const full = c.rank === 4 ? c : reshape(c, [...new Array<number>(4 - c.rank).fill(1), ...c.shape]);
  return permute(full, [0, 3, 1, 2]);
}

/** NHWC axis of a rank-`rank` tensor → graft's axis. */
const graftAxis = (axis: number, rank: number) => {
  const a = axis < 0 ? axis + rank : axis;
  return rank === 4 ? [0, 2, 3, 1][a]! : a;
};

const ACTIVATIONS: Record<string, (x: Tensor, node: TfNodeDef) => Tensor> = {
  Identity: (x) => x,
  Relu: relu,
  Relu6: relu6,
  Sigmoid: sigmoid,
  Tanh: tanh,
  Elu: (x) => where(ge(x, 0), x, affine(exp(clamp(x, -Infinity, 0)), 1, -1)),
  LeakyRelu: (x, n) => {
    const alpha = attrFloat(n, 'alpha', attrFloat(n, 'leakyrelu_alpha', 0.2));
    return where(ge(x, 0), x, affine(x, alpha));
  },
  Softmax: (x) => softmax(x, 1),
};

/** The activation a fused op applies after its bias (fused_ops [BiasAdd, <activation>]). */
function fusedActivation(ctx: OpContext, argCount: number): { hasBias: boolean; act: (x: Tensor) => Tensor } {
  const ops = (ctx.node.attr?.['fused_ops']?.list?.s ?? []).map(decode);
  if (ops.length === 0) return { hasBias: false, act: (x) => x };
  if (ops[0] !== 'BiasAdd' || ops.length > 2 || argCount !== 1) fail(ctx.node, `fused ops [${ops.join(', ')}] are not supported; graft reads BiasAdd optionally followed by one activation`);
  const name = ops[1];
  if (name !== undefined && !(name in ACTIVATIONS)) fail(ctx.node, `fused activation ${name} is not supported; one of ${Object.keys(ACTIVATIONS).join(', ')}`);
  return { hasBias: true, act: name === undefined ? (x) => x : (x) => ACTIVATIONS[name]!(x, ctx.node) };
}

function constInput(ctx: OpContext, index: number, what: string): string {
  const name = ctx.inputs[index];
  if (!name || !ctx.isConst(name)) fail(ctx.node, `its ${what} must be a constant; graft imports frozen graphs`);
  return name;
}

function conv(ctx: OpContext): BuiltOp {
  const { node } = ctx;
  nhwc(node);
  const depthwise = node.op.includes('Depthwise');
  const filterName = constInput(ctx, 1, 'filter');
  const [kh, kw, cIn, cOutOrM] = ctx.constValue(filterName).shape as [number, number, number, number];
  const { hasBias, act } = fusedActivation(ctx, Number(node.attr?.['num_args']?.i ?? (ctx.inputs.length - 2)));
  const strides = attrInts(node, 'strides');
  const dil = attrInts(node, 'dilations');
  const stride: Pair = [strides[1] ?? 1, strides[2] ?? 1];
  const dilation: Pair = [dil[1] ?? 1, dil[2] ?? 1];
  const padding = attrString(node, 'padding', 'VALID');
  let fixed: Pair | null = [0, 0];
  let explicit: Pads | null = null;
  if (padding === 'SAME') fixed = staticSamePadding([kh, kw], stride, dilation);
  else if (padding === 'EXPLICIT') {
    const p = attrInts(node, 'explicit_paddings');
    explicit = [p[2] ?? 0, p[3] ?? 0, p[4] ?? 0, p[5] ?? 0];
    fixed = explicit[0] === explicit[1] && explicit[2] === explicit[3] ? [explicit[0], explicit[2]] : null;
  } else if (padding !== 'VALID') fail(node, `padding ${padding} is not supported`);
  const cOut = depthwise ? cIn * cOutOrM : cOutOrM;
  const module = new Conv2d(cIn, cOut, [kh, kw], { stride, dilation, padding: fixed ?? [0, 0], groups: depthwise ? cIn : 1, bias: hasBias, generator: ctx.generator });
  const toGraft = depthwise ? (t: Tensor) => reshape(permute(t, [2, 3, 0, 1]), [cOut, 1, kh, kw]) : (t: Tensor) => permute(t, [3, 2, 0, 1]);
  const weights: WeightBinding[] = [{ constName: filterName, param: 'weight', toGraft }];
  if (hasBias) weights.push({ constName: constInput(ctx, 2, 'bias'), param: 'bias', toGraft: (t) => t });
  const pads = (x: Tensor): Pads => explicit ?? samePads(x.shape[2]!, x.shape[3]!, [kh, kw], stride, dilation);
  return {
    inputs: [ctx.inputs[0]!], module, weights, staticConsts: [],
    run: ([x], m) => act(m!.forward(fixed ? x! : padImage(x!, pads(x!)))),
  };
}

function matmul(ctx: OpContext): BuiltOp {
  const { node } = ctx;
  if (attrBool(node, 'transpose_a')) fail(node, 'transpose_a is not supported');
  const transB = attrBool(node, 'transpose_b');
  const bName = constInput(ctx, 1, 'right operand');
  const [rows, cols] = ctx.constValue(bName).shape as [number, number];
  const [inF, outF] = transB ? [cols, rows] : [rows, cols];
  const { hasBias, act } = fusedActivation(ctx, Number(node.attr?.['num_args']?.i ?? (ctx.inputs.length - 2)));
  const module = new Linear(inF, outF, { bias: hasBias, generator: ctx.generator });
  const weights: WeightBinding[] = [{ constName: bName, param: 'weight', toGraft: transB ? (t) => t : (t) => permute(t, [1, 0]) }];
  if (hasBias) weights.push({ constName: constInput(ctx, 2, 'bias'), param: 'bias', toGraft: (t) => t });
  return { inputs: [ctx.inputs[0]!], module, weights, staticConsts: [], run: ([x], m) => act(m!.forward(x!)) };
}

function elementwise(fn: (a: Tensor, b: Tensor) => Tensor): Builder {
  return (ctx) => {
    const consts = ctx.inputs.map((n) => ctx.isConst(n));
    return {
      inputs: ctx.inputs, module: null, weights: [], staticConsts: [],
      run: (xs) => {
        const rank = Math.max(...xs.map((t, i) => (consts[i] ? 0 : t.rank)));
        const [a, b] = xs.map((t, i) => (consts[i] ? alignConstant(t, rank) : t));
        return fn(a!, b!);
      },
    };
  };
}

function unary(ctx: OpContext): BuiltOp {
  const fn = ACTIVATIONS[ctx.node.op]!;
  return { inputs: [ctx.inputs[0]!], module: null, weights: [], staticConsts: [], run: ([x]) => fn(x!, ctx.node) };
}

function pool(ctx: OpContext): BuiltOp {
  nhwc(ctx.node);
  const k = attrInts(ctx.node, 'ksize');
  const s = attrInts(ctx.node, 'strides');
  const padding = attrString(ctx.node, 'padding', 'VALID');
  if (padding !== 'SAME' && padding !== 'VALID') fail(ctx.node, `padding ${padding} is not supported`);
  const kind = ctx.node.op === 'MaxPool' ? 'max' : 'avg';
  return { inputs: [ctx.inputs[0]!], module: null, weights: [], staticConsts: [], run: ([x]) => tfPool2d(x!, kind, [k[1]!, k[2]!], [s[1]!, s[2]!], padding === 'SAME') };
}

/** Integer values of a constant read at build time. */
function staticInts(ctx: OpContext, index: number, what: string): number[] {
  return [...ctx.constValue(constInput(ctx, index, what)).data].map(Number);
}

function meanOp(ctx: OpContext): BuiltOp {
  const axes = staticInts(ctx, 1, 'reduction axes');
  const keep = attrBool(ctx.node, 'keep_dims');
  return {
    inputs: [ctx.inputs[0]!], module: null, weights: [], staticConsts: [ctx.inputs[1]!],
    run: ([x]) => {
      const out = mean(x!, axes.map((a) => graftAxis(a, x!.rank)), { keepDims: keep });
      if (out.rank !== 2 && out.rank !== 4 && out.rank !== 0) fail(ctx.node, `leaves a rank-${out.rank} tensor; graft keeps images (B, C, H, W) and vectors (B, F)`);
      return out;
    },
  };
}

function squeezeOp(ctx: OpContext): BuiltOp {
  const dims = attrInts(ctx.node, 'squeeze_dims');
  return {
    inputs: [ctx.inputs[0]!], module: null, weights: [], staticConsts: [],
    run: ([x]) => {
      const axes = (dims.length ? dims : x!.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((a) => graftAxis(a, x!.rank));
      const out = [...axes].sort((a, b) => b - a).reduce((t, a) => squeeze(t, a), x!);
      if (x!.rank === 4 && out.rank !== 2 && out.rank !== 4) fail(ctx.node, `squeezes (B, H, W, C) to rank ${out.rank}; graft imports squeezes to (B, C)`);
      return out;
    },
  };
}

function concatOp(ctx: OpContext): BuiltOp {
  const axisName = ctx.inputs[ctx.inputs.length - 1]!;
  const [axis] = staticInts(ctx, ctx.inputs.length - 1, 'axis');
  return { inputs: ctx.inputs.slice(0, -1), module: null, weights: [], staticConsts: [axisName], run: (xs) => concat(xs, graftAxis(axis!, xs[0]!.rank)) };
}

function padOp(ctx: OpContext): BuiltOp {
  const p = staticInts(ctx, 1, 'paddings');
  if (p.length !== 8 || p[0] || p[1] || p[6] || p[7]) fail(ctx.node, `pads [${p}]; graft imports padding of H and W of (B, H, W, C) only`);
  return { inputs: [ctx.inputs[0]!], module: null, weights: [], staticConsts: [ctx.inputs[1]!], run: ([x]) => padImage(x!, [p[2]!, p[3]!, p[4]!, p[5]!]) };
}

function reshapeOp(ctx: OpContext): BuiltOp {
  const shape = staticInts(ctx, 1, 'shape');
  if (shape.length !== 2) fail(ctx.node, `reshapes to [${shape}]; graft imports reshapes to (B, F) only`);
  return {
    inputs: [ctx.inputs[0]!], module: null, weights: [], staticConsts: [ctx.inputs[1]!],
    // TensorFlow flattens NHWC: move channels last first.
    run: ([x]) => reshape(x!.rank === 4 ? permute(x!, [0, 2, 3, 1]) : x!, [x!.shape[0]!, -1]),
  };
}

const BUILDERS: Record<string, Builder> = {
  Conv2D: conv,
  _FusedConv2D: conv,
  DepthwiseConv2dNative: conv,
  FusedDepthwiseConv2dNative: conv,
  MatMul: matmul,
  _FusedMatMul: matmul,
  Add: elementwise(add),
  AddV2: elementwise(add),
  BiasAdd: elementwise(add),
  Sub: elementwise(sub),
  Mul: elementwise(mul),
  RealDiv: elementwise(div),
  Maximum: elementwise(maximum),
  Minimum: elementwise(minimum),
  ...Object.fromEntries(Object.keys(ACTIVATIONS).map((op) => [op, unary])),
  AvgPool: pool,
  MaxPool: pool,
  Mean: meanOp,
  Squeeze: squeezeOp,
  ConcatV2: concatOp,
  Pad: padOp,
  Reshape: reshapeOp,
};

/** Ops graft imports, besides Placeholder and Const. */
export const SUPPORTED_TF_OPS: readonly string[] = Object.keys(BUILDERS);

export function hasTfOpBuilder(op: string): boolean {
  return op in BUILDERS;
}

export function buildTfOp(ctx: OpContext): BuiltOp {
  const builder = BUILDERS[ctx.node.op];
  if (!builder) fail(ctx.node, `op ${ctx.node.op} is not supported; supported: Placeholder, Const, ${SUPPORTED_TF_OPS.join(', ')}`);
  return builder(ctx);
}
