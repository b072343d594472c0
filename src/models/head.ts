// The one rule for where a model's classifier is, shared by the checkpoint loaders, buildModel
// and head replacement: the last Linear in module order. Every registered family ends in one —
// torchvision's `fc` / `classifier.N` / `head`, the ViTs' `head` / `classifier`, an imported
// Keras model's last Dense (KerasDense is a Linear) and a TF.js graph model's last MatMul.
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';

/**
 * The classifier Linear's dotted path: the last Linear of `model` in module order; null when the
 * model has no Linear, or was built without a head (`numClasses` 0), where the last Linear
 * belongs to the backbone (a Swin MLP, a ViT block's fc2).
 */
export function classifierPath(model: Module): string | null {
  if ((model as { numClasses?: unknown }).numClasses === 0) return null;
  const linears = model.namedModules().filter(([, m]) => m instanceof Linear);
  return linears.length ? linears[linears.length - 1]![0] : null;
}
