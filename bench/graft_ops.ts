// graft's side of each case: the op called through graft's public op layer, forward under
// noGrad, backward as `out.backward(gy)` after an untimed forward.
import { performance } from 'node:perf_hooks';
import {
  add, batchNorm, conv2d, gelu, layerNorm, linear, matmul, noGrad, ones, randn, scaledDotProductAttention,
  softmax, tidy, zeros, type Tensor,
} from '../src/index.js';
import type { BenchCase, PassName } from './cases.js';
import { LATENCY_CALLS, measure, type Measurement, type TimingPolicy } from './timing.js';

interface PassRunner {
  pass: PassName;
  /** Runs the pass once (or LATENCY_CALLS times for 'call'); returns the timed milliseconds. */
  iteration: () => number;
}

interface CaseRunners {
  passes: PassRunner[];
  tensors: Tensor[];
}

function forwardPass(op: () => Tensor): PassRunner {
  return {
    pass: 'fwd',
    iteration: () => noGrad(() => {
      const t0 = performance.now();
      const y = op();
      const ms = performance.now() - t0;
      y.dispose();
      return ms;
    }),
  };
}

/** Backward of `op` with gradients for `wrt` only; the other inputs stay constants. */
function backwardPass(pass: PassName, op: () => Tensor, wrt: readonly Tensor[], all: readonly Tensor[], gy: Tensor): PassRunner {
  return {
    pass,
    iteration: () => {
      for (const t of all) t.requiresGrad = wrt.includes(t);
      const ms = tidy(() => {
        const y = op();
        const t0 = performance.now();
        y.backward(gy);
        return performance.now() - t0;
      });
      for (const t of wrt) {
        t.grad?.dispose();
        t.grad = null;
      }
      for (const t of all) t.requiresGrad = false;
      return ms;
    },
  };
}

function latencyPass(op: () => Tensor): PassRunner {
  return {
    pass: 'call',
    iteration: () => noGrad(() => {
      const t0 = performance.now();
      for (let i = 0; i < LATENCY_CALLS; i++) op().dispose();
      return performance.now() - t0;
    }),
  };
}

const small = (shape: number[]) => randn(shape, { std: 0.05 });

function runners(c: BenchCase): CaseRunners {
  const p = c.params;
  switch (c.op) {
    case 'linear': {
      const [x, w, b, gy] = [randn([p.m, p.k]), small([p.n, p.k]), randn([p.n]), randn([p.m, p.n])];
      const op = () => linear(x, w, b);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [x, w], [x, w, b], gy)], tensors: [x, w, b, gy] };
    }
    case 'matmul': {
      const [x, w, gy] = [randn([p.m, p.k]), small([p.k, p.n]), randn([p.m, p.n])];
      const op = () => matmul(x, w);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [x, w], [x, w], gy)], tensors: [x, w, gy] };
    }
    case 'attention': {
      const shape = [p.batch, p.heads, p.n, p.d];
      const [q, k, v, gy] = [randn(shape), randn(shape), randn(shape), randn(shape)];
      const op = () => scaledDotProductAttention(q, k, v);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [q, k, v], [q, k, v], gy)], tensors: [q, k, v, gy] };
    }
    case 'conv': {
      const x = randn([p.n, p.c, p.h, p.w]);
      const w = small([p.cout, p.c / p.groups, p.kh, p.kw]);
      const opts = { stride: p.stride, padding: p.pad, groups: p.groups };
      const outH = (p.h + 2 * p.pad - p.kh) / p.stride + 1;
      const outW = (p.w + 2 * p.pad - p.kw) / p.stride + 1;
      const gy = randn([p.n, p.cout, outH, outW]);
      const op = () => conv2d(x, w, null, opts);
      return {
        passes: [forwardPass(op), backwardPass('bwd-data', op, [x], [x, w], gy), backwardPass('bwd-weight', op, [w], [x, w], gy)],
        tensors: [x, w, gy],
      };
    }
    case 'add': {
      const [a, b] = [randn([p.rows, p.cols]), randn([p.rows, p.cols])];
      return { passes: [forwardPass(() => add(a, b))], tensors: [a, b] };
    }
    case 'bias_add': {
      const [x, b, gy] = [randn([p.rows, p.cols]), randn([p.cols]), randn([p.rows, p.cols])];
      const op = () => add(x, b);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [b], [x, b], gy)], tensors: [x, b, gy] };
    }
    case 'gelu': {
      const [x, gy] = [randn([p.rows, p.cols]), randn([p.rows, p.cols])];
      const op = () => gelu(x);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [x], [x], gy)], tensors: [x, gy] };
    }
    case 'layernorm': {
      const [x, w, b, gy] = [randn([p.rows, p.cols]), ones([p.cols]), zeros([p.cols]), randn([p.rows, p.cols])];
      const op = () => layerNorm(x, w, b);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [x, w, b], [x, w, b], gy)], tensors: [x, w, b, gy] };
    }
    case 'softmax': {
      const [x, gy] = [randn([p.rows, p.cols]), randn([p.rows, p.cols])];
      const op = () => softmax(x);
      return { passes: [forwardPass(op), backwardPass('bwd', op, [x], [x], gy)], tensors: [x, gy] };
    }
    case 'batchnorm': {
      const shape = [p.n, p.c, p.h, p.w];
      const [x, gy] = [randn(shape), randn(shape)];
      const [rm, rv, w, b] = [zeros([p.c]), ones([p.c]), ones([p.c]), zeros([p.c])];
      const op = () => batchNorm(x, rm, rv, w, b, { training: true });
      return { passes: [forwardPass(op), backwardPass('bwd', op, [x, w, b], [x, w, b], gy)], tensors: [x, gy, rm, rv, w, b] };
    }
    case 'overhead_add': {
      const [a, b] = [randn([p.n]), randn([p.n])];
      return { passes: [latencyPass(() => add(a, b))], tensors: [a, b] };
    }
    case 'overhead_matmul': {
      const [a, b] = [randn([p.m, p.k]), randn([p.k, p.n])];
      return { passes: [latencyPass(() => matmul(a, b))], tensors: [a, b] };
    }
  }
}

/** Measures every pass of `c` on the current backend. */
export async function measureGraft(c: BenchCase, policy: TimingPolicy): Promise<Measurement[]> {
  let r: CaseRunners;
  try {
    r = runners(c);
  } catch (e) {
    return [{ id: c.id, error: (e as Error).message }];
  }
  const out: Measurement[] = [];
  try {
    for (const pr of r.passes) {
      try {
        const s = await measure(pr.iteration, policy, pr.pass === 'call' ? LATENCY_CALLS : 1);
        out.push({ id: c.id, pass: pr.pass, ...s });
      } catch (e) {
        out.push({ id: c.id, pass: pr.pass, error: (e as Error).message });
      }
    }
  } finally {
    for (const t of r.tensors) t.dispose();
  }
  return out;
}
