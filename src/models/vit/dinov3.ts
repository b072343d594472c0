// transformers' DINOv3ViTModel (models/dinov3_vit/modeling_dinov3_vit.py, commit 015e6876) with
// its parameter names:
//   embeddings.{cls_token (1,1,C), mask_token (1,1,C), register_tokens (1,R,C), patch_embeddings (Conv2d)}
//   layer.N.{norm1, attention.{q_proj,k_proj,v_proj,o_proj}, layer_scale1.lambda1, norm2,
//            mlp.{up_proj,down_proj} | mlp.{gate_proj,up_proj,down_proj}, layer_scale2.lambda1}
//   norm, and `classifier` on cat(CLS, mean of patch tokens) (graft's head; transformers has none).
// No learned position embeddings: 2-D RoPE on the patch tokens' q and k (rope.ts), computed for
// any input grid. Checkpoints with the first transformers names load through a rename table.
import { Module } from '../../nn/module.js';
import { Conv2d, LayerNorm, Linear, type ModuleDict } from '../../nn/layers.js';
import { QkvProjAttention } from '../../nn/attention.js';
import { LayerScale } from '../../nn/layer-scale.js';
import { GatedMlp, UpDownMlp } from '../../nn/mlp.js';
import { augmentCoordinates, patchCenterCoordinates, ropeInverseFrequencies, ropeTables } from '../../nn/rope.js';
import { randn, zeros } from '../../ops/creation.js';
import { add } from '../../ops/elementwise.js';
import { concat, expand } from '../../ops/layout.js';
import { dropout, dropPath } from '../../ops/nn.js';
import type { Tensor } from '../../tensor/tensor.js';
import { VisionModel, type FeatureMapSpec, type PreprocessConfig } from '../model.js';
import type { Dinov3Config } from './configs.js';
import { blockList, blocksOf, featureBlocks, patchTokens, poolTokens, tokensToMap } from './tokens.js';
import { runBlock, type CheckpointsBlocks } from '../checkpointing.js';
import type { CheckpointLayout, CheckpointScheme, LoadsCheckpoints } from './checkpoint.js';
import { IDENTITY_TAP, TokenGrid, type Tap, type TappedBlock } from '../../nn/residual-taps.js';
import { DINOV3_EARLIER_SIGNATURE, dinov3CurrentName, isDinov3DerivedBuffer } from './checkpoint-names.js';

class Dinov3Embeddings extends Module {
  cls_token: Tensor;
  mask_token: Tensor;
  register_tokens: Tensor;
  patch_embeddings: Conv2d;
  constructor(c: Dinov3Config) {
    super();
    this.cls_token = this.param('cls_token', randn([1, 1, c.hiddenSize], { std: 0.02 }));
    this.mask_token = this.param('mask_token', zeros([1, 1, c.hiddenSize]));
    this.register_tokens = this.param('register_tokens', randn([1, c.numRegisterTokens, c.hiddenSize], { std: 0.02 }));
    this.patch_embeddings = this.module('patch_embeddings', new Conv2d(c.numChannels, c.hiddenSize, c.patchSize, { stride: c.patchSize }));
  }
  /** pixels (B, 3, H, W) → [CLS, registers…, patches…] (B, 1 + R + h·w, C). */
  forward(x: Tensor): Tensor {
    const { tokens } = patchTokens(this.patch_embeddings, x);
    const [b, , c] = tokens.shape as [number, number, number];
    return concat([expand(this.cls_token, [b, 1, c]), expand(this.register_tokens, [b, this.register_tokens.shape[1]!, c]), tokens], 1);
  }
}

export class Dinov3Layer extends Module implements TappedBlock {
  readonly tapPoints = ['attn', 'mlp'] as const;
  readonly tapChannels: number;
  norm1: LayerNorm;
  attention: QkvProjAttention;
  layer_scale1: LayerScale;
  norm2: LayerNorm;
  mlp: UpDownMlp | GatedMlp;
  layer_scale2: LayerScale;
  /** `tokens`: the model's patch grid, for the taps' layout. */
  constructor(c: Dinov3Config, readonly dropPathRate = 0, readonly tokens = new TokenGrid(1 + c.numRegisterTokens, [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)])) {
    super();
    this.tapChannels = c.hiddenSize;
    this.norm1 = this.module('norm1', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.attention = this.module('attention', new QkvProjAttention(c.hiddenSize, c.numAttentionHeads, { query: c.queryBias, key: c.keyBias, value: c.valueBias, proj: c.projBias }));
    this.layer_scale1 = this.module('layer_scale1', new LayerScale(c.hiddenSize, c.layerscaleValue, 'lambda1'));
    this.norm2 = this.module('norm2', new LayerNorm(c.hiddenSize, c.layerNormEps));
    const mlp = { bias: c.mlpBias, activation: c.hiddenAct };
    this.mlp = this.module('mlp', c.useGatedMlp ? new GatedMlp(c.hiddenSize, c.intermediateSize, mlp) : new UpDownMlp(c.hiddenSize, c.intermediateSize, mlp));
    this.layer_scale2 = this.module('layer_scale2', new LayerScale(c.hiddenSize, c.layerscaleValue, 'lambda1'));
  }
  /** x (B, N, C) with RoPE tables (h·w, D) for the patch tokens → (B, N, C). */
  forward(x: Tensor, ropeCos?: Tensor, ropeSin?: Tensor): Tensor {
    return this.forwardTapped(IDENTITY_TAP, x, ...(ropeCos && ropeSin ? [ropeCos, ropeSin] : []));
  }
  /** The forward with `tap` after the attention residual (point 0) and after the MLP residual (point 1). */
  forwardTapped(tap: Tap, x: Tensor, ropeCos?: Tensor, ropeSin?: Tensor): Tensor {
    const drop = (y: Tensor) => dropPath(y, this.dropPathRate, this.training);
    const h = tap(0, add(drop(this.layer_scale1.forward(this.attention.forward(this.norm1.forward(x), ropeCos, ropeSin))), x), this.tokens.layout());
    return tap(1, add(drop(this.layer_scale2.forward(this.mlp.forward(this.norm2.forward(h)))), h), this.tokens.layout());
  }
}

// The earlier naming is tried first: its signature keys never occur in current checkpoints,
// and its rename leaves current names as they are (so half-renamed development checkpoints load).
const DINOV3_SCHEMES: CheckpointScheme[] = [
  {
    name: 'transformers (earlier DINOv3 names)', signature: DINOV3_EARLIER_SIGNATURE, example: 'layer.0.attention.query.weight',
    rename: (k) => (isDinov3DerivedBuffer(k) ? null : dinov3CurrentName(k)), posEmbedResize: 'bicubic',
  },
  {
    name: 'transformers', signature: /^(?:embeddings\.patch_embeddings\.weight|layer\.\d+\.attention\.q_proj\.weight)$/, example: 'layer.0.attention.q_proj.weight',
    rename: (k) => (isDinov3DerivedBuffer(k) ? null : k), posEmbedResize: 'bicubic',
  },
];

export class Dinov3 extends VisionModel implements LoadsCheckpoints, CheckpointsBlocks {
  /** Recompute each layer's activations in the backward pass instead of keeping them. */
  gradientCheckpointing = false;
  readonly family = 'dinov3';
  readonly numFeatures: number;
  readonly numPrefixTokens: number;
  readonly invFreq: Float32Array;
  /** The patch grid of the current input, read by the layers' taps. */
  readonly tokenGrid: TokenGrid;
  embeddings: Dinov3Embeddings;
  layer: ModuleDict<Dinov3Layer>;
  norm: LayerNorm;
  classifier: Linear | null;

  /** `dropPathRate` is the same for every layer, as in transformers; `dropRate` is dropout before the classifier. */
  constructor(readonly config: Dinov3Config, readonly numClasses: number, readonly preprocess: PreprocessConfig, readonly dropRate = 0, dropPathRate = 0) {
    super();
    const c = config;
    if (c.hiddenSize % c.numAttentionHeads !== 0) throw new Error(`dinov3: hiddenSize ${c.hiddenSize} is not divisible by numAttentionHeads ${c.numAttentionHeads}`);
    this.numFeatures = c.pool === 'cls+mean' ? 2 * c.hiddenSize : c.hiddenSize;
    this.numPrefixTokens = 1 + c.numRegisterTokens;
    this.invFreq = ropeInverseFrequencies(c.hiddenSize / c.numAttentionHeads, c.ropeTheta);
    this.embeddings = this.module('embeddings', new Dinov3Embeddings(c));
    this.tokenGrid = new TokenGrid(this.numPrefixTokens, [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)]);
    this.layer = this.module('layer', blockList(Array.from({ length: c.numHiddenLayers }, () => new Dinov3Layer(c, dropPathRate, this.tokenGrid))));
    this.norm = this.module('norm', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.classifier = this.module('classifier', numClasses > 0 ? new Linear(this.numFeatures, numClasses) : null);
  }

  /** pixels (B, 3, H, W) → last_hidden_state (B, 1 + R + h·w, C) after norm. */
  forwardFeatures(x: Tensor): Tensor {
    return this.runLayers(x, []).out;
  }

  override featureMapSpec(levels: 1 | 4): FeatureMapSpec {
    return { channels: Array(levels).fill(this.config.hiddenSize), strides: Array(levels).fill(this.config.patchSize) };
  }

  /** Patch tokens after the feature layers, through the final norm. */
  override forwardFeatureMaps(x: Tensor, levels: 1 | 4): Tensor[] {
    const { kept, grid } = this.runLayers(x, featureBlocks(this.config.numHiddenLayers, levels));
    return kept.map((t) => tokensToMap(this.norm.forward(t), this.numPrefixTokens, grid));
  }

  private runLayers(x: Tensor, keep: readonly number[]): { out: Tensor; kept: Tensor[]; grid: [number, number] } {
    const c = this.config;
    const h = Math.floor(x.shape[2]! / c.patchSize);
    const w = Math.floor(x.shape[3]! / c.patchSize);
    this.tokenGrid.grid = [h, w];
    let coords = patchCenterCoordinates(h, w);
    if (this.training) coords = augmentCoordinates(coords, { shift: c.posEmbedShift, jitter: c.posEmbedJitter, rescale: c.posEmbedRescale });
    const { cos, sin } = ropeTables(coords, this.invFreq, x);
    let hidden = this.embeddings.forward(x);
    const kept: Tensor[] = [];
    blocksOf(this.layer).forEach((layer, i) => {
      hidden = runBlock(this, layer, hidden, (t) => layer.forward(t, cos, sin));
      for (const k of keep) if (k === i) kept.push(hidden);
    });
    return { out: this.norm.forward(hidden), kept, grid: [h, w] };
  }

  /** tokens → pooled (cat(CLS, mean of patch tokens) by default) → classifier. */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    const pooled = poolTokens(features, this.config.pool, this.numPrefixTokens);
    return preLogits || !this.classifier ? pooled : this.classifier.forward(dropout(pooled, this.dropRate, this.training));
  }

  checkpointLayout(): CheckpointLayout {
    return { family: 'dinov3', prefixes: ['dinov3_vit.', 'DINOv3ViT.', 'model.', 'module.'], schemes: DINOV3_SCHEMES, headPrefix: 'classifier.', posEmbed: null };
  }
}
