// ONNX exporter of imported Keras LayersModels (nsfwjs' MobileNetV2 and any model of the layer
// classes graft imports): the layer calls in graph order, each written as the ONNX nodes of what
// its graft layer computes in eval mode, in graft's NCHW layout. TensorFlow's 'same' windows pad
// by the input size (more at the end when the total is odd); the input size is fixed, so each
// window's pads are written as constants. BatchNorm stays a BatchNormalization node (onnxruntime
// folds it), Dropout is the identity.
import { KerasModel, type KerasCall } from '../../models/keras/keras-model.js';
import { kerasToGraftAxis } from '../../models/keras/layer-table.js';
import { samePads, staticSamePadding } from '../../models/keras/tf-windows.js';
import { BatchNorm2d, Conv2d, Linear } from '../../nn/layers.js';
import type { Module } from '../../nn/module.js';
import type { OnnxGraph } from './graph.js';
import { activation, OnnxExportError, registerExporter } from './layers.js';

type Pair = [number, number];

function pair(v: unknown, fallback: number): Pair {
  if (v === undefined || v === null) return [fallback, fallback];
  if (typeof v === 'number') return [v, v];
  return [Number((v as number[])[0]), Number((v as number[])[1])];
}

/** ONNX pads [top, left, bottom, right] of a window on an h × w input. */
function windowPads(same: boolean, h: number, w: number, kernel: Pair, stride: Pair, dilation: Pair): number[] {
  if (!same) return [0, 0, 0, 0];
  const [t, b, l, r] = samePads(h, w, kernel, stride, dilation);
  return [t, l, b, r];
}

function kerasActivationNode(g: OnnxGraph, name: unknown, x: string, p: string, layer: string): string {
  const key = typeof name === 'string' ? name.toLowerCase() : name && typeof name === 'object' ? String((name as { class_name?: string }).class_name).toLowerCase() : 'linear';
  switch (key) {
    case 'linear': return x;
    case 'relu': case 'relu6': case 'sigmoid': case 'tanh': case 'silu': case 'gelu':
      return activation(g, key, x, p);
    case 'swish': return activation(g, 'silu', x, p);
    case 'softmax': return g.op('Softmax', [x], p, { axis: 1 });
    case 'elu': return g.op('Elu', [x], p, { alpha: 1 });
    case 'selu': return g.op('Selu', [x], p, { alpha: 1.6732632423543772, gamma: 1.0507009873554805 });
    case 'softplus': return g.op('Softplus', [x], p);
    case 'softsign': return g.op('Softsign', [x], p);
    case 'hard_sigmoid': return g.op('HardSigmoid', [x], p, { alpha: 0.2, beta: 0.5 });
    case 'exponential': return g.op('Exp', [x], p);
    default: throw new OnnxExportError(`Keras layer '${layer}': activation ${JSON.stringify(name)} has no ONNX exporter`);
  }
}

function call(g: OnnxGraph, model: KerasModel, c: KerasCall, xs: string[], shapeOf: (k: string) => readonly number[]): string {
  const cfg = c.layer.config;
  const p = c.module ?? c.layer.name;
  const m = c.module ? model.getModule(c.module) : null;
  const inShape = shapeOf(c.inputs[0]!);
  const x = xs[0]!;
  const fail = (why: string): never => {
    throw new OnnxExportError(`Keras layer '${c.layer.name}' (${c.layer.className}): ${why}`);
  };
  const weighted = <T extends Module>(cls: abstract new (...a: never[]) => T): T => {
    if (!(m instanceof cls)) fail(`its module is ${m?.constructor.name ?? 'missing'}, not a plain ${cls.name} (ONNX export writes merged models)`);
    return m as T;
  };
  switch (c.layer.className) {
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      const conv = weighted(Conv2d);
      const same = cfg['padding'] === 'same';
      const fixed = same ? staticSamePadding(conv.kernelSize, conv.stride, conv.dilation) : null;
      const pads = fixed ? [fixed[0], fixed[1], fixed[0], fixed[1]] : windowPads(same, inShape[1]!, inShape[2]!, conv.kernelSize, conv.stride, conv.dilation);
      const weight = g.matrix(Float32Array.from(conv.weight.toArray() as ArrayLike<number>), conv.weight.shape, 0, `${p}.weight`);
      const y = g.op('Conv', [x, weight, ...(conv.bias ? [g.weight(conv.bias, `${p}.bias`)] : [])], p, {
        kernel_shape: conv.kernelSize, strides: conv.stride, dilations: conv.dilation, group: conv.groups, pads,
      });
      return kerasActivationNode(g, cfg['activation'] ?? 'linear', y, `${p}/activation`, c.layer.name);
    }
    case 'Dense': {
      const dense = weighted(Linear);
      if (inShape.length === 1) return kerasActivationNode(g, cfg['activation'] ?? 'linear', g.linear(x, dense.weight, dense.bias, p), `${p}/activation`, c.layer.name);
      // On an image Keras's Dense acts on the channel (last NHWC) axis.
      const nhwc = g.op('Transpose', [x], `${p}/to_nhwc`, { perm: [0, 2, 3, 1] });
      const y = g.op('Transpose', [g.linear(nhwc, dense.weight, dense.bias, p)], `${p}/to_nchw`, { perm: [0, 3, 1, 2] });
      return kerasActivationNode(g, cfg['activation'] ?? 'linear', y, `${p}/activation`, c.layer.name);
    }
    case 'BatchNormalization': {
      const bn = weighted(BatchNorm2d);
      const ch = bn.runningMean.shape[0]!;
      const scale = bn.weight ? g.weight(bn.weight, `${p}.gamma`) : g.floats(new Float32Array(ch).fill(1), [ch], `${p}.ones`);
      const shift = bn.bias ? g.weight(bn.bias, `${p}.beta`) : g.floats(new Float32Array(ch), [ch], `${p}.zeros`);
      if (inShape.length !== 3) fail('graft exports BatchNormalization on images only');
      return g.op('BatchNormalization', [x, scale, shift, g.weight(bn.runningMean, `${p}.moving_mean`), g.weight(bn.runningVar, `${p}.moving_variance`)], p, { epsilon: bn.eps });
    }
    case 'ReLU': {
      const maxValue = (cfg['max_value'] ?? null) as number | null;
      if (Number(cfg['negative_slope'] ?? 0) !== 0 || Number(cfg['threshold'] ?? 0) !== 0) fail('a ReLU with negative_slope or threshold has no ONNX exporter');
      return maxValue === null ? g.op('Relu', [x], p) : g.op('Clip', [x, g.scalar(0, `${p}/min`), g.scalar(maxValue, `${p}/max`)], p);
    }
    case 'LeakyReLU': return g.op('LeakyRelu', [x], p, { alpha: Number(cfg['alpha'] ?? cfg['negative_slope'] ?? 0.3) });
    case 'ELU': return g.op('Elu', [x], p, { alpha: Number(cfg['alpha'] ?? 1) });
    case 'ThresholdedReLU': return g.op('ThresholdedRelu', [x], p, { alpha: Number(cfg['theta'] ?? 1) });
    case 'Activation': return kerasActivationNode(g, cfg['activation'], x, p, c.layer.name);
    case 'Softmax': return g.op('Softmax', [x], p, { axis: kerasToGraftAxis(Number(cfg['axis'] ?? -1), inShape.length + 1) });
    case 'ZeroPadding2D':
    case 'Cropping2D': {
      const crop = c.layer.className === 'Cropping2D';
      const v = cfg[crop ? 'cropping' : 'padding'] ?? (crop ? 0 : 1);
      const [t, b, l, r] = typeof v === 'number' ? [v, v, v, v]
        : (v as unknown[]).every((e) => typeof e === 'number') ? [(v as number[])[0]!, (v as number[])[0]!, (v as number[])[1]!, (v as number[])[1]!]
          : [...(v as number[][])[0]!, ...(v as number[][])[1]!];
      if (!crop) return g.op('Pad', [x, g.ints([0, 0, t!, l!, 0, 0, b!, r!], `${p}/pads`)], p, { mode: 'constant' });
      const [, h, w] = inShape as [number, number, number];
      return g.op('Slice', [x, g.ints([t!, l!], `${p}/starts`), g.ints([h - b!, w - r!], `${p}/ends`), g.ints([2, 3], `${p}/axes`)], p);
    }
    case 'MaxPooling2D':
    case 'AveragePooling2D': {
      const kernel = pair(cfg['pool_size'], 2);
      const stride = cfg['strides'] === undefined || cfg['strides'] === null ? kernel : pair(cfg['strides'], 1);
      const pads = windowPads(cfg['padding'] === 'same', inShape[1]!, inShape[2]!, kernel, stride, [1, 1]);
      if (c.layer.className === 'MaxPooling2D') return g.op('MaxPool', [x], p, { kernel_shape: kernel, strides: stride, pads });
      // TensorFlow's 'same' average counts only the window's cells inside the input.
      return g.op('AveragePool', [x], p, { kernel_shape: kernel, strides: stride, pads, count_include_pad: 0 });
    }
    case 'GlobalAveragePooling2D':
    case 'GlobalMaxPooling2D': {
      const pooled = g.op(c.layer.className === 'GlobalMaxPooling2D' ? 'GlobalMaxPool' : 'GlobalAveragePool', [x], `${p}/pool`);
      return cfg['keepdims'] === true ? pooled : g.op('Flatten', [pooled], p, { axis: 1 });
    }
    case 'Flatten':
      // Keras flattens NHWC: channels move last first, so that the Dense weights line up.
      return inShape.length === 1 ? x : g.op('Flatten', [g.op('Transpose', [x], `${p}/to_nhwc`, { perm: [0, 2, 3, 1] })], p, { axis: 1 });
    case 'Dropout': return x;
    case 'Add': return xs.slice(1).reduce((a, b, i) => g.op('Add', [a, b], `${p}/add${i}`), x);
    case 'Subtract': return xs.slice(1).reduce((a, b, i) => g.op('Sub', [a, b], `${p}/sub${i}`), x);
    case 'Multiply': return xs.slice(1).reduce((a, b, i) => g.op('Mul', [a, b], `${p}/mul${i}`), x);
    case 'Maximum': return g.op('Max', xs, p);
    case 'Minimum': return g.op('Min', xs, p);
    case 'Average': return g.op('Mul', [g.op('Sum', xs, `${p}/sum`), g.scalar(1 / xs.length, `${p}/inv_n`)], p);
    case 'Concatenate': return g.op('Concat', xs, p, { axis: kerasToGraftAxis(Number(cfg['axis'] ?? -1), inShape.length + 1) });
    default: return fail('this layer class has no ONNX exporter');
  }
}

registerExporter(KerasModel, (g, model, x) => {
  const { inputKey, outputKey, calls, shapeOf } = model.graph();
  const values = new Map<string, string>([[inputKey, x]]);
  for (const c of calls) {
    const xs = c.inputs.map((k) => {
      const v = values.get(k);
      if (v === undefined) throw new OnnxExportError(`Keras layer '${c.layer.name}' reads '${k}', which no earlier layer wrote`);
      return v;
    });
    values.set(c.key, call(g, model, c, xs, shapeOf));
  }
  return values.get(outputKey)!;
});
