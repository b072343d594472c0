// Buffers graft derives itself (layers declare them: DerivesBuffers in nn/layers.ts) are optional
// in a checkpoint: torchvision's own files leave num_batches_tracked out (PyTorch fills it in on
// load), and Swin's relative_position_index follows from the window size. When a checkpoint has
// a recomputed buffer it must hold graft's values, since the checkpoint's other weights (Swin's
// bias table) were trained with it. Every other missing key stays the strict loader's error.
import type { DerivedBuffer, DerivesBuffers } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { fmt, shapeEq } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import { CheckpointFormatError } from './checkpoint-error.js';

function derivesBuffers(m: Module): m is Module & DerivesBuffers {
  return typeof (m as Partial<DerivesBuffers>).derivedBuffers === 'object';
}

/** The model's derived buffers by dotted state-dict key (only those the model holds). */
export function derivedBufferKeys(model: Module): Map<string, DerivedBuffer> {
  const own = new Set(model.namedBuffers().map(([k]) => k));
  const out = new Map<string, DerivedBuffer>();
  for (const [path, m] of model.namedModules()) {
    if (!derivesBuffers(m)) continue;
    for (const [name, kind] of Object.entries(m.derivedBuffers)) {
      const key = path ? `${path}.${name}` : name;
      if (own.has(key)) out.set(key, kind);
    }
  }
  return out;
}

/** Where a checkpoint's recomputed buffer differs from graft's: a shape, or the first differing element; null when equal. */
function difference(theirs: Tensor, ours: Tensor): string | null {
  if (!shapeEq(theirs.shape, ours.shape)) return `shape ${fmt(theirs.shape)} in the checkpoint, ${fmt(ours.shape)} in graft`;
  const a = theirs.toArray();
  const b = ours.toArray();
  for (let i = 0; i < b.length; i++) {
    if (Number(a[i]) !== Number(b[i])) return `element ${i} is ${Number(a[i])} in the checkpoint, ${Number(b[i])} in graft`;
  }
  return null;
}

/**
 * Completes `state` (model names) with the derived buffers it lacks, as the model's own tensors
 * (so loading keeps them), and checks the recomputed ones it has. Returns the keys it filled in.
 * A recomputed buffer with other values is a CheckpointFormatError naming the key.
 */
export function completeDerivedBuffers(model: Module, state: Map<string, Tensor>, what: string): string[] {
  const own = model.stateDict();
  const filled: string[] = [];
  for (const [key, kind] of derivedBufferKeys(model)) {
    const theirs = state.get(key);
    const ours = own.get(key)!;
    if (!theirs) {
      state.set(key, ours);
      filled.push(key);
      continue;
    }
    const diff = kind === 'recomputed' ? difference(theirs, ours) : null;
    if (diff) {
      const from = key.endsWith('relative_position_index') ? ' (its window size)' : '';
      throw new CheckpointFormatError(
        `${what}: ${key} is not the one graft computes for this model (${diff}). graft derives it from the model's configuration${from}, ` +
        `and the checkpoint's other weights were trained with the checkpoint's values; ` +
        `create the model with the configuration the checkpoint was saved from.`,
      );
    }
  }
  return filled;
}
