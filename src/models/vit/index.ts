// The ViT family in graft; importing this registers its names:
//   timm      vit_{small,base,large}_patch16_224, deit_{small,base}_patch16_224
//   torchvision  vit_b_16, vit_b_32, vit_l_16, vit_l_32 (timm-named; torchvision checkpoints are renamed on load)
//   transformers dinov2_{small,base,large,giant}[_reg], dinov3_{vits16,vits16plus,vitb16,vitl16,vith16plus}
import { registerModel } from '../registry.js';
import type { CreateModelOptions } from '../model.js';
import { withInputSize } from '../../data/preprocess.js';
import { applyOverrides, DINOV2_MODELS, DINOV3_MODELS, TIMM_VIT_MODELS, TORCHVISION_VIT_MODELS, type VitEntry } from './configs.js';
import { VisionTransformer } from './timm-vit.js';
import { Dinov2 } from './dinov2.js';
import { Dinov3 } from './dinov3.js';

export { VisionTransformer, Block } from './timm-vit.js';
export { Dinov2, Dinov2Layer } from './dinov2.js';
export { Dinov3, Dinov3Layer } from './dinov3.js';
export * from './configs.js';
export { loadVitCheckpoint, loadVitSafetensors, resolveCheckpointNames, type CheckpointNames, type CheckpointLayout, type CheckpointScheme, type CheckpointReport, type LoadsCheckpoints } from './checkpoint.js';
export { torchvisionToTimmName, dinov3CurrentName } from './checkpoint-names.js';
export { resamplePosEmbed, resizeTokenGrid, antialiasBicubicMatrix, type PosEmbedResize } from './pos-embed.js';

/** The named config with overrides and imageSize applied, and the preprocessing (the entry's or createModel's) sized to match. */
function resolve<C extends { imageSize: [number, number] }>(name: string, entry: VitEntry<C>, opts: CreateModelOptions) {
  const config = applyOverrides(name, entry.config, opts.overrides, opts.imageSize);
  const sized = opts.imageSize !== undefined || opts.overrides?.['imageSize'] !== undefined;
  const base = opts.preprocess ?? entry.preprocess;
  const preprocess = sized ? withInputSize(base, config.imageSize) : base;
  return { config, preprocess, numClasses: opts.numClasses ?? 1000, dropRate: opts.dropRate ?? 0, dropPathRate: opts.dropPathRate ?? 0 };
}

for (const [name, entry] of Object.entries({ ...TIMM_VIT_MODELS, ...TORCHVISION_VIT_MODELS })) {
  registerModel(name, {
    family: 'vit',
    create: (opts) => {
      const r = resolve(name, entry, opts);
      return new VisionTransformer(r.config, r.numClasses, r.preprocess, r.dropRate, r.dropPathRate);
    },
  });
}

for (const [name, entry] of Object.entries(DINOV2_MODELS)) {
  registerModel(name, {
    family: entry.config.numRegisterTokens > 0 ? 'dinov2_with_registers' : 'dinov2',
    create: (opts) => {
      const r = resolve(name, entry, opts);
      return new Dinov2(r.config, r.numClasses, r.preprocess, r.dropRate, r.dropPathRate);
    },
  });
}

for (const [name, entry] of Object.entries(DINOV3_MODELS)) {
  registerModel(name, {
    family: 'dinov3',
    create: (opts) => {
      const r = resolve(name, entry, opts);
      return new Dinov3(r.config, r.numClasses, r.preprocess, r.dropRate, r.dropPathRate);
    },
  });
}
