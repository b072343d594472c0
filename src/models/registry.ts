// Named model configurations: `createModel('resnet18', { numClasses: 10 })`. A family registers
// its names with one call; configurations are plain data.
import { ConfigError } from '../errors.js';
import type { CreateModelOptions, VisionModel } from './model.js';

/** What the registry holds for a model name: its family and how to create it from createModel's options. */
export interface ModelEntry {
  family: string;
  create(opts: CreateModelOptions): VisionModel;
}

const entries = new Map<string, ModelEntry>();

export function registerModel(name: string, entry: ModelEntry): void {
  if (entries.has(name)) throw new Error(`model '${name}' is registered twice`);
  entries.set(name, entry);
}

export function listModels(family?: string): string[] {
  return [...entries].filter(([, e]) => !family || e.family === family).map(([n]) => n).sort();
}

export function createModel(name: string, opts: CreateModelOptions = {}): VisionModel {
  const entry = entries.get(name);
  if (!entry) {
    const close = listModels().filter((n) => n.startsWith(name.split('_')[0]!));
    throw new ConfigError(`unknown model '${name}'.${close.length ? ` Did you mean one of: ${close.join(', ')}?` : ''} All models: graft inspect --list`);
  }
  return entry.create(opts);
}
