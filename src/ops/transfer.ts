import type { Backend } from '../backends/backend.js';
import type { Tensor } from '../tensor/tensor.js';
import { tensor } from './creation.js';
import { record } from './table.js';

/** A copy of x on another backend (gradients flow back across). */
export function toBackend(x: Tensor, backend: Backend<any>): Tensor {
  if (x.backend === backend) return x;
  const out = tensor(x.toArray(), x.shape, { backend });
  return record(out, 'toBackend', [x], [], (gy) => [toBackend(gy, x.backend)]);
}
