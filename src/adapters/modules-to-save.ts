// A module trained in full for each adapter (a head, a BatchNorm): PEFT's ModulesToSaveWrapper,
// keeping the original as `original_module` and one trainable copy per adapter.
import { Module } from '../nn/module.js';
import { ModuleDict } from '../nn/layers.js';
import type { Tensor } from '../tensor/tensor.js';

export class ModulesToSaveWrapper extends Module {
  readonly original_module: Module;
  readonly modules_to_save = new ModuleDict();
  active: string | null = null;
  constructor(original: Module) {
    super();
    this.original_module = this.module('original_module', original);
    this.module('modules_to_save', this.modules_to_save);
  }
  addAdapter(name: string): void {
    const copy = this.original_module.clone();
    copy.requiresGrad_(true);
    this.modules_to_save.set(name, copy);
    this.active ??= name;
  }
  deleteAdapter(name: string): void {
    if (!this.modules_to_save.has(name)) return;
    this.modules_to_save.get(name)!.dispose();
    this.modules_to_save.delete(name);
    if (this.active === name) this.active = null;
  }
  /** The module computing now: the active adapter's copy, else the original. */
  current(): Module {
    return this.active ? this.modules_to_save.get(this.active)! : this.original_module;
  }
  /** On-disk key (relative to this wrapper) of a state key of adapter `name`'s copy: `<param>`, as PEFT saves it. */
  peftKey(localKey: string, name: string): string | null {
    const prefix = `modules_to_save.${name}.`;
    return localKey.startsWith(prefix) ? localKey.slice(prefix.length) : null;
  }
  forward(x: Tensor): Tensor {
    return this.current().forward(x);
  }
}
