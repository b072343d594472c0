// Module: a tree of named parameters, buffers and submodules with PyTorch's dotted names, so a
// checkpoint loads by walking names (`blocks.0.attn.qkv.weight`).
import { WeightsError } from '../errors.js';
import { keep } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { emptyTensor, type Tensor } from '../tensor/tensor.js';
import { fmt, shapeEq } from '../tensor/shape.js';

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
  mismatched: { key: string; expected: readonly number[]; got: readonly number[] }[];
}

export class StateDictError extends WeightsError {
  override name = 'StateDictError';
  constructor(readonly result: LoadResult, what: string) {
    const lines = [
      ...result.mismatched.map((m) => `  shape mismatch for ${m.key}: the model has ${fmt(m.expected)}, the checkpoint has ${fmt(m.got)}`),
      ...result.missingKeys.map((k) => `  missing: ${k}`),
      ...result.unexpectedKeys.map((k) => `  unexpected: ${k}`),
    ];
    super(`loading ${what} failed (${result.missingKeys.length} missing, ${result.unexpectedKeys.length} unexpected, ${result.mismatched.length} mismatched keys):\n${lines.join('\n')}\nPass { strict: false } to load what matches and get this list back.`);
  }
}

export abstract class Module {
  training = true;
  private readonly _params = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, Tensor | null>();
  /** The one storage of the children; a field of the child's name reads and writes it. */
  private readonly _modules = new Map<string, Module | null>();
  /** Fields turned into views of _modules (re-made on clones). */
  private readonly _childFields: string[] = [];

  /** Registers a trainable parameter (a leaf with requiresGrad) under `name`. */
  protected param(name: string, t: Tensor | null): Tensor {
    if (t) {
      keep(t);
      t.requiresGrad_(true);
      t.name = name;
    }
    this._params.set(name, t);
    return t as Tensor;
  }

  /** Registers a buffer (state that is saved but not trained, e.g. BatchNorm running statistics). */
  protected buffer(name: string, t: Tensor | null): Tensor {
    if (t) keep(t);
    this._buffers.set(name, t);
    return t as Tensor;
  }

  /**
   * Registers a child module under `name`. A field of the same name (`this.stem =
   * this.module('stem', …)`) becomes a view of the registry, so replacing the child (setModule,
   * adapters grafting) is seen through the field; children without a field (Sequential's
   * numbered layers, ModuleDict entries) live in the registry alone.
   */
  protected module<M extends Module | null>(name: string, m: M): M {
    this._modules.set(name, m);
    const field = Object.getOwnPropertyDescriptor(this, name);
    // Only a declared child field (still unset, or holding this module) becomes a view.
    if (field && 'value' in field && (field.value === undefined || field.value === null || field.value instanceof Module) && !this._childFields.includes(name)) {
      bindChildField(this, this._modules, name);
      this._childFields.push(name);
    }
    return m;
  }

  abstract forward(...args: Tensor[]): Tensor;

  /** Removes a registered child. */
  protected removeChild(name: string): void {
    this._modules.delete(name);
  }

  /** The registered child `name` (undefined when there is none). */
  protected child(name: string): Module | undefined {
    return this._modules.get(name) ?? undefined;
  }

  /** The direct child registered as `name`, or null. */
  childModule(name: string): Module | null {
    return this._modules.get(name) ?? null;
  }

  children(): [string, Module][] {
    return [...this._modules].filter((e): e is [string, Module] => e[1] !== null);
  }

  /** Every module in the tree with its dotted path ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const walk = (path: string, m: Module) => {
      out.push([path, m]);
      for (const [name, c] of m._modules) if (c) walk(path ? `${path}.${name}` : name, c);
    };
    walk(prefix, this);
    return out;
  }

  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, t] of m._params) if (t) out.push([path ? `${path}.${name}` : name, t]);
    }
    return out;
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, t] of m._buffers) if (t) out.push([path ? `${path}.${name}` : name, t]);
    }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters that will receive gradients. */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }

  /** Replaces the child at a dotted path (used to graft adapters onto layers). */
  setModule(path: string, m: Module): void {
    const parts = path.split('.');
    let owner: Module = this;
    for (const p of parts.slice(0, -1)) {
      const next = owner._modules.get(p);
      if (!next) throw new Error(`setModule: no module at '${path}' (stopped at '${p}')`);
      owner = next;
    }
    const last = parts[parts.length - 1]!;
    if (!owner._modules.has(last)) throw new Error(`setModule: no module at '${path}'`);
    const old = owner._modules.get(last);
    // A field named unlike its child would keep computing with the old module after the swap.
    const stale = Object.entries(owner).find(([, v]) => v === old && old !== null);
    if (stale) {
      throw new Error(`setModule: ${owner.constructor.name} keeps the child '${last}' in a field named '${stale[0]}' as well; ` +
        `name the field like the child (this.${last} = this.module('${last}', …)) so replacing it is seen by forward`);
    }
    owner._modules.set(last, m);
  }

  getModule(path: string): Module {
    const found = this.namedModules().find(([p]) => p === path);
    if (!found) throw new Error(`getModule: no module at '${path}'`);
    return found[1];
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Sets requiresGrad on every parameter (freezing with false). */
  requiresGrad_(flag: boolean): this {
    for (const t of this.parameters()) t.requiresGrad = flag;
    return this;
  }

  /** Parameters and buffers by dotted name (shared, not copied). */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copies values from `state` into this module's parameters and buffers by name. Strict mode
   * (default) throws one StateDictError listing every missing, unexpected and mismatched key.
   */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean; what?: string } = {}): LoadResult {
    const entries = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const result: LoadResult = { missingKeys: [], unexpectedKeys: [], mismatched: [] };
    for (const [key, t] of own) {
      const src = entries.get(key);
      if (!src) result.missingKeys.push(key);
      else if (!shapeEq(src.shape, t.shape)) result.mismatched.push({ key, expected: t.shape, got: src.shape });
    }
    for (const key of entries.keys()) if (!own.has(key)) result.unexpectedKeys.push(key);
    const clean = result.missingKeys.length + result.unexpectedKeys.length + result.mismatched.length === 0;
    if ((opts.strict ?? true) && !clean) throw new StateDictError(result, opts.what ?? 'the state dict');
    noGrad(() => {
      for (const [key, t] of own) {
        const src = entries.get(key);
        // `src` may be the very tensor (a deferred weight the loader fills later: models/deferred-load.ts)
        if (src && src !== t && shapeEq(src.shape, t.shape)) t.backend.copy(src.view(), t.view());
      }
    });
    return result;
  }

  /**
   * A deep copy: new parameter and buffer tensors with the same values (same requiresGrad),
   * new child modules, other fields copied.
   */
  clone(): this {
    return cloneValue(this, new Map()) as this;
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const [, t] of this.stateDict()) t.dispose();
  }
}

function cloneValue(v: unknown, memo: Map<unknown, unknown>): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (memo.has(v)) return memo.get(v);
  if ((v as { isTensor?: boolean }).isTensor) {
    const t = v as Tensor;
    const c = keep(cloneTensor(t));
    c.requiresGrad = t.requiresGrad;
    if (t.name) c.name = t.name;
    memo.set(v, c);
    return c;
  }
  if (v instanceof Module) {
    const c = Object.create(Object.getPrototypeOf(v)) as Record<string, unknown>;
    memo.set(v, c);
    for (const [k, val] of Object.entries(v)) c[k] = cloneValue(val, memo);
    const clone = c as unknown as Module;
    for (const name of clone['_childFields']) bindChildField(clone, clone['_modules'], name);
    return c;
  }
  if (v instanceof Map) {
    const c = new Map();
    memo.set(v, c);
    for (const [k, val] of v) c.set(k, cloneValue(val, memo));
    return c;
  }
  if (Array.isArray(v)) return v.map((x) => cloneValue(x, memo));
  return v;
}

/** Makes `obj[name]` read and write `children.get(name)` (not enumerable, so clones copy the registry only). */
function bindChildField(obj: object, children: Map<string, Module | null>, name: string): void {
  Object.defineProperty(obj, name, {
    get: () => children.get(name) ?? null,
    set: (m: Module | null) => {
      children.set(name, m);
    },
    enumerable: false,
    configurable: true,
  });
}

function cloneTensor(t: Tensor): Tensor {
  return noGrad(() => {
    const out = emptyTensor(t.shape, t.dtype, t.backend);
    t.backend.copy(t.view(), out.view());
    return out;
  });
}

/**
 * trainable params: X || all params: Y || trainable%: Z — the line PEFT users know. A module
 * whose frozen weight is stored in another form than a parameter (a 4-bit layer's codes) counts
 * it through `storedWeightCount()`: the parameters it stands for.
 */
export function describeTrainable(m: Module): { trainable: number; total: number; percent: number; line: string } {
  let trainable = 0;
  let total = 0;
  for (const t of m.parameters()) {
    total += t.size;
    if (t.requiresGrad) trainable += t.size;
  }
  for (const [, sub] of m.namedModules()) total += (sub as Partial<{ storedWeightCount(): number }>).storedWeightCount?.() ?? 0;
  const percent = total ? (100 * trainable) / total : 0;
  return { trainable, total, percent, line: `trainable params: ${trainable.toLocaleString('en-US')} || all params: ${total.toLocaleString('en-US')} || trainable%: ${percent.toFixed(4)}` };
}
