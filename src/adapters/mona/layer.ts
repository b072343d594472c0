// Mona on a block with residual taps (src/nn/residual-taps.ts): the layer wraps the block and
// runs it with a Mona module at each of its taps, after the attention residual and after the MLP
// residual of a transformer block, after the residual add of a ConvNeXt block. Per adapter, tap i
// holds its module in ModuleDict `mona_<i+1>`, saved as `<block>.mona_<i+1>.<param>`
// (`mona_1.project1.weight`, `mona_1.adapter_conv.conv1.weight`, `mona_1.gamma`, …). Mona adds
// modules rather than changing weights, so it does not merge.
import { ModuleDict } from '../../nn/layers.js';
import type { TappedBlock } from '../../nn/residual-taps.js';
import type { Tensor } from '../../tensor/tensor.js';
import { AdapterLayer } from '../layer.js';
import { Mona, type MonaOptions } from './module.js';

export class MonaLayer extends AdapterLayer<TappedBlock> {
  readonly adapterDicts: readonly string[];
  private readonly dicts: ModuleDict<Mona>[];
  private readonly names: string[] = [];

  constructor(block: TappedBlock) {
    super(block);
    this.adapterDicts = block.tapPoints.map((_, i) => `mona_${i + 1}`);
    this.dicts = this.adapterDicts.map((name) => this.module(name, new ModuleDict<Mona>()));
  }

  adapterNames(): string[] {
    return [...this.names];
  }

  /** Adapter `name`'s module at tap `point`. */
  mona(name: string, point: number): Mona {
    const m = this.dicts[point]?.get(name);
    if (!m) throw new Error(`Mona layer has no adapter '${name}' at tap ${point}; it has ${this.names.join(', ') || 'none'} at ${this.dicts.length} taps`);
    return m;
  }

  addAdapter(name: string, o: MonaOptions): void {
    if (this.names.includes(name)) throw new Error(`adapter '${name}' already exists on this layer`);
    for (const d of this.dicts) d.set(name, new Mona(this.base_layer.tapChannels, o));
    this.names.push(name);
    this.activeAdapter ??= name;
  }

  deleteAdapter(name: string): void {
    this.mona(name, 0);
    for (const d of this.dicts) {
      d.get(name)!.dispose();
      d.delete(name);
    }
    this.names.splice(this.names.indexOf(name), 1);
    if (this.activeAdapter === name) this.activeAdapter = this.names[0] ?? null;
  }

  canMerge(): boolean {
    return false;
  }

  merge(): void {
    throw new Error('Mona adds modules after the residual adds of its blocks instead of changing their weights, so it cannot be merged into the base model; evaluate and predict with the adapter in place');
  }

  unmerge(): void {
    // Nothing is ever merged.
  }

  forward(...args: Tensor[]): Tensor {
    const [x, ...rest] = args;
    if (!x) throw new Error('MonaLayer.forward: no input');
    if (this.bypassed()) return this.base_layer.forward(x, ...rest);
    const name = this.activeAdapter!;
    return this.base_layer.forwardTapped((point, y, layout) => this.mona(name, point).forwardLayout(y, layout), x, ...rest);
  }
}
