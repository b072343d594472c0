// Which backend new tensors are made on. Native is the default when its addon loads; otherwise
// graft warns once, says how to build it, and runs on the reference backend.
// GRAFT_BACKEND=reference|native overrides the default.
import type { Backend } from './backend.js';
import { referenceBackend } from './reference/index.js';
import { loadNativeBackend } from './native/index.js';

export type BackendName = 'reference' | 'native';

let current: Backend<any> | null = null;
let native: Backend<any> | null | undefined;
let nativeError = '';

/** The native backend, or null with the reason in `nativeLoadError()`. */
export function nativeBackend(): Backend<any> | null {
  if (native === undefined) {
    const r = loadNativeBackend();
    native = r.backend;
    nativeError = r.error;
  }
  return native;
}

export function nativeLoadError(): string {
  nativeBackend();
  return nativeError;
}

export function getBackend(name: BackendName): Backend<any> {
  if (name === 'reference') return referenceBackend;
  if (name === 'native') {
    const b = nativeBackend();
    if (!b) throw new Error(`the native backend is not available: ${nativeError}`);
    return b;
  }
  throw new Error(`unknown backend '${name as string}'; use 'reference' or 'native'`);
}

/** Sets the backend on which new tensors are created. */
export function setBackend(name: BackendName): void {
  current = getBackend(name);
}

function chooseDefault(): Backend<any> {
  const env = process.env['GRAFT_BACKEND'];
  if (env === 'reference' || env === 'native') return getBackend(env);
  if (env) throw new Error(`GRAFT_BACKEND='${env}' is not a backend; use 'reference' or 'native'`);
  const b = nativeBackend();
  if (b) return b;
  process.emitWarning(`graft: the native backend could not be loaded (${nativeError}); running on the slow reference backend. Build it with: npm run build:native`, 'GraftBackendWarning');
  return referenceBackend;
}

export function currentBackend(): Backend<any> {
  if (!current) current = chooseDefault();
  return current;
}

/** Runs `fn` with `name` as the current backend. */
export function withBackend<T>(name: BackendName, fn: () => T): T {
  const prev = currentBackend();
  current = getBackend(name);
  try {
    return fn();
  } finally {
    current = prev;
  }
}
