// Reverse-mode autograd over a tape of GradFn records.
//
// An op that produced `out` from `inputs` records a GradFn whose `backward(gy)` returns one
// gradient per input (null where an input needs none), each shaped like that input. Backward
// closures capture only what they need, so the graph keeps only those tensors alive; after
// backward the graph is released unless retainGraph is set.
//
// This file sees tensors only through their type: Tensor.backward (tensor.ts) makes the seed and
// calls the walk here, and the walk copies through Tensor.clone(), so the import goes one way.
import { keep, tidy } from './memory.js';
import type { Tensor } from './tensor.js';
import { fmt, shapeEq } from './shape.js';

export type BackwardFn = (gy: Tensor, saved: readonly Tensor[]) => readonly (Tensor | null)[];

/** How a tensor was computed: its inputs, the data backward needs (`saved`), and the rule. */
export class GradFn {
  constructor(
    readonly name: string,
    readonly inputs: readonly Tensor[],
    readonly saved: readonly Tensor[],
    private readonly rule: BackwardFn,
  ) {
    savedRegistry.register(this, saved, this);
  }

  backward(gy: Tensor): readonly (Tensor | null)[] {
    return this.rule(gy, this.saved);
  }

  /** Frees the saved data; called once backward has used it. */
  release(): void {
    savedRegistry.unregister(this);
    for (const t of this.saved) t.dispose();
  }
}

// A graph that is never back-propagated (a forward pass with gradients on, then dropped) frees
// its saved data when the garbage collector reclaims its records.
const savedRegistry = new FinalizationRegistry<readonly Tensor[]>((saved) => {
  for (const t of saved) t.dispose();
});

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs one stage of a forward pass (a transformer block, one module of a Sequential) in its own
 * memory scope when no graph is being recorded, so the stage's intermediates are freed as soon as
 * it returns instead of living until the caller's scope ends: an inference pass then holds about
 * one stage's activations at a time. With gradients on, the stage runs as it is (backward needs
 * what the graph saved, and the training step's scope owns it).
 */
export function stageScope<T>(fn: () => T): T {
  return gradEnabled ? fn() : tidy(fn);
}

/** Runs `fn` without recording the graph (like torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

let replayedLater = 0;

/**
 * noGrad for a forward pass whose backward recomputes it with gradients (checkpoint): ops keep
 * the kernels a recorded pass uses, so both passes compute bit for bit the same values.
 */
export function noGradReplayed<T>(fn: () => T): T {
  replayedLater++;
  try {
    return noGrad(fn);
  } finally {
    replayedLater--;
  }
}

let replaying = 0;

/** Runs fn as a checkpoint's recomputation (isReplaying() is true inside). */
export function replay<T>(fn: () => T): T {
  replaying++;
  try {
    return fn();
  } finally {
    replaying--;
  }
}

/**
 * Whether this pass recomputes one already run (a checkpoint's backward): state a forward pass
 * updates (BatchNorm's running statistics) was updated by the first pass and must not be again.
 */
export function isReplaying(): boolean {
  return replaying > 0;
}

/**
 * Whether ops may take inference-only kernels (other layouts, strided reads; values equal to a
 * recorded pass's within rounding): nothing is recorded, and no checkpoint will recompute this pass.
 */
export function inferenceKernels(): boolean {
  return !gradEnabled && replayedLater === 0;
}

/** inferenceKernels for one op's inputs: no gradient will flow back from them, and no checkpoint will recompute this pass. */
export function inferenceKernelsFor(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return replayedLater === 0 && !needsGrad(inputs);
}

/** Runs `fn` with gradients recorded (inside a backward pass: recomputing a checkpointed block). */
export function enableGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op over `inputs` must record a GradFn. */
export function needsGrad(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad === true);
}

/**
 * Attaches a GradFn to `out` when any input requires a gradient. `backward(gy, saved)` receives
 * the gradient of `out` and handles on the `saved` tensors (readable even after the originals
 * are disposed), and returns gradients for `inputs`, in order.
 */
export function record(out: Tensor, name: string, inputs: readonly Tensor[], saved: readonly Tensor[], backward: BackwardFn): Tensor {
  if (!needsGrad(inputs)) return out;
  out.requiresGrad = true;
  out.gradFn = new GradFn(name, inputs, saved.map((t) => t.saveForBackward()), backward);
  return out;
}

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep transformer graphs overflow a recursive walk.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i]!;
      if (next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse();
}

function accumulateInto(target: Tensor, g: Tensor): void {
  const b = target.backend;
  b.binary('add', target.view(), g.view(), target.buf(), target.dtype, target.shape);
}

/** Throws unless `root.backward(gradient)` can run: `root` needs a gradient, and `gradient` is given for a non-scalar and matches its shape. */
export function checkBackwardRoot(root: Tensor, gradient: Tensor | undefined): void {
  if (!root.requiresGrad) throw new Error(`backward(): ${root.describe()} does not require a gradient (no input had requiresGrad, or it was computed under noGrad)`);
  if (!gradient && root.size !== 1) throw new Error(`backward(): ${root.describe()} is not a scalar; pass a gradient of the same shape`);
  if (gradient && !shapeEq(gradient.shape, root.shape)) throw new Error(`backward(): gradient shape ${fmt(gradient.shape)} does not match ${fmt(root.shape)}`);
}

/**
 * Back-propagates `seed`, the gradient of `root`, into the leaves' `.grad`. The walk frees the
 * seed once used when `ownsSeed`; otherwise it belongs to the caller and is only read.
 */
export function runBackward(root: Tensor, seed: Tensor, ownsSeed: boolean, retainGraph: boolean): void {
  // The caller's gradient, which no stored gradient may alias and nothing here disposes.
  const gradient = ownsSeed ? undefined : seed;
  const prev = gradEnabled;
  gradEnabled = false;
  const grads = new Map<Tensor, Tensor>();
  try {
    grads.set(root, seed);
    const order = topoOrder(root);
    for (const t of order) {
      const gy = grads.get(t);
      if (!gy) {
        if (!retainGraph && t.gradFn) {
          t.gradFn.release();
          t.gradFn = null;
        }
        continue;
      }
      grads.delete(t);
      if (!t.gradFn) {
        // A leaf: accumulate into .grad, which the leaf owns.
        if (t.grad) {
          accumulateInto(t.grad, gy);
          if (gy !== gradient) gy.dispose();
        } else {
          t.grad = keep(gy === gradient || !gy.isDense() ? gy.clone() : gy);
          if (t.grad !== gy && gy !== gradient) gy.dispose();
        }
        continue;
      }
      const fn = t.gradFn;
      const gxs = tidy(() => fn.backward(gy));
      // A backward may return gy itself, or one tensor for several inputs: each stored
      // gradient must be its own buffer, since accumulation writes into it.
      const used = new Set<Tensor>();
      const usedStorage = new Set<unknown>();
      fn.inputs.forEach((x, i) => {
        let gx = gxs[i];
        if (!gx || !x.requiresGrad) return;
        if (!shapeEq(gx.shape, x.shape)) {
          throw new Error(`internal: backward of ${fn.name} gave a gradient of shape ${fmt(gx.shape)} for input ${i} of shape ${fmt(x.shape)}`);
        }
        const have = grads.get(x);
        if (have) {
          accumulateInto(have, gx);
          return;
        }
        if (usedStorage.has(gx.storage) || gx === gradient || !gx.isDense()) gx = gx.clone();
        used.add(gx);
        usedStorage.add(gx.storage);
        grads.set(x, gx);
      });
      for (const gx of gxs) if (gx && !used.has(gx) && gx !== gradient && !fn.inputs.includes(gx)) gx.dispose();
      if (gy !== gradient && !used.has(gy)) gy.dispose();
      if (!retainGraph) {
        fn.release();
        t.gradFn = null;
      }
    }
  } finally {
    for (const g of grads.values()) if (g !== gradient) g.dispose();
    gradEnabled = prev;
  }
}
