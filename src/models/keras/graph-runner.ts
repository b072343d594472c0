// Running an imported graph (Keras layers or TensorFlow ops) in order, and splitting it into
// features and head. Shared by KerasModel and TfGraphModel.
import type { Module } from '../../nn/module.js';
import type { Tensor } from '../../tensor/tensor.js';
import { tidy } from '../../tensor/memory.js';

export interface GraphNode {
  key: string;
  inputs: string[];
}

export interface Step {
  key: string;
  inputs: string[];
  /** Path of the module holding this step's weights, or null. */
  module: string | null;
  run(inputs: Tensor[], module: Module | null, training: boolean): Tensor;
  /** Values whose last use in its segment is this step (filled by planSegments). */
  release: string[];
  /** The output belongs to the model (a graph constant) and is never disposed by a run. */
  persistent?: boolean;
}

export interface SplitRules<N extends GraphNode> {
  /** Nodes that start a classifier head (Flatten, global pooling, Dense; MatMul). */
  startsHead(node: N): boolean;
  /** Nodes the head may also take over when they sit just before its start (a pooling, a squeeze). */
  leadsIntoHead(node: N, headStart: N): boolean;
  /** Nodes whose input is the pooled feature vector (Dense; MatMul). */
  isClassifier(node: N): boolean;
}

export interface Segments {
  features: Step[];
  head: Step[];
  featureKey: string;
  /** The value forwardHead(…, preLogits = true) returns. */
  pooledKey: string;
  classifierKeys: string[];
}

/**
 * Nodes ordered so that each follows its inputs, keeping the given order where it already does.
 * `given` names values that come from outside (the graph's input).
 */
export function topologicalOrder<N extends GraphNode>(nodes: readonly N[], describe: (n: N) => string, given: ReadonlySet<string> = new Set()): N[] {
  const byKey = new Map(nodes.map((n) => [n.key, n]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const order: N[] = [];
  const visit = (n: N) => {
    if (done.has(n.key)) return;
    if (visiting.has(n.key)) throw new Error(`the graph has a cycle through ${describe(n)}`);
    visiting.add(n.key);
    for (const k of n.inputs) {
      if (given.has(k)) continue;
      const input = byKey.get(k);
      if (!input) throw new Error(`${describe(n)} reads '${k}', which nothing produces`);
      visit(input);
    }
    visiting.delete(n.key);
    done.add(n.key);
    order.push(n);
  };
  for (const n of nodes) visit(n);
  return order;
}

export function ancestors(key: string, inputsOf: (key: string) => readonly string[]): Set<string> {
  const out = new Set<string>();
  const stack = [key];
  while (stack.length) {
    const k = stack.pop()!;
    if (out.has(k)) continue;
    out.add(k);
    stack.push(...inputsOf(k));
  }
  return out;
}

/**
 * Splits the nodes needed for `outputKey` (in execution order) into features — everything up to
 * the value the head starts from — and head. When the head would read more than that one value,
 * everything is features and the head is empty.
 */
export function planSegments<N extends GraphNode>(order: N[], inputKey: string, outputKey: string, rules: SplitRules<N>, toStep: (n: N) => Step): Segments {
  const byKey = new Map(order.map((n) => [n.key, n]));
  const inputsOf = (k: string) => byKey.get(k)?.inputs ?? [];
  const needed = ancestors(outputKey, inputsOf);
  const live = order.filter((n) => needed.has(n.key));
  const consumers = (k: string) => live.filter((n) => n.inputs.includes(k)).length;
  let featureKey = outputKey;
  const start = live.find((n) => rules.startsHead(n) && n.inputs.length >= 1);
  if (start) {
    featureKey = start.inputs[0]!;
    for (let p = byKey.get(featureKey); p && p.inputs.length === 1 && consumers(p.key) === 1 && rules.leadsIntoHead(p, start); p = byKey.get(featureKey)) {
      featureKey = p.inputs[0]!;
    }
  }
  const featureSet = ancestors(featureKey, inputsOf);
  let features = live.filter((n) => featureSet.has(n.key) && n.key !== inputKey);
  let head = live.filter((n) => !featureSet.has(n.key));
  const headValues = new Set([featureKey, ...head.map((n) => n.key)]);
  if (head.some((n) => n.inputs.some((k) => !headValues.has(k)))) {
    featureKey = outputKey;
    features = live.filter((n) => n.key !== inputKey);
    head = [];
  }
  const classifiers = head.filter((n) => rules.isClassifier(n));
  const pooledKey = classifiers.length ? classifiers[0]!.inputs[0]! : head.length ? head[head.length - 1]!.key : featureKey;
  const segments = { features: features.map(toStep), head: head.map(toStep), featureKey, pooledKey, classifierKeys: classifiers.map((n) => n.key) };
  markReleases(segments.features, featureKey);
  markReleases(segments.head, outputKey);
  return segments;
}

/** Fills each step's release list: inputs not read by a later step, other than the segment's output. */
export function markReleases(steps: Step[], outputKey: string): void {
  for (const s of steps) s.release = [];
  const lastUse = new Map<string, number>();
  steps.forEach((s, i) => s.inputs.forEach((k) => lastUse.set(k, i)));
  for (const [k, i] of lastUse) if (k !== outputKey) steps[i]!.release.push(k);
}

/**
 * Runs `steps` from `inputKey` = x until `outputKey` is computed, disposing each intermediate
 * after its last use (never x, a persistent step's output, or a tensor still held under another key).
 */
export function runSteps(steps: readonly Step[], inputKey: string, x: Tensor, outputKey: string, modules: Map<string, Module>, training: boolean): Tensor {
  if (inputKey === outputKey) return x;
  const values = new Map<string, Tensor>([[inputKey, x]]);
  const owned = new Set<Tensor>([x]);
  const release = (key: string) => {
    const t = values.get(key);
    values.delete(key);
    if (t && !owned.has(t) && ![...values.values()].includes(t)) t.dispose();
  };
  for (const step of steps) {
    const inputs = step.inputs.map((k) => values.get(k)!);
    // Each step in its own scope, so views and temporaries it makes are freed with it.
    const out = tidy(() => step.run(inputs, step.module === null ? null : modules.get(step.module) ?? null, training));
    if (step.persistent) owned.add(out);
    values.set(step.key, out);
    if (step.key === outputKey) break;
    for (const k of step.release) release(k);
  }
  const out = values.get(outputKey);
  if (!out) throw new Error(`graph run ended without computing '${outputKey}'`);
  values.delete(outputKey);
  for (const k of [...values.keys()]) if (values.get(k) !== out) release(k);
  return out;
}
