// What this side and the addon (native/src/binding.cc) must agree on: the codes of the C++ enums
// that kernels take, and each entry point's positional arguments. The addon exports its side as
// `contract`, built from the C++ enums and its table of entry points; loading compares the two
// (`contractMismatches`), so a code or an argument list changed on one side only fails at load,
// naming what differs, instead of computing the wrong thing.
import type { BinaryOp, ReduceOp, UnaryOp } from '../backend.js';

/** Codes of `enum class Unary` in native/src/kernels.h. */
export const UNARY: Record<UnaryOp, number> = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, abs: 5, sign: 6, square: 7, reciprocal: 8, relu: 9, relu6: 10, sigmoid: 11, tanh: 12,
  gelu: 13, gelu_tanh: 14, silu: 15, hardswish: 16, erf: 17, pow_scalar: 18, clamp: 19, affine: 20,
};
/** Codes of `enum class Binary`. */
export const BINARY: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, maximum: 4, minimum: 5, pow: 6, eq: 7, lt: 8, gt: 9, le: 10, ge: 11 };
/** Codes of `enum class Reduce`. */
export const REDUCE: Record<ReduceOp, number> = { sum: 0, max: 1, min: 2 };

const ENUMS: Record<string, Record<string, number>> = { unary: UNARY, binary: BINARY, reduce: REDUCE };

/** Each entry point's arguments in order, named as in the comment above it in binding.cc. */
export const KERNELS = {
  matmul: ['a', 'b', 'c', 'batch', 'm', 'n', 'k', 'transA', 'transB', 'strideA', 'strideB', 'strideC', 'beta', 'bias'],
  conv2d: ['x', 'w', 'bias', 'y', 'geometry'],
  conv2dClip: ['x', 'w', 'bias', 'y', 'geometry', 'lo', 'hi'],
  matmulPackedLength: ['n', 'k', 'hasBias', 'bf16'],
  bf16Supported: [],
  matmulPack: ['b', 'packed', 'n', 'k', 'transB', 'hasBias', 'bf16'],
  matmulPacked: ['a', 'b', 'packed', 'c', 'm', 'n', 'k', 'transB', 'bias', 'act'],
  conv2dPackedLength: ['geometry', 'hasBias', 'clipOn', 'lo', 'hi'],
  conv2dPack: ['w', 'packed', 'geometry', 'hasBias', 'clipOn', 'lo', 'hi'],
  conv2dPacked: ['x', 'w', 'packed', 'bias', 'y', 'geometry', 'clipOn', 'lo', 'hi'],
  conv2dBackwardData: ['gy', 'w', 'gx', 'geometry'],
  conv2dBackwardWeight: ['x', 'gy', 'gw', 'gb', 'geometry'],
  q4Linear: ['x', 'packed', 'scales', 'code', 'bias', 'y', 'm', 'rows', 'cols', 'blocksize', 'trans', 'bf16'],
  q4Conv2d: ['x', 'packed', 'scales', 'code', 'bias', 'y', 'geometry', 'blocksize'],
  q4Conv2dBackwardData: ['gy', 'packed', 'scales', 'code', 'gx', 'geometry', 'blocksize'],
  q4Stats: ['out', 'reset'],
  unary: ['op', 'x', 'out', 'n', 'p0', 'p1'],
  unaryGrad: ['op', 'x', 'gy', 'gx', 'n', 'p0', 'p1'],
  binary: ['op', 'a', 'aOffset', 'aStrides', 'b', 'bOffset', 'bStrides', 'out', 'shape'],
  where: ['c', 'cOffset', 'cStrides', 'a', 'aOffset', 'aStrides', 'b', 'bOffset', 'bStrides', 'out', 'shape'],
  copy: ['src', 'srcOffset', 'srcStrides', 'dst', 'dstOffset', 'dstStrides', 'shape'],
  fill: ['dst', 'offset', 'strides', 'shape', 'value'],
  reduce: ['op', 'x', 'outer', 'len', 'inner', 'out', 'arg'],
  layerNorm: ['x', 'gamma', 'beta', 'y', 'mean', 'rstd', 'rows', 'n', 'eps'],
  layerNormBackward: ['x', 'gy', 'gamma', 'mean', 'rstd', 'gx', 'ggamma', 'gbeta', 'rows', 'n'],
  batchNorm: ['x', 'gamma', 'beta', 'runningMean', 'runningVar', 'y', 'mean', 'rstd', 'n', 'c', 's', 'training', 'momentum', 'eps'],
  batchNormBackward: ['x', 'gy', 'gamma', 'mean', 'rstd', 'gx', 'ggamma', 'gbeta', 'n', 'c', 's', 'training'],
  softmax: ['x', 'y', 'rows', 'n', 'log'],
  softmaxBackward: ['y', 'gy', 'gx', 'rows', 'n', 'log'],
  maxPool2d: ['x', 'y', 'arg', 'geometry', 'countIncludePad'],
  maxPool2dBackward: ['gy', 'arg', 'gx', 'geometry', 'countIncludePad'],
  avgPool2d: ['x', 'y', 'geometry', 'countIncludePad'],
  avgPool2dBackward: ['gy', 'gx', 'geometry', 'countIncludePad'],
  adaptiveAvgPool2d: ['x', 'y', 'planes', 'h', 'w', 'outH', 'outW'],
  adaptiveAvgPool2dBackward: ['gy', 'gx', 'planes', 'h', 'w', 'outH', 'outW'],
  attention: ['q', 'k', 'v', 'out', 'lse', 'probs', 'batch', 'n', 'm', 'd', 'scale', 'causal'],
  attentionStrided: ['q', 'qOffset', 'qStrides', 'k', 'kOffset', 'kStrides', 'v', 'vOffset', 'vStrides', 'out', 'outOffset', 'outStrides', 'batch', 'heads', 'n', 'm', 'd', 'scale', 'causal'],
  attentionBackward: ['q', 'k', 'v', 'out', 'lse', 'probs', 'gout', 'gq', 'gk', 'gv', 'batch', 'n', 'm', 'd', 'scale', 'causal'],
  indexSelect: ['x', 'idx', 'out', 'outer', 'len', 'inner', 'count'],
  indexAdd: ['gy', 'idx', 'gx', 'outer', 'len', 'inner', 'count'],
  interpolate: ['x', 'y', 'geometry', 'bicubic', 'alignCorners', 'scaleH', 'scaleW'],
  interpolateBackward: ['gy', 'gx', 'geometry', 'bicubic', 'alignCorners', 'scaleH', 'scaleW'],
  alignOffset: ['arrayBuffer'],
} as const;

export type KernelName = keyof typeof KERNELS;

type Arguments<Names extends readonly string[]> = { -readonly [I in keyof Names]: unknown };

/** An entry point that compiles only when called with exactly its listed arguments. */
export type Kernel<N extends KernelName> = (...args: Arguments<(typeof KERNELS)[N]>) => unknown;

/** The addon's side, as binding.cc exports it. */
export interface AddonContract {
  enums: Record<string, Record<string, number>>;
  arity: Record<string, number>;
}

function compareCodes(enumName: string, ours: Record<string, number> | undefined, theirs: Record<string, number> | undefined, out: string[]): void {
  if (!ours || !theirs) {
    out.push(`enum ${enumName} is ${ours ? 'absent from the addon' : 'unknown to TypeScript'}`);
    return;
  }
  for (const name of new Set([...Object.keys(ours), ...Object.keys(theirs)])) {
    const a = ours[name];
    const b = theirs[name];
    if (a === b) continue;
    if (b === undefined) out.push(`${enumName} '${name}' is ${a} in TypeScript but absent from the addon`);
    else if (a === undefined) out.push(`${enumName} '${name}' is ${b} in the addon but unknown to TypeScript`);
    else out.push(`${enumName} '${name}' is ${a} in TypeScript but ${b} in the addon`);
  }
}

/** Every difference between the addon's description and this file; empty when they agree. */
export function contractMismatches(addon: AddonContract): string[] {
  const out: string[] = [];
  for (const name of new Set([...Object.keys(ENUMS), ...Object.keys(addon.enums)])) compareCodes(name, ENUMS[name], addon.enums[name], out);
  const ours: Record<string, number> = Object.fromEntries(Object.entries(KERNELS).map(([name, args]) => [name, args.length]));
  for (const name of new Set([...Object.keys(ours), ...Object.keys(addon.arity)])) {
    const a = ours[name];
    const b = addon.arity[name];
    if (a === b) continue;
    if (b === undefined) out.push(`${name}() is called with ${a} arguments by TypeScript but not exported by the addon`);
    else if (a === undefined) out.push(`${name}() is exported by the addon (${b} arguments) but unknown to TypeScript`);
    else out.push(`${name}() takes ${a} arguments in TypeScript but ${b} in the addon`);
  }
  return out;
}
