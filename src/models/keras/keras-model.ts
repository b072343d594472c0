// A Keras LayersModel run by graft: one graft layer per Keras layer, registered under the Keras
// layer's name, and the layer calls executed in graph order (running, predict and the classifier
// reset are KerasBase's). Images are NCHW (B, C, H, W).
//
// forwardFeatures runs up to the feature map the head starts from — the input of the first
// Flatten / global pooling / Dense, moved before a pooling layer that only feeds that Flatten —
// and forwardHead runs the rest. A classifier's final softmax is left out of forward(), which
// returns logits as every graft model does; predict() applies it and equals Keras's output.
import type { LoadResult, Module } from '../../nn/module.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import { tidy } from '../../tensor/memory.js';
import { contiguous, permute } from '../../ops/layout.js';
import { tensor } from '../../ops/creation.js';
import type { PreprocessConfig } from '../../data/preprocess.js';
import { weightTensor, type TfjsWeight } from '../../io/tfjs.js';
import type { KerasGraph, KerasLayerSpec, KerasNode } from './topology.js';
import { buildKerasLayer, hasKerasBuilder, SUPPORTED_KERAS_LAYERS, type BuiltLayer, type SampleShape } from './layer-table.js';
import { isKerasWeighted, KerasDense } from './weighted-layers.js';
import { markReleases, planSegments, type Step } from './graph-runner.js';
import { convBatchNormFolded, type Linear } from '../../nn/layers.js';
import { KerasBase, type ImportedPlan } from './keras-base.js';

export interface KerasModelOptions {
  /** Input size (square, or [H, W]) when it differs from the topology's or the topology leaves it open. */
  imageSize?: number | [number, number];
  /** Keep the classifier's softmax in forward() (Keras's own output) instead of returning logits. */
  keepOutputActivation?: boolean;
  /** Preprocessing the model expects; by default pixels / 255 at the input size, no mean or std. */
  preprocess?: Partial<PreprocessConfig>;
  family?: string;
  /** Initialises weights before loading (and layers created by resetClassifier). */
  generator?: Generator;
}

const HEAD_START = new Set(['Flatten', 'GlobalAveragePooling2D', 'GlobalMaxPooling2D', 'Dense']);
const POOLING = new Set(['AveragePooling2D', 'MaxPooling2D']);

function unsupportedLayersError(graph: KerasGraph, source: string): Error | null {
  const bad = graph.layers.filter((l) => l.className !== 'InputLayer' && !hasKerasBuilder(l.className));
  if (bad.length === 0) return null;
  const list = bad.map((l) => `'${l.name}' (class ${l.className})`).join(', ');
  return new Error(`${source}: graft cannot import layer ${list}. Supported layer classes: ${SUPPORTED_KERAS_LAYERS.join(', ')}`);
}

/** Per-sample input shape in graft's layout from Keras's batch_input_shape. */
function inputSampleShape(batchShape: (number | null)[], imageSize: KerasModelOptions['imageSize'], source: string): number[] {
  if (batchShape.length === 2 && batchShape[1]) return [batchShape[1]];
  if (batchShape.length !== 4 || !batchShape[3]) throw new Error(`${source}: input shape ${JSON.stringify(batchShape)} is neither (B, H, W, C) with known C nor (B, F)`);
  const [h, w] = imageSize === undefined ? [batchShape[1], batchShape[2]] : typeof imageSize === 'number' ? [imageSize, imageSize] : imageSize;
  if (!h || !w) throw new Error(`${source}: the model leaves its input size open (${JSON.stringify(batchShape)}); pass { imageSize }`);
  return [batchShape[3], h, w];
}

/** One layer call as the graph describes it, for exporters: the layer as built (a stripped final softmax left out). */
export interface KerasCall {
  key: string;
  inputs: string[];
  layer: KerasLayerSpec;
  /** Name of the child module holding the layer's weights, or null. */
  module: string | null;
}

type KerasPlan = ImportedPlan & {
  shapes: Map<string, number[]>;
  /** Keras name of the classifier layer (the last Dense of the head). */
  classifier: string | null;
};

export class KerasModel extends KerasBase<KerasPlan> {
  readonly family: string;
  readonly numFeatures: number;
  readonly preprocess: PreprocessConfig;
  readonly inputShape: number[];
  readonly outputActivation: 'softmax' | null;
  /** Keras layer name → name of the graft child module holding its weights. */
  readonly moduleNames = new Map<string, string>();
  /** Every layer call in graph order, as built (replaceHeadWithLinear rewrites the head's). */
  private readonly calls: KerasCall[] = [];
  protected readonly plan: KerasPlan;

  constructor(graph: KerasGraph, opts: KerasModelOptions & { source?: string } = {}) {
    super();
    const source = opts.source ?? graph.name;
    const unsupported = unsupportedLayersError(graph, source);
    if (unsupported) throw unsupported;
    if (graph.inputs.length !== 1 || graph.outputs.length !== 1) {
      throw new Error(`${source}: the model has ${graph.inputs.length} inputs and ${graph.outputs.length} outputs; graft's vision models take one image and give one output`);
    }
    const inputKey = graph.inputs[0]!;
    const outputKey = graph.outputs[0]!;
    const byKey = new Map(graph.nodes.map((n) => [n.key, n]));
    const outputNode = byKey.get(outputKey)!;
    const strip = !opts.keepOutputActivation && finalSoftmax(outputNode.layer);

    // Build each layer at its first call, and infer every node's per-sample shape.
    const shapes = new Map<string, number[]>();
    const built = new Map<string, BuiltLayer>();
    const inputShape = inputSampleShape(graph.inputShapes[0]!, opts.imageSize, source);
    for (const node of graph.nodes) {
      if (node.layer.className === 'InputLayer') {
        shapes.set(node.key, inputShape);
        continue;
      }
      const ins: SampleShape[] = node.inputs.map((k) => shapes.get(k)!);
      let layer = built.get(node.layer.name);
      const spec = strip && node.layer === outputNode.layer ? withoutSoftmax(node.layer) : node.layer;
      if (!layer) {
        layer = buildKerasLayer(spec, ins, opts.generator);
        built.set(node.layer.name, layer);
      }
      this.calls.push({ key: node.key, inputs: [...node.inputs], layer: spec, module: null });
      shapes.set(node.key, layer.outputShape(ins));
    }

    // Children are named after Keras layers; a name that would shadow a property of this model
    // (or contains the path separator '.') gets a suffix / replacement.
    for (const [name, layer] of built) {
      if (!layer.module) continue;
      let moduleName = name.replace(/\./g, '_');
      while (moduleName in this) moduleName += '_';
      this.moduleNames.set(name, moduleName);
    }
    const classOf = (n: KerasNode) => n.layer.className;
    const layerOfKey = new Map<string, BuiltLayer>();
    const segments = planSegments(graph.nodes, inputKey, outputKey, {
      startsHead: (n) => HEAD_START.has(classOf(n)),
      leadsIntoHead: (n, start) => POOLING.has(classOf(n)) && classOf(start) === 'Flatten',
      isClassifier: (n) => classOf(n) === 'Dense',
    }, (n) => {
      const layer = built.get(n.layer.name)!;
      layerOfKey.set(n.key, layer);
      return { key: n.key, inputs: n.inputs, module: this.moduleNames.get(n.layer.name) ?? null, run: (xs, m, training) => layer.apply(xs, m, training), release: [] };
    });
    this.foldConvBatchNorm(segments.features, segments.featureKey, layerOfKey);

    this.family = opts.family ?? 'keras';
    this.inputShape = inputShape;
    this.outputActivation = strip ? 'softmax' : null;
    this.preprocess = {
      inputSize: [inputShape[0]!, inputShape[1] ?? 1, inputShape[2] ?? 1] as [number, number, number],
      mean: [0, 0, 0],
      std: [1, 1, 1],
      interpolation: 'bilinear',
      cropPct: 1,
      ...opts.preprocess,
    };
    this.numFeatures = shapes.get(segments.pooledKey)![0]!;
    const lastClassifier = segments.classifierKeys[segments.classifierKeys.length - 1];
    this.plan = { ...segments, inputKey, outputKey, shapes, classifier: lastClassifier ? byKey.get(lastClassifier)!.layer.name : null, headless: false };
    for (const [name, layer] of built) if (layer.module) this.module(this.moduleNames.get(name)!, layer.module);
    for (const c of this.calls) c.module = this.moduleNames.get(c.layer.name) ?? null;
  }

  /**
   * The layer calls that compute the output, in graph order, with the input's key and every
   * value's per-sample shape ([C, H, W] or [F]): the graph as Keras describes it (no folding),
   * for exporters.
   */
  graph(): { inputKey: string; outputKey: string; calls: KerasCall[]; shapeOf(key: string): readonly number[] } {
    const { inputKey, outputKey, shapes } = this.plan;
    const needed = new Set([outputKey]);
    for (let i = this.calls.length - 1; i >= 0; i--) {
      const c = this.calls[i]!;
      if (needed.has(c.key)) for (const k of c.inputs) needed.add(k);
    }
    return {
      inputKey, outputKey,
      calls: this.calls.filter((c) => needed.has(c.key)).map((c) => ({ ...c, inputs: [...c.inputs] })),
      shapeOf: (key) => {
        const s = shapes.get(key);
        if (!s) throw new Error(`${this.family}: no value '${key}' in the graph`);
        return s;
      },
    };
  }

  /**
   * Each convolution (without activation) whose only reader is a BatchNormalization becomes one
   * step that runs both: folded into one convolution while the BatchNorm uses running statistics
   * (eval mode, or frozen under adapter training) and the conv carries no unmerged adapter,
   * else one after the other as before. When the BatchNorm's only reader is a ReLU or ReLU6
   * layer, that step takes the activation too, which then runs inside the folded convolution
   * (conv2dAct). A ZeroPadding2D read only by such a 'valid' convolution joins the step as the
   * folded convolution's padding (conv2d's paddingEnd for the bottom and right), so no padded copy
   * of the map is made.
   */
  private foldConvBatchNorm(steps: Step[], outputKey: string, layerOfKey: Map<string, BuiltLayer>): void {
    const readers = new Map<string, number>();
    for (const s of steps) for (const k of s.inputs) readers.set(k, (readers.get(k) ?? 0) + 1);
    const byKey = new Map(steps.map((s, i) => [s.key, i]));
    const child = (name: string | null) => (name === null ? null : this.childModule(name));
    const drop = new Set<number>();
    steps.forEach((bnStep, i) => {
      const bnLayer = layerOfKey.get(bnStep.key);
      if (!bnLayer?.isBatchNorm || bnStep.inputs.length !== 1) return;
      const convKey = bnStep.inputs[0]!;
      const j = byKey.get(convKey);
      const convStep = j === undefined ? undefined : steps[j];
      const convLayer = layerOfKey.get(convKey);
      if (!convStep || !convLayer?.convInput || readers.get(convKey) !== 1 || convKey === outputKey) return;
      const convInput = convLayer.convInput.bind(convLayer);
      const bnModule = bnStep.module;
      // A ZeroPadding2D read only by this 'valid' convolution becomes the folded convolution's padding.
      const padKey = convStep.inputs[0]!;
      const p = convStep.inputs.length === 1 ? byKey.get(padKey) : undefined;
      const padLayer = layerOfKey.get(padKey);
      const zeroPads = p !== undefined && convLayer.validWindow && readers.get(padKey) === 1 && padKey !== outputKey ? padLayer?.zeroPads : undefined;
      const inputs = zeroPads ? steps[p!]!.inputs : convStep.inputs;
      const window = zeroPads ? { padding: [zeroPads[0], zeroPads[2]] as [number, number], paddingEnd: [zeroPads[1], zeroPads[3]] as [number, number] } : undefined;
      const unfolded = (xs: Tensor[], m: Module | null, training: boolean) => convLayer.apply(zeroPads ? [padLayer!.apply(xs, null, training)] : xs, m, training);
      steps[i] = {
        key: bnStep.key, inputs, module: convStep.module, release: [],
        run: (xs, m, training) => {
          const bn = child(bnModule);
          const folded = convBatchNormFolded(m, bn, convInput(xs[0]!), null, window);
          return folded ?? bnLayer.apply([unfolded(xs, m, training)], bn, training);
        },
      };
      drop.add(j!);
      if (zeroPads) drop.add(p!);
      // The activation reading the BatchNorm alone, when it is ReLU / ReLU6.
      if (readers.get(bnStep.key) !== 1 || bnStep.key === outputKey) return;
      const k = steps.findIndex((s) => s.inputs.length === 1 && s.inputs[0] === bnStep.key);
      const actStep = k < 0 ? undefined : steps[k];
      const actLayer = actStep ? layerOfKey.get(actStep.key) : undefined;
      const act = actLayer?.fusableActivation;
      if (!actStep || !actLayer || !act) return;
      steps[k] = {
        key: actStep.key, inputs, module: convStep.module, release: [],
        run: (xs, m, training) => {
          const bn = child(bnModule);
          const fused = convBatchNormFolded(m, bn, convInput(xs[0]!), act, window);
          return fused ?? actLayer.apply([bnLayer.apply([unfolded(xs, m, training)], bn, training)], null, training);
        },
      };
      drop.add(i);
    });
    const kept = steps.filter((_, i) => !drop.has(i));
    steps.splice(0, steps.length, ...kept);
    markReleases(steps, outputKey);
  }

  /** Output width (classes for a classifier). */
  get numClasses(): number {
    return this.plan.headless ? 0 : this.plan.shapes.get(this.plan.outputKey)![0]!;
  }

  protected readonly classifierKind = 'Dense';

  protected classifierModule(): string | null {
    return this.plan.classifier ? this.moduleNames.get(this.plan.classifier)! : null;
  }

  protected freshClassifier(old: Linear, numClasses: number, generator?: Generator): Linear {
    return new KerasDense(old.inFeatures, numClasses, { bias: true, generator });
  }

  /** The classifier's output width is recorded in the per-step shapes (and the output's, when an activation follows). */
  protected override classifierReplaced(moduleName: string, numClasses: number): void {
    for (const s of this.plan.head) if (s.module === moduleName) this.plan.shapes.set(s.key, [numClasses]);
    const out = this.plan.head.find((s) => s.key === this.plan.outputKey);
    if (out && out.module !== moduleName) this.plan.shapes.set(out.key, [numClasses]);
  }

  /**
   * Replaces the whole classifier head after the pooled features (every Dense and Dropout after
   * global pooling / Flatten) with one new Dense `classifier`: pooled features → `numClasses`.
   * For models whose pretrained head is a task-specific MLP (nsfwjs: 1280 → 256 → 128 → 5), so
   * that a new task sees the backbone's features rather than the old task's bottleneck.
   * Returns the new layer's module name.
   */
  replaceHeadWithLinear(numClasses: number, generator?: Generator): string {
    if (numClasses < 1) throw new Error(`${this.family}: replaceHeadWithLinear needs at least one class, got ${numClasses}`);
    const { head, pooledKey } = this.plan;
    const cut = head.findIndex((s) => s.key === pooledKey);
    const kept = head.slice(0, cut + 1).map((s) => ({ ...s, release: [] as string[] }));
    for (const s of head.slice(cut + 1)) {
      if (!s.module) continue;
      const m = this.getModule(s.module);
      this.removeChild(s.module);
      for (const [, t] of m.namedParameters()) t.dispose();
      for (const [, t] of m.namedBuffers()) t.dispose();
    }
    const name = 'classifier';
    if (this.children().some(([n]) => n === name)) this.removeChild(name);
    this.module(name, new KerasDense(this.numFeatures, numClasses, { bias: true, generator }));
    this.moduleNames.set(name, name);
    const key = `${name}#0`;
    this.calls.splice(0, this.calls.length, ...this.calls.filter((c) => c.key !== key));
    this.calls.push({ key, inputs: [pooledKey], module: name, layer: { name, className: 'Dense', config: { units: numClasses, activation: 'linear', use_bias: true } } });
    const step = { key, inputs: [pooledKey], module: name, run: (xs: Tensor[], m: Module | null) => (m as KerasDense).forward(xs[0]!), release: [] as string[] };
    const steps = [...kept, step];
    // Free each intermediate after its last use, as planSegments does.
    const lastUse = new Map<string, number>();
    steps.forEach((s, i) => s.inputs.forEach((k) => lastUse.set(k, i)));
    for (const [k, i] of lastUse) steps[i]!.release.push(k);
    this.plan.head.splice(0, head.length, ...steps);
    this.plan.shapes.set(key, [numClasses]);
    Object.assign(this.plan, { outputKey: key, classifier: name, headless: false, classifierKeys: [key] });
    return name;
  }

  /**
   * Copies Keras weights ('Conv1/kernel', …) into the layers of the same name, converting each to
   * graft's layout. Strict by default: one error lists every missing, unexpected and mismatched name.
   */
  loadKerasWeights(weights: Map<string, TfjsWeight>, opts: { strict?: boolean; what?: string } = {}): LoadResult {
    return tidy(() => {
      const state = new Map<string, Tensor>();
      for (const [name, w] of weights) {
        const { layer, param } = this.splitWeightName(name);
        const moduleName = this.moduleNames.get(layer) ?? layer;
        let value = weightTensor(w);
        const module = this.children().find(([n]) => n === moduleName)?.[1];
        if (module && isKerasWeighted(module)) value = module.fromKerasLayout(param, value);
        state.set(`${moduleName}.${param}`, value);
      }
      return this.loadStateDict(state, { strict: opts.strict ?? true, what: opts.what ?? 'the Keras weights' });
    });
  }

  /** 'scope/layer/param:0' → the layer this model knows and the parameter name. */
  private splitWeightName(name: string): { layer: string; param: string } {
    const parts = name.replace(/:\d+$/, '').split('/');
    const param = parts.pop()!;
    const full = parts.join('/');
    const last = parts[parts.length - 1] ?? '';
    return { layer: this.moduleNames.has(full) || !this.moduleNames.has(last) ? full : last, param };
  }
}

/**
 * Images stored NHWC on the host (TF.js / Keras order, e.g. decoded pixels / 255) as a graft
 * (B, C, H, W) tensor.
 */
export function tensorFromNhwc(data: Float32Array, shape: readonly [number, number, number, number]): Tensor {
  const nhwc = tensor(data, shape);
  const out = contiguous(permute(nhwc, [0, 3, 1, 2]));
  nhwc.dispose();
  return out;
}

/** True when the layer ends in a softmax over classes (Dense(activation='softmax'), Activation, Softmax). */
function finalSoftmax(layer: KerasLayerSpec): boolean {
  const c = layer.config;
  if (layer.className === 'Dense' || layer.className === 'Activation') return c['activation'] === 'softmax';
  return layer.className === 'Softmax' && (c['axis'] ?? -1) === -1;
}

/** The final layer without its softmax: a linear Dense, or an identity Activation. */
function withoutSoftmax(spec: KerasLayerSpec): KerasLayerSpec {
  if (spec.className === 'Dense') return { ...spec, config: { ...spec.config, activation: 'linear' } };
  return { ...spec, className: 'Activation', config: { ...spec.config, activation: 'linear' } };
}
