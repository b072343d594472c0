// Every adapter method graft knows, by name. A new method is its folder plus one line here;
// programs can add their own with registerAdapterMethod.
import type { AdapterConfig, AdapterMethod } from './method.js';
import { lora, doraMethod } from './lora/method.js';
import { loha } from './loha/method.js';
import { lokr } from './lokr/method.js';
import { ia3 } from './ia3/method.js';
import { oft } from './oft/method.js';
import { adalora } from './adalora/method.js';
import { dylora } from './dylora/method.js';
import { mona } from './mona/method.js';
import { dra } from './dra/method.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyMethod = AdapterMethod<any>;

const methods = new Map<string, AnyMethod>();

/** Adds a method; its name must be new and must not be a baseline's (scratch, linear-probe, full). */
export function registerAdapterMethod<C extends AdapterConfig>(method: AdapterMethod<C>): void {
  if (methods.has(method.name) || ['scratch', 'linear-probe', 'full'].includes(method.name)) {
    throw new Error(`adapter method '${method.name}' is registered twice`);
  }
  methods.set(method.name, method);
}

registerAdapterMethod(lora);
registerAdapterMethod(doraMethod);
registerAdapterMethod(loha);
registerAdapterMethod(lokr);
registerAdapterMethod(ia3);
registerAdapterMethod(oft);
registerAdapterMethod(adalora);
registerAdapterMethod(dylora);
registerAdapterMethod(mona);
registerAdapterMethod(dra);

export function adapterMethods(): AnyMethod[] {
  return [...methods.values()];
}

export function isAdapterMethod(name: string): boolean {
  return methods.has(name);
}

export function getAdapterMethod(name: string): AnyMethod {
  const m = methods.get(name);
  if (!m) throw new Error(`unknown adapter method '${name}'; adapter methods: ${[...methods.keys()].join(', ')}`);
  return m;
}

/** The method that reads an adapter_config.json object, or an error naming its peft_type and what graft reads. */
export function methodForPeftJson(json: Record<string, unknown>, source: string): AnyMethod {
  const m = adapterMethods().find((x) => x.readsPeftJson(json));
  if (!m) {
    const known = [...new Set(adapterMethods().map((x) => x.peftType))].join(', ');
    throw new Error(`${source}: peft_type ${JSON.stringify(json['peft_type'])} is not an adapter method graft reads (it reads ${known})`);
  }
  return m;
}
