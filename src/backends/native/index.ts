// Loads the native (C++ / oneDNN) backend addon. Replaced by the full loader in native/.
import type { Backend } from '../backend.js';

export function loadNativeBackend(): { backend: Backend<any> | null; error: string } {
  return { backend: null, error: 'the addon build/Release/graft_native.node was not found' };
}
