// ONNX exporters of graft's nn layers, found by class (the most derived first). Each writes the
// nodes that compute what the layer's forward computes in eval mode: dropout and drop-path are
// identities, BatchNorm uses its running statistics. A module without an exporter stops the
// export with its class and path, so nothing is exported that would compute something else.
import type { Module } from '../../nn/module.js';
import { Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, DropPath, Identity, LayerNorm, Linear, MaxPool2d, Sequential, type ActivationName } from '../../nn/layers.js';
import { LayerScale } from '../../nn/layer-scale.js';
import { GatedMlp, Mlp, SwiGLU, UpDownMlp, type MlpActivation } from '../../nn/mlp.js';
import { FusedQkvAttention, QkvProjAttention } from '../../nn/attention.js';
import { ones } from '../../ops/creation.js';
import type { OnnxGraph } from './graph.js';

/** Writes the nodes of module `m` (at `path`) applied to value `x`; returns the output value. */
export type LayerExporter<M extends Module = Module> = (g: OnnxGraph, m: M, x: string, path: string) => string;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Class<M> = abstract new (...args: any[]) => M;
const exporters: [Class<Module>, LayerExporter][] = [];

/** Registers the exporter of a module class; later registrations win over earlier ones for subclasses. */
export function registerExporter<M extends Module>(cls: Class<M>, fn: LayerExporter<M>): void {
  exporters.unshift([cls, fn as LayerExporter]);
}

export class OnnxExportError extends Error {
  override name = 'OnnxExportError';
}

/** The nodes of any module with a registered exporter. */
export function exportModule(g: OnnxGraph, m: Module, x: string, path: string): string {
  for (const [cls, fn] of exporters) if (m instanceof cls) return fn(g, m, x, path || 'model');
  throw new OnnxExportError(`no ONNX exporter for ${m.constructor.name} at '${path || '(root)'}'; ONNX export covers ResNet, MobileNetV2 (torchvision), imported Keras LayersModels (nsfwjs' MobileNetV2) and the ViT family (timm, torchvision, DINOv2); TensorFlow graph models (nsfwjs' InceptionV3) do not export`);
}

const child = (path: string, name: string) => (path ? `${path}.${name}` : name);

/** An activation by name, as nn/layers.ts and nn/mlp.ts define them. */
export function activation(g: OnnxGraph, kind: ActivationName | MlpActivation, x: string, name: string): string {
  switch (kind) {
    case 'relu': return g.op('Relu', [x], name);
    case 'relu6': return g.op('Clip', [x, g.scalar(0, `${name}/min`), g.scalar(6, `${name}/max`)], name);
    case 'gelu': return g.gelu(x, 'erf', name);
    case 'gelu_tanh': return g.gelu(x, 'tanh', name);
    case 'silu': return g.op('Mul', [x, g.op('Sigmoid', [x], `${name}/Sigmoid`)], name);
    case 'sigmoid': return g.op('Sigmoid', [x], name);
    case 'tanh': return g.op('Tanh', [x], name);
    case 'hardswish': return g.op('HardSwish', [x], name);
    case 'identity': return x;
  }
}

/** Multi-head attention on projected q, k, v (B, N, C) → (B, N, C): softmax(q kᵀ / √D) v per head. */
export function attention(g: OnnxGraph, q: string, k: string, v: string, heads: number, dim: number, name: string): string {
  const d = dim / heads;
  const split = (t: string, tag: string) => g.op('Transpose', [g.reshape(t, [0, 0, heads, d], `${name}/${tag}_heads`)], `${name}/${tag}_bhnd`, { perm: [0, 2, 1, 3] });
  return attentionHeads(g, split(q, 'q'), split(k, 'k'), split(v, 'v'), dim, d, name);
}

/** Attention on per-head q, k, v (B, H, N, D), heads merged back to (B, N, C). */
export function attentionHeads(g: OnnxGraph, qh: string, kh: string, vh: string, dim: number, d: number, name: string): string {
  const kt = g.op('Transpose', [kh], `${name}/kT`, { perm: [0, 1, 3, 2] });
  const scores = g.op('Mul', [g.op('MatMul', [qh, kt], `${name}/qk`), g.scalar(1 / Math.sqrt(d), `${name}/scale`)], `${name}/scores`);
  const probs = g.op('Softmax', [scores], `${name}/Softmax`, { axis: -1 });
  const out = g.op('Transpose', [g.op('MatMul', [probs, vh], `${name}/pv`)], `${name}/bnhd`, { perm: [0, 2, 1, 3] });
  return g.reshape(out, [0, 0, dim], `${name}/merged`);
}

registerExporter(Linear, (g, m, x, p) => g.linear(x, m.weight, m.bias, p));
registerExporter(Conv2d, (g, m, x, p) => {
  const inputs = [x, g.matrix(Float32Array.from(m.weight.toArray() as ArrayLike<number>), m.weight.shape, 0, `${p}.weight`), ...(m.bias ? [g.weight(m.bias, `${p}.bias`)] : [])];
  return g.op('Conv', inputs, p, {
    kernel_shape: m.kernelSize, strides: m.stride, dilations: m.dilation, group: m.groups,
    pads: [m.padding[0], m.padding[1], m.padding[0], m.padding[1]],
  });
});
registerExporter(BatchNorm2d, (g, m, x, p) => g.op('BatchNormalization', [
  x, g.weight(m.weight, `${p}.weight`), g.weight(m.bias, `${p}.bias`), g.weight(m.runningMean, `${p}.running_mean`), g.weight(m.runningVar, `${p}.running_var`),
], p, { epsilon: m.eps }));
registerExporter(LayerNorm, (g, m, x, p) => {
  const scale = m.weight ? g.weight(m.weight, `${p}.weight`) : g.floats(ones([m.normalizedShape]).toArray() as Float32Array, [m.normalizedShape], `${p}.ones`);
  const inputs = [scale, ...(m.bias ? [g.weight(m.bias, `${p}.bias`)] : [])];
  if (!m.channelsFirst) return g.op('LayerNormalization', [x, ...inputs], p, { axis: -1, epsilon: m.eps });
  // Over the channels of (B, C, H, W): to channels-last and back, LayerNormalization normalising the trailing axes.
  const nhwc = g.op('Transpose', [x], `${p}/to_nhwc`, { perm: [0, 2, 3, 1] });
  return g.op('Transpose', [g.op('LayerNormalization', [nhwc, ...inputs], p, { axis: -1, epsilon: m.eps })], `${p}/to_nchw`, { perm: [0, 3, 1, 2] });
});
registerExporter(Activation, (g, m, x, p) => activation(g, m.kind, x, p));
for (const cls of [Dropout, DropPath, Identity] as Class<Module>[]) registerExporter(cls, (_g, _m, x) => x);
registerExporter(MaxPool2d, (g, m, x, p) => {
  const k = typeof m.kernel === 'number' ? [m.kernel, m.kernel] : [...m.kernel];
  const s = m.opts.stride === undefined ? k : typeof m.opts.stride === 'number' ? [m.opts.stride, m.opts.stride] : [...m.opts.stride];
  const pad = m.opts.padding === undefined ? [0, 0] : typeof m.opts.padding === 'number' ? [m.opts.padding, m.opts.padding] : [...m.opts.padding];
  return g.op('MaxPool', [x], p, { kernel_shape: k, strides: s, pads: [pad[0]!, pad[1]!, pad[0]!, pad[1]!], ceil_mode: m.opts.ceilMode ? 1 : 0 });
});
registerExporter(AvgPool2d, (g, m, x, p) => {
  const k = typeof m.kernel === 'number' ? [m.kernel, m.kernel] : [...m.kernel];
  const s = m.opts.stride === undefined ? k : typeof m.opts.stride === 'number' ? [m.opts.stride, m.opts.stride] : [...m.opts.stride];
  const pad = m.opts.padding === undefined ? [0, 0] : typeof m.opts.padding === 'number' ? [m.opts.padding, m.opts.padding] : [...m.opts.padding];
  return g.op('AveragePool', [x], p, {
    kernel_shape: k, strides: s, pads: [pad[0]!, pad[1]!, pad[0]!, pad[1]!], ceil_mode: m.opts.ceilMode ? 1 : 0, count_include_pad: m.opts.countIncludePad === false ? 0 : 1,
  });
});
registerExporter(AdaptiveAvgPool2d, (g, m, x, p) => {
  const size = typeof m.outputSize === 'number' ? [m.outputSize, m.outputSize] : m.outputSize;
  if (size[0] !== 1 || size[1] !== 1) throw new OnnxExportError(`${p}: adaptive average pooling to ${size.join('×')} has no fixed ONNX form; only the global pool (1×1) exports`);
  return g.op('GlobalAveragePool', [x], p);
});
registerExporter(Sequential, (g, m, x, p) => m.children().reduce((h, [name, c]) => exportModule(g, c, h, child(p, name)), x));
registerExporter(LayerScale, (g, m, x, p) => g.op('Mul', [x, g.weight(m.scale, `${p}.${m.paramName}`)], p));
registerExporter(Mlp, (g, m, x, p) => exportModule(g, m.fc2, activation(g, m.activation, exportModule(g, m.fc1, x, `${p}.fc1`), `${p}/act`), `${p}.fc2`));
registerExporter(UpDownMlp, (g, m, x, p) => exportModule(g, m.down_proj, activation(g, m.activation, exportModule(g, m.up_proj, x, `${p}.up_proj`), `${p}/act`), `${p}.down_proj`));
registerExporter(GatedMlp, (g, m, x, p) => {
  const gate = activation(g, m.activation, exportModule(g, m.gate_proj, x, `${p}.gate_proj`), `${p}/act`);
  return exportModule(g, m.down_proj, g.op('Mul', [gate, exportModule(g, m.up_proj, x, `${p}.up_proj`)], `${p}/gated`), `${p}.down_proj`);
});
registerExporter(SwiGLU, (g, m, x, p) => {
  const [x1, x2] = g.node('Split', [exportModule(g, m.weights_in, x, `${p}.weights_in`), g.ints([m.hiddenFeatures, m.hiddenFeatures], `${p}/sizes`)], `${p}/Split`, { axis: -1 }, 2) as [string, string];
  return exportModule(g, m.weights_out, g.op('Mul', [activation(g, 'silu', x1, `${p}/silu`), x2], `${p}/gated`), `${p}.weights_out`);
});
registerExporter(FusedQkvAttention, (g, m, x, p) => {
  const d = m.dim / m.numHeads;
  // (B, N, 3C) → (B, N, 3, H, D) → (3, B, H, N, D), as the module's forward.
  const qkv = g.op('Transpose', [g.reshape(exportModule(g, m.qkv, x, `${p}.qkv`), [0, 0, 3, m.numHeads, d], `${p}/qkv5`)], `${p}/qkv_split`, { perm: [2, 0, 3, 1, 4] });
  const pick = (i: number) => g.op('Gather', [qkv, g.ints([i], `${p}/i${i}`)], `${p}/pick${i}`, { axis: 0 });
  const squeeze = (t: string, i: number) => g.op('Squeeze', [t, g.ints([0], `${p}/sq${i}`)], `${p}/qkv${i}`);
  const out = attentionHeads(g, squeeze(pick(0), 0), squeeze(pick(1), 1), squeeze(pick(2), 2), m.dim, d, `${p}/attention`);
  return exportModule(g, m.proj, out, `${p}.proj`);
});
registerExporter(QkvProjAttention, (g, m, x, p) => {
  const proj = (l: Linear, n: string) => exportModule(g, l, x, `${p}.${n}`);
  return exportModule(g, m.o_proj, attention(g, proj(m.q_proj, 'q_proj'), proj(m.k_proj, 'k_proj'), proj(m.v_proj, 'v_proj'), m.numHeads, m.dim, `${p}/attention`), `${p}.o_proj`);
});
