// ONNX exporters of the model families: the torchvision CNNs' blocks (ResNet, MobileNetV2 and
// their shared Sequential pieces) and the ViTs (timm / torchvision VisionTransformer, DINOv2).
// Each follows its family's forwardFeatures + forwardHead. Position embeddings are resampled
// by graft itself when the input grid is not the model's (a function of the weights alone), so
// the graph holds them as constants.
import { NamedSequential, Flatten, Permute } from '../../models/cnn/torchvision-blocks.js';
import { InvertedResidual, MobileNetV2 } from '../../models/cnn/mobilenet-v2.js';
import { BasicBlock, Bottleneck, ResNet } from '../../models/cnn/resnet.js';
import { Block, VisionTransformer } from '../../models/vit/timm-vit.js';
import { Dinov2, Dinov2Layer } from '../../models/vit/dinov2.js';
import { resamplePosEmbed, type PosEmbedResize } from '../../models/vit/pos-embed.js';
import type { TokenPool } from '../../models/vit/configs.js';
import type { Conv2d } from '../../nn/layers.js';
import { noGrad } from '../../tensor/autograd.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { OnnxGraph } from './graph.js';
import { attention, exportModule, registerExporter } from './layers.js';

registerExporter(NamedSequential, (g, m, x, p) => m.children().reduce((h, [name, c]) => exportModule(g, c, h, `${p}.${name}`), x));
registerExporter(Flatten, (g, m, x, p) => g.op('Flatten', [x], p, { axis: m.startDim }));
registerExporter(Permute, (g, m, x, p) => g.op('Transpose', [x], p, { perm: m.dims }));

const globalPoolFlat = (g: OnnxGraph, x: string, p: string) => g.op('Flatten', [g.op('GlobalAveragePool', [x], `${p}/pool`)], `${p}/flatten`, { axis: 1 });

registerExporter(InvertedResidual, (g, m, x, p) => {
  const y = exportModule(g, m.conv, x, `${p}.conv`);
  return m.useResConnect ? g.op('Add', [x, y], `${p}/residual`) : y;
});
registerExporter(MobileNetV2, (g, m, x) => exportModule(g, m.classifier, globalPoolFlat(g, exportModule(g, m.features, x, 'features'), 'head'), 'classifier'));

registerExporter(BasicBlock, (g, m, x, p) => {
  const h = g.op('Relu', [exportModule(g, m.bn1, exportModule(g, m.conv1, x, `${p}.conv1`), `${p}.bn1`)], `${p}/relu1`);
  const out = exportModule(g, m.bn2, exportModule(g, m.conv2, h, `${p}.conv2`), `${p}.bn2`);
  const shortcut = m.downsample ? exportModule(g, m.downsample, x, `${p}.downsample`) : x;
  return g.op('Relu', [g.op('Add', [out, shortcut], `${p}/residual`)], `${p}/relu`);
});
registerExporter(Bottleneck, (g, m, x, p) => {
  let h = g.op('Relu', [exportModule(g, m.bn1, exportModule(g, m.conv1, x, `${p}.conv1`), `${p}.bn1`)], `${p}/relu1`);
  h = g.op('Relu', [exportModule(g, m.bn2, exportModule(g, m.conv2, h, `${p}.conv2`), `${p}.bn2`)], `${p}/relu2`);
  h = exportModule(g, m.bn3, exportModule(g, m.conv3, h, `${p}.conv3`), `${p}.bn3`);
  const shortcut = m.downsample ? exportModule(g, m.downsample, x, `${p}.downsample`) : x;
  return g.op('Relu', [g.op('Add', [h, shortcut], `${p}/residual`)], `${p}/relu`);
});
registerExporter(ResNet, (g, m, x) => {
  let h = exportModule(g, m.maxpool, g.op('Relu', [exportModule(g, m.bn1, exportModule(g, m.conv1, x, 'conv1'), 'bn1')], 'relu'), 'maxpool');
  for (const name of ['layer1', 'layer2', 'layer3', 'layer4'] as const) h = exportModule(g, m[name], h, name);
  const pooled = globalPoolFlat(g, h, 'head');
  return m.fc ? exportModule(g, m.fc, pooled, 'fc') : pooled;
});

/** pixels → patch tokens (B, h·w, C) and the grid. */
function patchTokens(g: OnnxGraph, proj: Conv2d, x: string, p: string): { tokens: string; grid: [number, number] } {
  const [ph, pw] = proj.kernelSize;
  const grid: [number, number] = [Math.floor(g.inputHeight / ph), Math.floor(g.inputWidth / pw)];
  const fmap = exportModule(g, proj, x, p);
  const flat = g.reshape(fmap, [0, proj.outChannels, -1], `${p}/flat`);
  return { tokens: g.op('Transpose', [flat], `${p}/tokens`, { perm: [0, 2, 1] }), grid };
}

/** The position embeddings for `grid`, resampled by graft when it is not the model's. */
function positions(g: OnnxGraph, pos: Tensor, prefix: number, from: [number, number], to: [number, number], method: PosEmbedResize, name: string, keepWhenSameCount: boolean): string {
  const same = keepWhenSameCount ? from[0] * from[1] === to[0] * to[1] && to[0] === to[1] : from[0] === to[0] && from[1] === to[1];
  if (same) return g.weight(pos, name);
  const resized = noGrad(() => resamplePosEmbed(pos, prefix, from, to, method));
  const out = g.floats(resized.toArray() as Float32Array, resized.shape, `${name}/resampled`);
  resized.dispose();
  return out;
}

/** Tokens (B, N, C) → pooled (B, C) or (B, 2C), as tokens.ts poolTokens. */
function poolTokens(g: OnnxGraph, tokens: string, pool: TokenPool, prefix: number, p: string): string {
  const cls = () => g.op('Squeeze', [g.op('Gather', [tokens, g.ints([0], `${p}/cls_index`)], `${p}/cls_gather`, { axis: 1 }), g.ints([1], `${p}/cls_axis`)], `${p}/cls`);
  const patchMean = () => {
    const patches = g.op('Slice', [tokens, g.ints([prefix], `${p}/start`), g.ints([2 ** 62], `${p}/end`), g.ints([1], `${p}/axis`)], `${p}/patches`);
    return g.op('ReduceMean', [patches], `${p}/mean`, { axes: [1], keepdims: 0 });
  };
  if (pool === 'cls') return cls();
  if (pool === 'mean') return patchMean();
  return g.op('Concat', [cls(), patchMean()], `${p}/cls_mean`, { axis: 1 });
}

registerExporter(Block, (g, m, x, p) => {
  const branch = (ls: typeof m.ls1, y: string, name: string) => (ls ? exportModule(g, ls, y, `${p}.${name}`) : y);
  const h = g.op('Add', [x, branch(m.ls1, exportModule(g, m.attn, exportModule(g, m.norm1, x, `${p}.norm1`), `${p}.attn`), 'ls1')], `${p}/residual1`);
  return g.op('Add', [h, branch(m.ls2, exportModule(g, m.mlp, exportModule(g, m.norm2, h, `${p}.norm2`), `${p}.mlp`), 'ls2')], `${p}/residual2`);
});
registerExporter(VisionTransformer, (g, m, x) => {
  const { tokens, grid } = patchTokens(g, m.patch_embed.proj, x, 'patch_embed.proj');
  const pos = positions(g, m.pos_embed, m.numPrefixTokens, m.grid, grid, 'bicubic-antialias', 'pos_embed', true);
  let h = g.op('Add', [g.op('Concat', [g.expandBatch(m.cls_token, tokens, 'cls_token'), tokens], 'tokens', { axis: 1 }), pos], 'embedded');
  for (const [name, block] of m.blocks.children()) h = exportModule(g, block, h, `blocks.${name}`);
  if (m.norm) h = exportModule(g, m.norm, h, 'norm');
  let pooled = poolTokens(g, h, m.config.globalPool === 'avg' ? 'mean' : 'cls', m.numPrefixTokens, 'pool');
  if (m.fc_norm) pooled = exportModule(g, m.fc_norm, pooled, 'fc_norm');
  return m.head ? exportModule(g, m.head, pooled, 'head') : pooled;
});

registerExporter(Dinov2Layer, (g, m, x, p) => {
  const a = m.attention.attention;
  const normed = exportModule(g, m.norm1, x, `${p}.norm1`);
  const proj = (name: 'query' | 'key' | 'value') => exportModule(g, a[name], normed, `${p}.attention.attention.${name}`);
  const attn = attention(g, proj('query'), proj('key'), proj('value'), a.numHeads, a.query.outFeatures, `${p}.attention/sdpa`);
  const attnOut = exportModule(g, m.attention.output.dense, attn, `${p}.attention.output.dense`);
  const h = g.op('Add', [exportModule(g, m.layer_scale1, attnOut, `${p}.layer_scale1`), x], `${p}/residual1`);
  const mlp = exportModule(g, m.mlp, exportModule(g, m.norm2, h, `${p}.norm2`), `${p}.mlp`);
  return g.op('Add', [exportModule(g, m.layer_scale2, mlp, `${p}.layer_scale2`), h], `${p}/residual2`);
});
registerExporter(Dinov2, (g, m, x) => {
  const e = m.embeddings;
  const { tokens, grid } = patchTokens(g, e.patch_embeddings.projection, x, 'embeddings.patch_embeddings.projection');
  const pos = positions(g, e.position_embeddings, 1, m.grid, grid, m.posEmbedResize, 'embeddings.position_embeddings', false);
  let h = g.op('Add', [g.op('Concat', [g.expandBatch(e.cls_token, tokens, 'embeddings.cls_token'), tokens], 'embeddings/tokens', { axis: 1 }), pos], 'embeddings/embedded');
  if (e.register_tokens) {
    // [CLS, registers…, patches…]: the registers go in after the position embeddings are added.
    const end = g.ints([2 ** 62], 'embeddings/end');
    const axis = g.ints([1], 'embeddings/axis');
    const clsTok = g.op('Slice', [h, g.ints([0], 'embeddings/cls_start'), g.ints([1], 'embeddings/cls_end'), axis], 'embeddings/cls');
    const patches = g.op('Slice', [h, g.ints([1], 'embeddings/patch_start'), end, axis], 'embeddings/patches');
    h = g.op('Concat', [clsTok, g.expandBatch(e.register_tokens, tokens, 'embeddings.register_tokens'), patches], 'embeddings/with_registers', { axis: 1 });
  }
  for (const [name, layer] of m.encoder.layer.children()) h = exportModule(g, layer, h, `encoder.layer.${name}`);
  h = exportModule(g, m.layernorm, h, 'layernorm');
  const pooled = poolTokens(g, h, m.config.pool, m.numPrefixTokens, 'pool');
  return m.classifier ? exportModule(g, m.classifier, pooled, 'classifier') : pooled;
});
