// The part every adapter layer shares: the wrapped `base_layer`, named adapters with one active,
// the merge record, and PEFT's rule for on-disk keys (the adapter name dropped from the path).
// A method's layer (LoRA's, later LoHa's, IA3's, …) extends it and adds its own per-adapter
// modules in ModuleDicts whose names it lists in `adapterDicts`, as PEFT's adapter_layer_names.
import { Module } from '../nn/module.js';
import { Conv2d, type Linear } from '../nn/layers.js';
import type { Tensor } from '../tensor/tensor.js';

export type BaseLayer = Linear | Conv2d;

/**
 * `B` is what the layer wraps: a Linear or Conv2d for methods that change a layer's weight, or a
 * whole block for methods that insert modules into it (Mona wraps a block with residual taps).
 */
export abstract class AdapterLayer<B extends Module = BaseLayer> extends Module {
  readonly base_layer: B;
  activeAdapter: string | null = null;
  /** Adapters merged into base_layer.weight, in merge order. */
  readonly mergedAdapters: string[] = [];
  disabled = false;
  /** Names of the ModuleDicts holding one module per adapter (their parameters are the adapter's). */
  abstract readonly adapterDicts: readonly string[];

  constructor(base: B) {
    super();
    this.base_layer = this.module('base_layer', base);
  }

  get isConv(): boolean {
    return this.base_layer instanceof Conv2d;
  }

  abstract adapterNames(): string[];
  abstract deleteAdapter(name: string): void;
  /** Whether the adapters can be merged into the base weight. */
  abstract canMerge(): boolean;
  /** Folds adapter `name` (default: the active one) into the base weight; forward then computes the base layer alone. */
  abstract merge(name?: string | null): void;
  /** Removes every merged adapter from the base weight, last merged first. */
  abstract unmerge(): void;

  /** The base Conv2d when this layer currently computes exactly it (adapters merged, disabled or none active). */
  plainConv(): Conv2d | null {
    const b = this.base_layer;
    return b instanceof Conv2d && (this.disabled || this.activeAdapter === null || this.mergedAdapters.length > 0) ? b : null;
  }

  /** Whether the adapter path is skipped in forward (disabled, none active, or merged into the weight). */
  protected bypassed(): boolean {
    return this.disabled || this.activeAdapter === null || this.mergedAdapters.length > 0;
  }

  /**
   * The on-disk key (relative to this layer) of one of this layer's state keys when it belongs to
   * adapter `name`, else null: `<dict>.<name>.<rest>` → `<dict>.<rest>`, as PEFT saves it.
   */
  peftKey(localKey: string, name: string): string | null {
    for (const dict of this.adapterDicts) {
      const prefix = `${dict}.${name}.`;
      if (localKey.startsWith(prefix)) return `${dict}.${localKey.slice(prefix.length)}`;
    }
    return null;
  }

  /** Adapter `name`'s parameters and buffers by in-memory key relative to this layer. */
  adapterState(name: string): [string, Tensor][] {
    return [...this.namedParameters(), ...this.namedBuffers()].filter(([k]) => this.peftKey(k, name) !== null);
  }
}
