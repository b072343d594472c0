// The cases the op table (src/ops/table.ts) names: one builder per case name, which the type
// below makes exhaustive both ways (a name the table lists without a builder, or a builder the
// table does not list, does not compile). Conformance runs every case on both backends; the
// float64 gradient check runs the cases of ops with a gradient.
import * as g from '../../src/index.js';
import { Generator } from '../../src/tensor/random.js';
import { opTable, type OpCaseName, type OpName } from '../../src/ops/table.js';
import { blockScales, codeOf, quantize4, type QuantType } from '../../src/tensor/quant4.js';

/** A fixed 4-bit weight (drawn from its own seed, quantised as bitsandbytes does) on the current backend. */
export function q4Weight(shape: number[], blocksize: number, quantType: QuantType, doubleQuant = false, seed = 77): g.Q4Tensors {
  const values = g.randn(shape, { generator: new Generator(seed), std: 0.3 }).toArray() as Float32Array;
  const q = quantize4(values, shape, { quantType, blocksize, doubleQuant });
  return {
    packed: g.tensor(q.packed, [q.packed.length], { dtype: 'uint8' }),
    scales: g.tensor(blockScales(q.state), [Math.ceil(values.length / blocksize)]),
    code: g.tensor(Float32Array.from(codeOf(quantType)), [16]),
    blocksize,
    shape,
  };
}

export type CaseFn = (...xs: g.Tensor[]) => g.Tensor;
/** The function under test, its inputs, and gradient-check options where the defaults do not fit. */
export type Case = [fn: CaseFn, inputs: g.Tensor[], gradcheck?: { h?: number }];

export interface OpCase {
  name: OpCaseName;
  /** The table's ops that list this case. */
  ops: OpName[];
  /** True when one of those ops has a gradient: the case is gradient-checked and its gradients compared. */
  differentiable: boolean;
  make: () => Case;
}

/** A case's inputs come from its own stream, so running one case alone draws the same values. */
function caseSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return (h ^ seed) >>> 0;
}

/** Every case of the op table, with inputs of `dtype` drawn from generators seeded from `seed`. */
export function opCases(dtype: 'float32' | 'float64', seed = 1234): OpCase[] {
let gen = new Generator(seed);
const T = (shape: number[], scale = 1) => g.randn(shape, { dtype, generator: gen, std: scale });
const positive = (shape: number[]) => g.noGrad(() => g.add(g.abs(T(shape)), 0.5));
// Values kept away from kinks (relu at 0, clamp bounds) so finite differences are valid.
const awayFromKinks = (shape: number[]) => g.noGrad(() => g.mul(g.add(g.abs(T(shape)), 0.1), g.sign(T(shape))));
// a, and b equal to a in about half the places: comparisons see ties as well as both orders.
const tiedPair = (shape: number[]): [g.Tensor, g.Tensor] => {
  const a = T(shape);
  return [a, g.noGrad(() => g.where(g.gt(T(shape), 0), a, T(shape)))];
};
const int32 = (data: number[] | number[][]) => g.tensor(data, undefined, { dtype: 'int32' });

const builders: { [C in OpCaseName]: () => Case } = {
  'add broadcast': () => [g.add, [T([3, 4]), T([4])]],
  'sub broadcast': () => [g.sub, [T([2, 1, 4]), T([3, 1])]],
  'mul broadcast': () => [g.mul, [T([2, 3]), T([2, 1])]],
  'div': () => [g.div, [T([3, 4]), positive([3, 4])]],
  'pow tensor': () => [g.pow, [positive([5]), T([5])]],
  'pow scalar': () => [(x) => g.pow(x, 3), [T([6])]],
  'maximum': () => [g.maximum, [T([4, 3]), T([3])]],
  'minimum': () => [g.minimum, [T([4, 3]), T([4, 1])]],
  'neg': () => [g.neg, [T([5])]],
  'exp': () => [g.exp, [T([5])]],
  'log': () => [g.log, [positive([5])]],
  'sqrt': () => [g.sqrt, [positive([5])]],
  'rsqrt': () => [g.rsqrt, [positive([5])]],
  'abs': () => [g.abs, [awayFromKinks([6])]],
  'square': () => [g.square, [T([5])]],
  'reciprocal': () => [g.reciprocal, [positive([5])]],
  'clamp': () => [(x) => g.clamp(x, -0.05, 0.05), [awayFromKinks([8])]],
  'affine': () => [(x) => g.affine(x, 2.5, -1), [T([5])]],
  'relu': () => [g.relu, [awayFromKinks([8])]],
  'relu6': () => [g.relu6, [g.noGrad(() => g.mul(awayFromKinks([8]), 4))]],
  'gelu': () => [(x) => g.gelu(x), [T([8], 2)]],
  'gelu tanh': () => [(x) => g.gelu(x, 'tanh'), [T([8], 2)]],
  'silu': () => [g.silu, [T([8], 2)]],
  'sigmoid': () => [g.sigmoid, [T([8], 2)]],
  'tanh': () => [g.tanh, [T([8], 2)]],
  'hardswish': () => [g.hardswish, [g.noGrad(() => g.mul(awayFromKinks([8]), 2))]],
  'where': () => {
    const cond = g.noGrad(() => g.gt(T([3, 4]), 0));
    return [(a, b) => g.where(cond, a!, b!), [T([3, 4]), T([4])]];
  },
  'sum axes keepDims': () => [(x) => g.sum(x, [0, 2], { keepDims: true }), [T([2, 3, 4])]],
  'sum all': () => [(x) => g.sum(x), [T([2, 3])]],
  'mean': () => [(x) => g.mean(x, 1), [T([2, 3, 4])]],
  'max axis': () => [(x) => g.maxAlong(x, 1).values, [T([3, 5, 2])]],
  'max all': () => [(x) => g.max(x), [T([3, 4])]],
  'min axes': () => [(x) => g.min(x, [0]), [T([3, 4])]],
  'var': () => [(x) => g.variance(x, -1), [T([3, 6])]],
  'norm': () => [(x) => g.norm(x, 1), [T([3, 6])]],
  'softmax': () => [(x) => g.softmax(x, -1), [T([3, 5])]],
  'softmax axis 0': () => [(x) => g.softmax(x, 0), [T([3, 5])]],
  'logSoftmax': () => [(x) => g.logSoftmax(x, 1), [T([4, 6])]],
  'matmul 2d': () => [g.matmul, [T([3, 4]), T([4, 5])]],
  'matmul batched broadcast': () => [g.matmul, [T([2, 1, 3, 4]), T([3, 4, 2])]],
  'matmul transposed view': () => [(a, b) => g.matmul(a!, g.transpose(b!)), [T([3, 4]), T([5, 4])]],
  'matmul vector': () => [g.matmul, [T([4]), T([2, 4, 3])]],
  'linear': () => [(x, w, b) => g.linear(x!, w!, b!), [T([2, 3, 4]), T([5, 4]), T([5])]],
  'linear no bias': () => [(x, w) => g.linear(x!, w!), [T([3, 4]), T([2, 4])]],
  'checkpoint': () => [(x) => g.checkpoint((h) => g.tanh(g.mul(h, h)), x!, []), [T([3, 4])]],
  'linear4bit': () => {
    const w = q4Weight([5, 77], 64, 'nf4', true);
    return [(x, b) => g.linear4bit(x!, w, b!), [T([2, 3, 77]), T([5])]];
  },
  'conv2d4bit': () => {
    const w = q4Weight([4, 3, 3, 3], 32, 'fp4');
    return [(x, b) => g.conv2d4bit(x!, w, b!, { stride: 2, padding: 1 }), [T([2, 3, 7, 6]), T([4])]];
  },
  'conv2d': () => [(x, w, b) => g.conv2d(x!, w!, b!, { stride: 2, padding: 1 }), [T([2, 3, 7, 6]), T([4, 3, 3, 3]), T([4])]],
  'conv2d dilated': () => [(x, w) => g.conv2d(x!, w!, null, { padding: 2, dilation: 2 }), [T([1, 2, 6, 6]), T([3, 2, 3, 3])]],
  'conv2d grouped': () => [(x, w) => g.conv2d(x!, w!, null, { groups: 2, padding: [1, 0] }), [T([2, 4, 5, 5]), T([6, 2, 3, 2])]],
  'conv2d depthwise': () => [(x, w) => g.conv2d(x!, w!, null, { groups: 3, padding: 1, stride: 2 }), [T([1, 3, 6, 6]), T([3, 1, 3, 3])]],
  // Inputs scaled ×3 so that ReLU6 clips above 6 as well as below 0.
  'conv2dAct relu6 depthwise': () => [(x, w, b) => g.conv2dAct(g.affine(x!, 3), w!, b!, { groups: 4, padding: 1 }, 'relu6'), [T([2, 4, 6, 5]), T([4, 1, 3, 3]), T([4])]],
  'conv2dAct relu pointwise': () => [(x, w, b) => g.conv2dAct(x!, w!, b!, {}, 'relu'), [T([2, 6, 5, 4]), T([5, 6, 1, 1]), T([5])]],
  'conv2dAct relu6 stride 2': () => [(x, w) => g.conv2dAct(g.affine(x!, 3), w!, null, { stride: 2, padding: 1 }, 'relu6'), [T([1, 3, 7, 6]), T([4, 3, 3, 3])]],
  'conv2dAct relu grouped': () => [(x, w, b) => g.conv2dAct(x!, w!, b!, { groups: 2, padding: [1, 0] }, 'relu'), [T([2, 4, 5, 5]), T([6, 2, 3, 2]), T([6])]],
  'conv2d pointwise': () => [(x, w, b) => g.conv2d(x!, w!, b!), [T([2, 6, 5, 4]), T([5, 6, 1, 1]), T([5])]],
  'conv2d depthwise dilated bias': () => [(x, w, b) => g.conv2d(x!, w!, b!, { groups: 4, padding: 2, dilation: 2 }), [T([2, 4, 7, 6]), T([4, 1, 3, 3]), T([4])]],
  'conv2d depthwise 7x7 stride 2': () => [(x, w) => g.conv2d(x!, w!, null, { groups: 3, padding: 3, stride: 2 }), [T([1, 3, 9, 8]), T([3, 1, 7, 7])]],
  'maxPool2d': () => [(x) => g.maxPool2d(x!, 2), [T([2, 2, 4, 4])]],
  'maxPool2d padded': () => [(x) => g.maxPool2d(x!, 3, { stride: 2, padding: 1 }), [T([1, 2, 5, 5])]],
  'avgPool2d': () => [(x) => g.avgPool2d(x!, 3, { stride: 2, padding: 1 }), [T([1, 2, 5, 5])]],
  'avgPool2d exclude pad': () => [(x) => g.avgPool2d(x!, 3, { stride: 2, padding: 1, countIncludePad: false }), [T([1, 2, 5, 5])]],
  'adaptiveAvgPool2d': () => [(x) => g.adaptiveAvgPool2d(x!, [2, 3]), [T([2, 2, 5, 7])]],
  'layerNorm': () => [(x, w, b) => g.layerNorm(x!, w, b), [T([3, 6]), T([6]), T([6])]],
  'layerNorm2d': () => [(x, w, b) => g.layerNorm2d(x!, w, b), [T([2, 4, 3, 3]), T([4]), T([4])]],
  'batchNorm training': () => [(x, w, b) => g.batchNorm(x!, null, null, w!, b!, { training: true }), [T([4, 3, 2, 2]), T([3]), T([3])]],
  'batchNorm eval': () => {
    const rm = T([3]);
    const rv = positive([3]);
    return [(x, w, b) => g.batchNorm(x!, rm, rv, w!, b!, { training: false }), [T([2, 3, 2, 2]), T([3]), T([3])]];
  },
  'attention': () => [(q, k, v) => g.scaledDotProductAttention(q!, k!, v!), [T([2, 3, 4]), T([2, 5, 4]), T([2, 5, 4])]],
  'attention causal': () => [(q, k, v) => g.scaledDotProductAttention(q!, k!, v!, { causal: true }), [T([1, 2, 4, 3]), T([1, 2, 4, 3]), T([1, 2, 4, 3])]],
  'crossEntropy smoothing': () => {
    const y = g.tensor([0, 2, 1], undefined, { dtype: 'int32' });
    return [(x) => g.crossEntropy(x!, y, { labelSmoothing: 0.1 }), [T([3, 4])]];
  },
  'crossEntropy pixels ignore': () => {
    const y = g.tensor([0, 255, 2, 1, 255, 255, 0, 2], [2, 2, 2], { dtype: 'int32' });
    return [(x) => g.crossEntropy(x!, y, { ignoreIndex: 255 }), [T([2, 3, 2, 2])]];
  },
  'crossEntropy pixels ignore smoothing': () => {
    const y = g.tensor([1, 255, 0, 2, 2, 255], [1, 2, 3], { dtype: 'int32' });
    return [(x) => g.crossEntropy(x!, y, { ignoreIndex: 255, labelSmoothing: 0.2 }), [T([1, 3, 2, 3])]];
  },
  'indexSelect': () => {
    const idx = g.tensor([2, 0, 2], undefined, { dtype: 'int32' });
    return [(x) => g.indexSelect(x!, 1, idx), [T([2, 3, 2])]];
  },
  'interpolate bilinear': () => [(x) => g.interpolate(x!, { size: [5, 7], mode: 'bilinear' }), [T([1, 2, 3, 4])]],
  'interpolate bicubic align': () => [(x) => g.interpolate(x!, { size: [6, 5], mode: 'bicubic', alignCorners: true }), [T([1, 1, 4, 4])]],
  'interpolate bicubic scale': () => [(x) => g.interpolate(x!, { scaleFactor: 1.75, mode: 'bicubic' }), [T([1, 1, 4, 4])]],
  'kron': () => [g.kron, [T([2, 3]), T([3, 2])]],
  'reshape permute slice': () => [(x) => g.mul(g.slice(g.permute(g.reshape(x!, [3, 2, 4]), [2, 0, 1]), 1, 1, 3), 2), [T([6, 4])]],
  'slice step': () => [(x) => g.slice(x!, 1, 0, 5, 2), [T([2, 5])]],
  'expand': () => [(x) => g.expand(x!, [3, 2, 4]), [T([2, 1])]],
  'concat stack': () => [(a, b) => g.stack([g.concat([a!, b!], 1), g.concat([b!, a!], 1)], 0), [T([2, 3]), T([2, 3])]],
  'pad': () => [(x) => g.pad(x!, [1, 2, 0, 1], 0.5), [T([2, 3, 3])]],
  'select split': () => [(x) => g.mul(g.select(x!, 0, 1), g.split(x!, [1, 2], 0)[0]!), [T([3, 4])]],
  'contiguous': () => [(x) => g.contiguous(g.transpose(x!)), [T([3, 4])]],

  'erf': () => [g.erfOp, [T([8], 1.5)]],
  'sign': () => [g.sign, [awayFromKinks([6])]],
  'eq': () => [g.eq, tiedPair([3, 4])],
  'lt le': () => [(a, b) => g.concat([g.lt(a!, b!), g.le(a!, b!)], 0), tiedPair([3, 4])],
  'gt ge': () => [(a, b) => g.concat([g.gt(a!, b!), g.ge(a!, b!)], 0), tiedPair([3, 4])],
  // float64 → float32 → float64 (float32 → float64 → float32 in conformance). The inputs sit on
  // a grid of 2⁻¹² and the step is 2⁻¹⁰, so every perturbed value is exact in float32; with the
  // default step, float32 rounding (≈ 6·10⁻⁸) would swamp the difference.
  'cast': () => {
    const x = T([2, 3]);
    const grid = g.tensor(Float64Array.from(x.toArray(), (v) => Math.round(v * 4096) / 4096), x.shape, { dtype });
    return [(t) => g.cast(g.cast(t!, t!.dtype === 'float64' ? 'float32' : 'float64'), t!.dtype), [grid], { h: 2 ** -10 }];
  },
  'min axis': () => [(x) => g.minAlong(x!, 0).values, [T([4, 3])]],
  'argmax': () => [(x) => g.argmax(x!, 1), [T([3, 5])]],
  'norm p1': () => [(x) => g.norm(x!, [0, 1], { p: 1 }), [awayFromKinks([3, 4])]],
  'flatten': () => [(x) => g.flatten(x!, 1), [T([2, 3, 2])]],
  'unsqueeze squeeze': () => [(x) => g.squeeze(g.unsqueeze(g.squeeze(x!, 0), -1)), [T([1, 3, 4])]],
  // A fresh generator per call draws the same mask every time, which finite differences need.
  'dropout': () => [(x) => g.dropout(x!, 0.3, true, new Generator(3)), [T([4, 5])]],
  'dropPath': () => [(x) => g.dropPath(x!, 0.5, true, new Generator(4)), [T([6, 2, 3])]],
  'oneHot': () => {
    const labels = int32([2, 0, 3]);
    return [(like) => g.oneHot(labels, 4, like!), [T([1])]];
  },
  'embedding': () => {
    const ids = int32([[1, 3], [3, 0]]);
    return [(w) => g.embedding(ids, w!), [T([4, 3])]];
  },
  'assign': () => [(v) => {
    const target = g.zerosLike(v!);
    g.assign(target, v!);
    return target;
  }, [T([2, 3])]],
  'denseData': () => [(x) => g.denseData(g.transpose(x!)), [T([3, 4])]],
  'sumTo': () => [(x) => g.sumTo(x!, [1, 4]), [T([3, 2, 4])]],
  'sumAxes': () => [(x) => g.sumAxes(x!, [0, 2]), [T([2, 3, 4])]],
  'tensor': () => [() => g.tensor([[1.5, -2], [0.25, 4]], undefined, { dtype }), []],
  'full': () => [() => g.full([2, 3], -1.25, { dtype }), []],
  'zeros ones': () => [() => g.concat([g.zeros([2, 2], { dtype }), g.ones([2, 3], { dtype })], 1), []],
  'zerosLike onesLike': () => [(x) => g.concat([g.zerosLike(x!), g.onesLike(x!)], 0), [T([2, 3])]],
  'arange': () => [() => g.arange(-2, 3, 0.5, { dtype }), []],
  'rand': () => [() => g.rand([3, 4], { dtype, low: -1, high: 2, generator: new Generator(8) }), []],
  'randn': () => [() => g.randn([3, 4], { dtype, mean: 1, std: 0.5, generator: new Generator(9) }), []],
  'randint': () => [() => g.randint(-3, 5, [3, 4], { generator: new Generator(10) }), []],
  // A second instance of the same backend: toBackend copies across and the gradient comes back.
  'toBackend': () => [(x) => {
    const twin = { ...x!.backend, name: `${x!.backend.name} (twin)` };
    return g.toBackend(g.mul(g.toBackend(x!, twin), 2), x!.backend);
  }, [T([2, 3])]],
};

return (Object.keys(builders) as OpCaseName[]).map((name) => {
  const ops = (Object.keys(opTable) as OpName[]).filter((op) => (opTable[op].cases as readonly string[]).includes(name));
  return {
    name,
    ops,
    differentiable: ops.some((op) => opTable[op].gradient.kind !== 'none'),
    make: () => {
      gen = new Generator(caseSeed(seed, name));
      return builders[name]();
    },
  };
});
}
