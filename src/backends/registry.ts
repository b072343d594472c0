// Named backends and the rule that picks the default. Each backend registers itself from its own
// folder; src/backends/all.ts imports the built-in ones, and graft's entry points import all.ts.
// The default is the registered backend of highest priority that loads (native, when its addon
// loads); each one above it that fails is reported once, with its reason, in a warning.
// GRAFT_BACKEND=<name> or setBackend(name) choose explicitly.
import type { Backend } from './backend.js';
import { currentBackend, setCurrentBackend, setDefaultBackendRule } from '../tensor/device.js';

export { currentBackend };

/** The name a backend registered under ('reference', 'native', …). */
export type BackendName = string;

export interface BackendRegistration {
  /** Builds the backend on first use (at most once); throws with the reason, and the fix, when it cannot. */
  load: () => Backend<any>;
  /** The default is the loadable backend of highest priority. */
  priority: number;
}

interface Entry extends BackendRegistration {
  backend?: Backend<any>;
  /** Why `load` failed; '' once it succeeded. */
  error?: string;
}

const entries = new Map<BackendName, Entry>();

/** Makes `name` available to `setBackend`, `GRAFT_BACKEND` and the default rule. */
export function registerBackend(name: BackendName, registration: BackendRegistration): void {
  if (entries.has(name)) throw new Error(`a backend named '${name}' is already registered`);
  entries.set(name, { ...registration });
  setDefaultBackendRule(chooseDefault);
}

/** The registered names, in registration order. */
export function registeredBackends(): BackendName[] {
  return [...entries.keys()];
}

function choices(): string {
  const names = registeredBackends().map((n) => `'${n}'`);
  return names.length < 2 ? names.join('') : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

function entryOf(name: BackendName): Entry {
  const entry = entries.get(name);
  if (!entry) throw new Error(`unknown backend '${name}'; use ${choices()}`);
  return entry;
}

function load(entry: Entry): Backend<any> | null {
  if (entry.error === undefined) {
    try {
      entry.backend = entry.load();
      entry.error = '';
    } catch (e) {
      entry.error = (e as Error).message;
    }
  }
  return entry.backend ?? null;
}

/** Why backend `name` cannot be loaded; '' when it loads. */
export function backendLoadError(name: BackendName): string {
  const entry = entryOf(name);
  load(entry);
  return entry.error!;
}

/** Why the native backend cannot be loaded; '' when it loads. */
export function nativeLoadError(): string {
  return backendLoadError('native');
}

export function getBackend(name: BackendName): Backend<any> {
  const entry = entryOf(name);
  const backend = load(entry);
  if (!backend) throw new Error(`the ${name} backend is not available: ${entry.error}`);
  return backend;
}

/** Sets the backend on which new tensors are created. */
export function setBackend(name: BackendName): void {
  setCurrentBackend(getBackend(name));
}

function chooseDefault(): Backend<any> {
  const env = process.env['GRAFT_BACKEND'];
  if (env) {
    if (!entries.has(env)) throw new Error(`GRAFT_BACKEND='${env}' is not a backend; use ${choices()}`);
    return getBackend(env);
  }
  const failed: BackendName[] = [];
  for (const [name, entry] of [...entries].sort(([, a], [, b]) => b.priority - a.priority)) {
    const backend = load(entry);
    if (!backend) {
      failed.push(name);
      continue;
    }
    for (const f of failed) {
      process.emitWarning(`graft: the ${f} backend could not be loaded (${entries.get(f)!.error}); running on the ${name} backend instead`, 'GraftBackendWarning');
    }
    return backend;
  }
  throw new Error(`no backend could be loaded: ${failed.map((f) => `${f}: ${entries.get(f)!.error}`).join('; ')}`);
}

/** Runs `fn` with `name` as the current backend. */
export function withBackend<T>(name: BackendName, fn: () => T): T {
  const prev = currentBackend();
  setCurrentBackend(getBackend(name));
  try {
    return fn();
  } finally {
    setCurrentBackend(prev);
  }
}
