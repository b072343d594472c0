// The slot through which tensors find the backend they are made on. tensor/ knows backends only
// by their interface (backends/backend.ts): src/backends/registry.ts installs the rule that picks
// the default and sets the current backend, and each backend registers itself there.
import type { Backend } from '../backends/backend.js';

let current: Backend<any> | null = null;
let chooseDefault: (() => Backend<any>) | null = null;

/** The backend new tensors are made on: the one set last, else the registry's default. */
export function currentBackend(): Backend<any> {
  if (!current) {
    if (!chooseDefault) {
      throw new Error("no backend is registered: import graft's entry point (src/index.ts), or src/backends/all.js, before making tensors");
    }
    current = chooseDefault();
  }
  return current;
}

/** Makes `backend` the one new tensors are made on. */
export function setCurrentBackend(backend: Backend<any>): void {
  current = backend;
}

/** Installs the rule that picks the backend when none has been set (the registry's). */
export function setDefaultBackendRule(rule: () => Backend<any>): void {
  chooseDefault = rule;
}
