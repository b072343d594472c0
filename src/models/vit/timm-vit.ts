// timm's VisionTransformer (timm/models/vision_transformer.py) with its parameter names:
//   cls_token (1, 1, C), pos_embed (1, 1 + h·w, C), patch_embed.proj (Conv2d p×p, stride p),
//   blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma?, norm2, mlp.fc1, mlp.fc2, ls2.gamma?},
//   norm (or fc_norm after pooling), head.
// Block: x = x + ls1(attn(norm1 x)); x = x + ls2(mlp(norm2 x)). Position embeddings are resampled
// to the input's patch grid in the forward when it differs from the model's (timm's
// dynamic_img_size: resample_abs_pos_embed, bicubic with antialias). torchvision's
// VisionTransformer checkpoints load into the same model after renaming.
import { Module } from '../../nn/module.js';
import { Conv2d, LayerNorm, Linear, type ModuleDict } from '../../nn/layers.js';
import { FusedQkvAttention } from '../../nn/attention.js';
import { LayerScale } from '../../nn/layer-scale.js';
import { Mlp } from '../../nn/mlp.js';
import { randn } from '../../ops/creation.js';
import { add } from '../../ops/elementwise.js';
import { concat, expand } from '../../ops/layout.js';
import { dropout, dropPath } from '../../ops/nn.js';
import type { Tensor } from '../../tensor/tensor.js';
import { VisionModel, type FeatureMapSpec, type PreprocessConfig } from '../model.js';
import type { TimmVitConfig } from './configs.js';
import { resamplePosEmbed } from './pos-embed.js';
import { blockList, blocksOf, featureBlocks, patchTokens, poolTokens, tokensToMap } from './tokens.js';
import { runBlock, type CheckpointsBlocks } from '../checkpointing.js';
import type { CheckpointLayout, CheckpointScheme, LoadsCheckpoints } from './checkpoint.js';
import { torchvisionToTimmName } from './checkpoint-names.js';
import { IDENTITY_TAP, TokenGrid, type Tap, type TappedBlock } from '../../nn/residual-taps.js';

class PatchEmbed extends Module {
  proj: Conv2d;
  constructor(inChans: number, embedDim: number, patchSize: number) {
    super();
    this.proj = this.module('proj', new Conv2d(inChans, embedDim, patchSize, { stride: patchSize }));
  }
  /** x (B, C_in, H, W) → (B, h·w, C). */
  forward(x: Tensor): Tensor {
    return patchTokens(this.proj, x).tokens;
  }
}

export class Block extends Module implements TappedBlock {
  readonly tapPoints = ['attn', 'mlp'] as const;
  readonly tapChannels: number;
  norm1: LayerNorm;
  attn: FusedQkvAttention;
  ls1: LayerScale | null;
  norm2: LayerNorm;
  mlp: Mlp;
  ls2: LayerScale | null;
  /** `dropPathRate`: stochastic depth on both residual branches (training only); `tokens`: the model's patch grid, for the taps' layout. */
  constructor(c: TimmVitConfig, readonly dropPathRate = 0, readonly tokens = new TokenGrid(1, [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)])) {
    super();
    this.tapChannels = c.embedDim;
    this.norm1 = this.module('norm1', new LayerNorm(c.embedDim, c.normEps));
    this.attn = this.module('attn', new FusedQkvAttention(c.embedDim, c.numHeads, { qkvBias: c.qkvBias }));
    this.ls1 = this.module('ls1', c.initValues !== null ? new LayerScale(c.embedDim, c.initValues, 'gamma') : null);
    this.norm2 = this.module('norm2', new LayerNorm(c.embedDim, c.normEps));
    this.mlp = this.module('mlp', new Mlp(c.embedDim, Math.trunc(c.embedDim * c.mlpRatio)));
    this.ls2 = this.module('ls2', c.initValues !== null ? new LayerScale(c.embedDim, c.initValues, 'gamma') : null);
  }
  /** x (B, N, C) → (B, N, C). */
  forward(x: Tensor): Tensor {
    return this.forwardTapped(IDENTITY_TAP, x);
  }
  /** The forward with `tap` after the attention residual (point 0) and after the MLP residual (point 1). */
  forwardTapped(tap: Tap, x: Tensor): Tensor {
    const branch = (ls: LayerScale | null, y: Tensor) => dropPath(ls ? ls.forward(y) : y, this.dropPathRate, this.training);
    const h = tap(0, add(x, branch(this.ls1, this.attn.forward(this.norm1.forward(x)))), this.tokens.layout());
    return tap(1, add(h, branch(this.ls2, this.mlp.forward(this.norm2.forward(h)))), this.tokens.layout());
  }
}

const TIMM_SCHEME: CheckpointScheme = {
  name: 'timm', signature: /^(?:pos_embed|blocks\.\d+\.attn\.qkv\.weight)$/, example: 'blocks.0.attn.qkv.weight',
  rename: (k) => k, posEmbedResize: 'bicubic-antialias',
};
const TORCHVISION_SCHEME: CheckpointScheme = {
  name: 'torchvision', signature: /^(?:class_token|encoder\.pos_embedding)$/, example: 'encoder.layers.encoder_layer_0.self_attention.in_proj_weight',
  rename: torchvisionToTimmName, posEmbedResize: 'bicubic-align-corners',
};

export class VisionTransformer extends VisionModel implements LoadsCheckpoints, CheckpointsBlocks {
  /** Recompute each block's activations in the backward pass instead of keeping them. */
  gradientCheckpointing = false;
  readonly family = 'vit';
  readonly numFeatures: number;
  readonly numPrefixTokens = 1;
  readonly grid: [number, number];
  readonly useFcNorm: boolean;
  /** The patch grid of the current input, read by the blocks' taps. */
  readonly tokenGrid: TokenGrid;
  cls_token: Tensor;
  pos_embed: Tensor;
  patch_embed: PatchEmbed;
  blocks: ModuleDict<Block>;
  norm: LayerNorm | null;
  fc_norm: LayerNorm | null;
  head: Linear | null;

  /** `dropPathRate` rises linearly over the blocks from 0 (timm's dpr); `dropRate` is dropout before the head. */
  constructor(readonly config: TimmVitConfig, readonly numClasses: number, readonly preprocess: PreprocessConfig, readonly dropRate = 0, dropPathRate = 0) {
    super();
    const c = config;
    this.numFeatures = c.embedDim;
    this.grid = [Math.floor(c.imageSize[0] / c.patchSize), Math.floor(c.imageSize[1] / c.patchSize)];
    this.useFcNorm = c.fcNorm ?? c.globalPool === 'avg';
    this.cls_token = this.param('cls_token', randn([1, 1, c.embedDim], { std: 1e-6 }));
    this.pos_embed = this.param('pos_embed', randn([1, 1 + this.grid[0] * this.grid[1], c.embedDim], { std: 0.02 }));
    this.patch_embed = this.module('patch_embed', new PatchEmbed(c.inChans, c.embedDim, c.patchSize));
    this.tokenGrid = new TokenGrid(this.numPrefixTokens, this.grid);
    this.blocks = this.module('blocks', blockList(Array.from({ length: c.depth }, (_, i) => new Block(c, c.depth > 1 ? (dropPathRate * i) / (c.depth - 1) : 0, this.tokenGrid))));
    this.norm = this.module('norm', this.useFcNorm ? null : new LayerNorm(c.embedDim, c.normEps));
    this.fc_norm = this.module('fc_norm', this.useFcNorm ? new LayerNorm(c.embedDim, c.normEps) : null);
    this.head = this.module('head', numClasses > 0 ? new Linear(c.embedDim, numClasses) : null);
  }

  /** x (B, 3, H, W) → tokens (B, 1 + h·w, C) after the final norm (before it when the model pools with fc_norm). */
  forwardFeatures(x: Tensor): Tensor {
    return this.runBlocks(x, []).out;
  }

  override featureMapSpec(levels: 1 | 4): FeatureMapSpec {
    return { channels: Array(levels).fill(this.config.embedDim), strides: Array(levels).fill(this.config.patchSize) };
  }

  /** Patch tokens after the feature blocks, through the final norm where the model has one (timm's get_intermediate_layers). */
  override forwardFeatureMaps(x: Tensor, levels: 1 | 4): Tensor[] {
    const { kept, grid } = this.runBlocks(x, featureBlocks(this.config.depth, levels));
    return kept.map((t) => tokensToMap(this.norm ? this.norm.forward(t) : t, this.numPrefixTokens, grid));
  }

  private runBlocks(x: Tensor, keep: readonly number[]): { out: Tensor; kept: Tensor[]; grid: [number, number] } {
    const { tokens, grid } = patchTokens(this.patch_embed.proj, x);
    this.tokenGrid.grid = grid;
    const b = tokens.shape[0]!;
    // resample_abs_pos_embed keeps pos_embed as it is when the token count matches and the new grid is square.
    const unchanged = grid[0] * grid[1] === this.grid[0] * this.grid[1] && grid[0] === grid[1];
    const pos = unchanged ? this.pos_embed : resamplePosEmbed(this.pos_embed, this.numPrefixTokens, this.grid, grid, 'bicubic-antialias');
    let h = add(concat([expand(this.cls_token, [b, 1, this.numFeatures]), tokens], 1), pos);
    const kept: Tensor[] = [];
    blocksOf(this.blocks).forEach((block, i) => {
      h = runBlock(this, block, h, (t) => block.forward(t));
      for (const k of keep) if (k === i) kept.push(h);
    });
    return { out: this.norm ? this.norm.forward(h) : h, kept, grid };
  }

  /** tokens → CLS token or mean of patch tokens (global_pool), fc_norm, head. */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    let pooled = poolTokens(features, this.config.globalPool === 'avg' ? 'mean' : 'cls', this.numPrefixTokens);
    if (this.fc_norm) pooled = this.fc_norm.forward(pooled);
    return preLogits || !this.head ? pooled : this.head.forward(dropout(pooled, this.dropRate, this.training));
  }

  checkpointLayout(): CheckpointLayout {
    return {
      family: 'vit', prefixes: ['module.', 'model.'], schemes: [TIMM_SCHEME, TORCHVISION_SCHEME], headPrefix: 'head.',
      posEmbed: { key: 'pos_embed', prefixTokens: this.numPrefixTokens, grid: this.grid },
    };
  }
}
