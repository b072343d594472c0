// transformers' Dinov2Model and Dinov2WithRegistersModel (models/dinov2/modeling_dinov2.py and
// modeling_dinov2_with_registers.py, commit 015e6876) with their parameter names:
//   embeddings.{cls_token (1,1,C), mask_token (1,C), register_tokens (1,R,C)?, position_embeddings (1,1+h·w,C),
//               patch_embeddings.projection}
//   encoder.layer.N.{norm1, attention.attention.{query,key,value}, attention.output.dense,
//                    layer_scale1.lambda1, norm2, mlp.{fc1,fc2} | mlp.{weights_in,weights_out}, layer_scale2.lambda1}
//   layernorm, and `classifier` on cat(CLS, mean of patch tokens) as in Dinov2ForImageClassification.
// Tokens are [CLS, registers…, patches…]; the registers are inserted after the position
// embeddings are added (they have none). Position embeddings are resampled to the input grid:
// bicubic with size= (Dinov2), the same with antialias=True (Dinov2WithRegisters).
import { Module } from '../../nn/module.js';
import { Conv2d, LayerNorm, Linear, type ModuleDict } from '../../nn/layers.js';
import { multiHeadAttention } from '../../nn/attention.js';
import { LayerScale } from '../../nn/layer-scale.js';
import { Mlp, SwiGLU, swigluHiddenFeatures } from '../../nn/mlp.js';
import { randn, zeros } from '../../ops/creation.js';
import { add } from '../../ops/elementwise.js';
import { concat, expand, slice } from '../../ops/layout.js';
import { dropout, dropPath } from '../../ops/nn.js';
import type { Tensor } from '../../tensor/tensor.js';
import { VisionModel, type FeatureMapSpec, type PreprocessConfig } from '../model.js';
import type { Dinov2Config } from './configs.js';
import { resamplePosEmbed, type PosEmbedResize } from './pos-embed.js';
import { blockList, blocksOf, featureBlocks, patchTokens, poolTokens, tokensToMap } from './tokens.js';
import { runBlock, type CheckpointsBlocks } from '../checkpointing.js';
import type { CheckpointLayout, LoadsCheckpoints } from './checkpoint.js';
import { IDENTITY_TAP, TokenGrid, type Tap, type TappedBlock } from '../../nn/residual-taps.js';

class Dinov2PatchEmbeddings extends Module {
  projection: Conv2d;
  constructor(c: Dinov2Config) {
    super();
    this.projection = this.module('projection', new Conv2d(c.numChannels, c.hiddenSize, c.patchSize, { stride: c.patchSize }));
  }
  forward(x: Tensor): Tensor {
    return patchTokens(this.projection, x).tokens;
  }
}

class Dinov2Embeddings extends Module {
  cls_token: Tensor;
  mask_token: Tensor | null;
  register_tokens: Tensor | null;
  patch_embeddings: Dinov2PatchEmbeddings;
  position_embeddings: Tensor;
  constructor(c: Dinov2Config, readonly grid: [number, number], readonly resize: PosEmbedResize) {
    super();
    this.cls_token = this.param('cls_token', randn([1, 1, c.hiddenSize], { std: 0.02 }));
    this.mask_token = this.param('mask_token', c.useMaskToken || c.numRegisterTokens > 0 ? zeros([1, c.hiddenSize]) : null);
    this.register_tokens = this.param('register_tokens', c.numRegisterTokens > 0 ? zeros([1, c.numRegisterTokens, c.hiddenSize]) : null);
    this.patch_embeddings = this.module('patch_embeddings', new Dinov2PatchEmbeddings(c));
    this.position_embeddings = this.param('position_embeddings', randn([1, 1 + grid[0] * grid[1], c.hiddenSize], { std: 0.02 }));
  }
  /** pixels (B, 3, H, W) → [CLS + pos, registers…, patches + pos] (B, 1 + R + h·w, C). */
  forward(x: Tensor): Tensor {
    const { tokens, grid } = patchTokens(this.patch_embeddings.projection, x);
    const [b, , c] = tokens.shape as [number, number, number];
    const pos = resamplePosEmbed(this.position_embeddings, 1, this.grid, grid, this.resize);
    const h = add(concat([expand(this.cls_token, [b, 1, c]), tokens], 1), pos);
    if (!this.register_tokens) return h;
    const r = this.register_tokens.shape[1]!;
    return concat([slice(h, 1, 0, 1), expand(this.register_tokens, [b, r, c]), slice(h, 1, 1)], 1);
  }
}

class Dinov2SelfAttention extends Module {
  query: Linear;
  key: Linear;
  value: Linear;
  readonly numHeads: number;
  constructor(c: Dinov2Config) {
    super();
    const lin = () => new Linear(c.hiddenSize, c.hiddenSize, { bias: c.qkvBias });
    this.query = this.module('query', lin());
    this.key = this.module('key', lin());
    this.value = this.module('value', lin());
    this.numHeads = c.numAttentionHeads;
  }
  /** x (B, N, C) → per-head attention, heads merged (B, N, C). */
  forward(x: Tensor): Tensor {
    return multiHeadAttention(this.query.forward(x), this.key.forward(x), this.value.forward(x), this.numHeads);
  }
}

class Dinov2SelfOutput extends Module {
  dense: Linear;
  constructor(c: Dinov2Config) {
    super();
    this.dense = this.module('dense', new Linear(c.hiddenSize, c.hiddenSize));
  }
  forward(x: Tensor): Tensor {
    return this.dense.forward(x);
  }
}

class Dinov2Attention extends Module {
  attention: Dinov2SelfAttention;
  output: Dinov2SelfOutput;
  constructor(c: Dinov2Config) {
    super();
    if (c.hiddenSize % c.numAttentionHeads !== 0) throw new Error(`dinov2: hiddenSize ${c.hiddenSize} is not divisible by numAttentionHeads ${c.numAttentionHeads}`);
    this.attention = this.module('attention', new Dinov2SelfAttention(c));
    this.output = this.module('output', new Dinov2SelfOutput(c));
  }
  forward(x: Tensor): Tensor {
    return this.output.forward(this.attention.forward(x));
  }
}

export class Dinov2Layer extends Module implements TappedBlock {
  readonly tapPoints = ['attn', 'mlp'] as const;
  readonly tapChannels: number;
  norm1: LayerNorm;
  attention: Dinov2Attention;
  layer_scale1: LayerScale;
  norm2: LayerNorm;
  mlp: Mlp | SwiGLU;
  layer_scale2: LayerScale;
  /** `tokens`: the model's patch grid, for the taps' layout. */
  constructor(c: Dinov2Config, readonly dropPathRate = 0, readonly tokens = new TokenGrid(1 + c.numRegisterTokens, [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)])) {
    super();
    this.tapChannels = c.hiddenSize;
    this.norm1 = this.module('norm1', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.attention = this.module('attention', new Dinov2Attention(c));
    this.layer_scale1 = this.module('layer_scale1', new LayerScale(c.hiddenSize, c.layerscaleValue, 'lambda1'));
    this.norm2 = this.module('norm2', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.mlp = this.module('mlp', c.useSwigluFfn
      ? new SwiGLU(c.hiddenSize, swigluHiddenFeatures(c.hiddenSize, c.mlpRatio))
      : new Mlp(c.hiddenSize, Math.trunc(c.hiddenSize * c.mlpRatio), { activation: c.hiddenAct }));
    this.layer_scale2 = this.module('layer_scale2', new LayerScale(c.hiddenSize, c.layerscaleValue, 'lambda1'));
  }
  /** h = h + ls1(attn(norm1 h)); h = h + ls2(mlp(norm2 h)). */
  forward(x: Tensor): Tensor {
    return this.forwardTapped(IDENTITY_TAP, x);
  }
  /** The forward with `tap` after the attention residual (point 0) and after the MLP residual (point 1). */
  forwardTapped(tap: Tap, x: Tensor): Tensor {
    const drop = (y: Tensor) => dropPath(y, this.dropPathRate, this.training);
    const h = tap(0, add(drop(this.layer_scale1.forward(this.attention.forward(this.norm1.forward(x)))), x), this.tokens.layout());
    return tap(1, add(drop(this.layer_scale2.forward(this.mlp.forward(this.norm2.forward(h)))), h), this.tokens.layout());
  }
}

class Dinov2Encoder extends Module implements CheckpointsBlocks {
  /** Recompute each layer's activations in the backward pass instead of keeping them. */
  gradientCheckpointing = false;
  layer: ModuleDict<Dinov2Layer>;
  constructor(c: Dinov2Config, dropPathRate: number, tokens: TokenGrid) {
    super();
    this.layer = this.module('layer', blockList(Array.from({ length: c.numHiddenLayers }, () => new Dinov2Layer(c, dropPathRate, tokens))));
  }
  forward(x: Tensor): Tensor {
    return this.forwardKeeping(x, []).out;
  }
  /** The last hidden state and the outputs of the layers `keep` names. */
  forwardKeeping(x: Tensor, keep: readonly number[]): { out: Tensor; kept: Tensor[] } {
    let h = x;
    const kept: Tensor[] = [];
    blocksOf(this.layer).forEach((layer, i) => {
      h = runBlock(this, layer, h, (t) => layer.forward(t));
      for (const k of keep) if (k === i) kept.push(h);
    });
    return { out: h, kept };
  }
}

/** transformers' classification prefixes: Dinov2ForImageClassification, …WithRegisters…, and a generic `model.`. */
const DINOV2_PREFIXES = ['dinov2.', 'dinov2_with_registers.', 'model.', 'module.'];

export class Dinov2 extends VisionModel implements LoadsCheckpoints {
  readonly family: string;
  readonly numFeatures: number;
  readonly numPrefixTokens: number;
  readonly grid: [number, number];
  /** The patch grid of the current input, read by the layers' taps. */
  readonly tokenGrid: TokenGrid;
  embeddings: Dinov2Embeddings;
  encoder: Dinov2Encoder;
  layernorm: LayerNorm;
  classifier: Linear | null;

  /** `dropPathRate` is the same for every layer, as in transformers; `dropRate` is dropout before the classifier. */
  constructor(readonly config: Dinov2Config, readonly numClasses: number, readonly preprocess: PreprocessConfig, readonly dropRate = 0, dropPathRate = 0) {
    super();
    const c = config;
    this.family = c.numRegisterTokens > 0 ? 'dinov2_with_registers' : 'dinov2';
    this.numFeatures = c.pool === 'cls+mean' ? 2 * c.hiddenSize : c.hiddenSize;
    this.numPrefixTokens = 1 + c.numRegisterTokens;
    this.grid = [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)];
    this.embeddings = this.module('embeddings', new Dinov2Embeddings(c, this.grid, this.posEmbedResize));
    this.tokenGrid = new TokenGrid(this.numPrefixTokens, this.grid);
    this.encoder = this.module('encoder', new Dinov2Encoder(c, dropPathRate, this.tokenGrid));
    this.layernorm = this.module('layernorm', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.classifier = this.module('classifier', numClasses > 0 ? new Linear(this.numFeatures, numClasses) : null);
  }

  /** Dinov2 interpolates with size= and no antialias; Dinov2WithRegisters with antialias=True. */
  get posEmbedResize(): PosEmbedResize {
    return this.config.numRegisterTokens > 0 ? 'bicubic-antialias' : 'bicubic';
  }

  /** pixels (B, 3, H, W) → last_hidden_state (B, 1 + R + h·w, C) after layernorm. */
  forwardFeatures(x: Tensor): Tensor {
    const p = this.config.patchSize;
    this.tokenGrid.grid = [Math.floor(x.shape[2]! / p), Math.floor(x.shape[3]! / p)];
    return this.layernorm.forward(this.encoder.forward(this.embeddings.forward(x)));
  }

  override featureMapSpec(levels: 1 | 4): FeatureMapSpec {
    return { channels: Array(levels).fill(this.config.hiddenSize), strides: Array(levels).fill(this.config.patchSize) };
  }

  /** Patch tokens after the feature layers, through layernorm (DINOv2's get_intermediate_layers with norm). */
  override forwardFeatureMaps(x: Tensor, levels: 1 | 4): Tensor[] {
    const p = this.config.patchSize;
    const grid: [number, number] = [Math.floor(x.shape[2]! / p), Math.floor(x.shape[3]! / p)];
    const { kept } = this.encoder.forwardKeeping(this.embeddings.forward(x), featureBlocks(this.config.numHiddenLayers, levels));
    return kept.map((t) => tokensToMap(this.layernorm.forward(t), this.numPrefixTokens, grid));
  }

  /** tokens → pooled (cat(CLS, mean of patch tokens) by default) → classifier. */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    const pooled = poolTokens(features, this.config.pool, this.numPrefixTokens);
    return preLogits || !this.classifier ? pooled : this.classifier.forward(dropout(pooled, this.dropRate, this.training));
  }

  /** Dinov2ForImageClassification (…WithRegisters…) holds the backbone as `dinov2` (`dinov2_with_registers`) beside `classifier`. */
  override peftModulePath(path: string): string {
    return path === 'classifier' || path.startsWith('classifier.') ? path : `${this.family}.${path}`;
  }

  checkpointLayout(): CheckpointLayout {
    return {
      family: this.family,
      prefixes: DINOV2_PREFIXES,
      schemes: [{
        name: 'transformers', signature: /^embeddings\.position_embeddings$/, example: 'embeddings.position_embeddings',
        rename: (k) => k, posEmbedResize: this.posEmbedResize,
      }],
      headPrefix: 'classifier.',
      posEmbed: { key: 'embeddings.position_embeddings', prefixTokens: 1, grid: this.grid },
    };
  }
}
