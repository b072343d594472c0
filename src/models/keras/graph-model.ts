// A TF.js graph model (format 'graph-model': a frozen TensorFlow GraphDef) run by graft. Each
// convolution and matmul becomes a graft Conv2d / Linear named after its TensorFlow name scope
// ('MobilenetV2.expanded_conv_1.project', 'dense'; wrapper scopes such as
// StatefulPartitionedCall dropped), so adapters target them as in any graft model. Constants the
// ops compute with (not weights, not axes) are buffers of the child 'constants'.
// Features, head, the left-out final softmax and the classifier reset are KerasBase's, as for
// KerasModel.
import { Module, type LoadResult } from '../../nn/module.js';
import { Conv2d, Linear, ModuleDict } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Generator } from '../../tensor/random.js';
import { tidy } from '../../tensor/memory.js';
import type { PreprocessConfig } from '../../data/preprocess.js';
import { weightTensor, TfjsFormatError, type TfjsModelJson, type TfjsWeight } from '../../io/tfjs.js';
import { buildTfOp, hasTfOpBuilder, SUPPORTED_TF_OPS, type TfNodeDef, type WeightBinding } from './graph-ops.js';
import { planSegments, topologicalOrder, type Step } from './graph-runner.js';
import { KerasBase, type ImportedPlan } from './keras-base.js';
import type { KerasModelOptions } from './keras-model.js';

export interface TfGraph {
  nodes: TfNodeDef[];
  /** Output node names. */
  outputs: string[];
}

/** The GraphDef of a graph-model model.json, with its outputs from the signature (or the graph's sinks). */
export function parseTfGraph(modelJson: TfjsModelJson, source: string): TfGraph {
  const nodes = modelJson.modelTopology['node'] as TfNodeDef[] | undefined;
  if (!Array.isArray(nodes)) throw new TfjsFormatError(`${source}: modelTopology has no GraphDef node list; is this a LayersModel? Load it with loadTfjsLayersModel`);
  const signature = (modelJson as { userDefinedMetadata?: { signature?: { outputs?: Record<string, unknown> } } }).userDefinedMetadata?.signature;
  let outputs = Object.keys(signature?.outputs ?? {}).map((k) => k.replace(/:0$/, ''));
  if (outputs.length === 0) {
    const read = new Set(nodes.flatMap((n) => (n.input ?? []).map(dataInputName)));
    outputs = nodes.filter((n) => n.op !== 'Const' && !read.has(n.name)).map((n) => n.name);
  }
  return { nodes, outputs };
}

function dataInputName(ref: string): string {
  const name = ref.replace(/^\^/, '');
  const m = /^(.*):(\d+)$/.exec(name);
  if (m && m[2] !== '0') throw new Error(`graph input '${ref}' reads output ${m[2]} of a node; graft imports single-output ops`);
  return m ? m[1]! : name;
}

/** Holds a graph's constants as buffers, by name. */
class GraphConstants extends ModuleDict {
  private readonly values = new Map<string, Tensor>();
  add(name: string, t: Tensor): void {
    this.values.set(name, this.buffer(name, t));
  }
  value(name: string): Tensor {
    return this.values.get(name)!;
  }
}

const WRAPPER_SCOPE = /^(StatefulPartitionedCall|PartitionedCall|predict|Func)(_\d+)?$/;

/** The name scope of an op with weights: the scope its node shares with its first weight, else the node's own scope. */
function weightScope(node: string, weight: string | undefined): string[] {
  const a = node.split('/').slice(0, -1);
  const b = (weight ?? '').split('/').slice(0, -1);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const clean = (s: string[]) => s.filter((p) => !WRAPPER_SCOPE.test(p)).map((p) => p.replace(/\./g, '_'));
  const shared = clean(a.slice(0, i));
  return shared.length ? shared : clean(a).length ? clean(a) : [node.replace(/[/.]/g, '_')];
}

/** Unique dotted module paths, without the scopes every path starts with. */
function modulePaths(scopes: string[][], reserved: (top: string) => boolean): string[] {
  let common = 0;
  while (scopes.every((s) => s.length > common + 1 && s[common] === scopes[0]![common])) common++;
  const paths = scopes.map((s) => s.slice(common));
  const taken = new Set<string>();
  const prefixes = new Set(paths.flatMap((p) => p.slice(0, -1).map((_, i) => p.slice(0, i + 1).join('.'))));
  return paths.map((p) => {
    const parts = [...p];
    if (parts.length === 1) while (reserved(parts[0]!)) parts[0] += '_';
    let path = parts.join('.');
    for (let n = 1; taken.has(path) || prefixes.has(path); n++) path = `${parts.join('.')}_${n}`;
    taken.add(path);
    return path;
  });
}

type GraphPlan = ImportedPlan & {
  bindings: { path: string; binding: WeightBinding }[];
  /** Const node → buffer name in `constants`. */
  constants: Map<string, string>;
  inlineConstants: Set<string>;
  staticConsts: Set<string>;
};

export class TfGraphModel extends KerasBase<GraphPlan> {
  readonly family: string;
  readonly numFeatures: number;
  readonly preprocess: PreprocessConfig;
  readonly inputShape: number[];
  readonly outputActivation: 'softmax' | null;
  /** TensorFlow node name → path of the graft module holding its weights. */
  readonly modulePaths = new Map<string, string>();
  protected readonly plan: GraphPlan;

  constructor(graph: TfGraph, consts: Map<string, TfjsWeight>, opts: KerasModelOptions & { source?: string } = {}) {
    super();
    const source = opts.source ?? 'graph model';
    const byName = new Map(graph.nodes.map((n) => [n.name, n]));
    const bad = graph.nodes.filter((n) => n.op !== 'Const' && n.op !== 'Placeholder' && !hasTfOpBuilder(n.op));
    if (bad.length) throw new Error(`${source}: graft cannot import ${bad.map((n) => `node '${n.name}' (op ${n.op})`).join(', ')}. Supported ops: Placeholder, Const, ${SUPPORTED_TF_OPS.join(', ')}`);
    const placeholders = graph.nodes.filter((n) => n.op === 'Placeholder');
    if (placeholders.length !== 1 || graph.outputs.length !== 1) throw new Error(`${source}: the graph has ${placeholders.length} inputs and ${graph.outputs.length} outputs; graft's vision models take one image and give one output`);
    const input = placeholders[0]!;
    const dims = (input.attr?.['shape']?.shape?.dim ?? []).map((d) => Number(d.size));
    if (dims.length !== 4 || !(dims[3]! > 0)) throw new Error(`${source}: input '${input.name}' has shape [${dims}]; expected (B, H, W, C) with known C`);
    const size = opts.imageSize === undefined ? [dims[1]!, dims[2]!] : typeof opts.imageSize === 'number' ? [opts.imageSize, opts.imageSize] : opts.imageSize;
    if (!(size[0]! > 0 && size[1]! > 0)) throw new Error(`${source}: the graph leaves its input size open; pass { imageSize }`);
    const inputShape = [dims[3]!, size[0]!, size[1]!];

    const isConst = (name: string) => byName.get(name)?.op === 'Const';
    const constValue = (name: string): TfjsWeight => {
      const w = consts.get(name) ?? inlineConst(byName.get(name));
      if (!w) throw new TfjsFormatError(`${source}: constant '${name}' is neither in the weights manifest nor inline in the graph`);
      return w;
    };
    const outputKey = dataInputName(graph.outputs[0]!);
    let softmaxKey: string | null = null;
    for (let k: string | undefined = outputKey; k; ) {
      const n = byName.get(k);
      if (n?.op === 'Softmax') softmaxKey = n.name;
      k = n?.op === 'Identity' ? dataInputName(n.input![0]!) : undefined;
    }
    const strip = !opts.keepOutputActivation && softmaxKey !== null;

    const built = graph.nodes.filter((n) => n.op !== 'Const' && n.op !== 'Placeholder').map((node) => {
      const op = buildTfOp({ node, inputs: (node.input ?? []).filter((r) => !r.startsWith('^')).map(dataInputName), isConst, constValue, generator: opts.generator });
      return { node, op };
    });
    const weighted = built.filter((b) => b.op.module);
    const paths = modulePaths(weighted.map((b) => weightScope(b.node.name, b.op.weights[0]?.constName)), (top) => top in this || top === 'constants');
    weighted.forEach((b, i) => this.modulePaths.set(b.node.name, paths[i]!));
    const constants = new Map<string, string>();
    for (const { op } of built) for (const k of op.inputs) if (isConst(k)) constants.set(k, k.split('/').filter((p) => !WRAPPER_SCOPE.test(p)).join('_').replace(/\./g, '_'));

    type Node = { key: string; inputs: string[]; op: string; step: Step };
    const nodes: Node[] = built.map(({ node, op }) => ({
      key: node.name, inputs: op.inputs, op: node.op,
      step: {
        key: node.name, inputs: op.inputs, module: this.modulePaths.get(node.name) ?? null, release: [],
        run: strip && node.name === softmaxKey ? ([x]) => x! : (xs, m) => op.run(xs, m),
      },
    }));
    for (const [name, buffer] of constants) {
      nodes.push({ key: name, inputs: [], op: 'Const', step: { key: name, inputs: [], module: 'constants', release: [], persistent: true, run: (_, m) => (m as GraphConstants).value(buffer) } });
    }
    const order = topologicalOrder(nodes, (n) => `node '${n.key}'`, new Set([input.name]));
    const matmul = (n: Node) => n.op === 'MatMul' || n.op === '_FusedMatMul';
    const segments = planSegments(order, input.name, outputKey, {
      startsHead: matmul,
      leadsIntoHead: (n) => ['Squeeze', 'Reshape', 'Identity', 'AvgPool', 'MaxPool', 'Mean'].includes(n.op),
      isClassifier: matmul,
    }, (n) => n.step);

    this.family = opts.family ?? 'tfjs-graph';
    this.inputShape = inputShape;
    this.outputActivation = strip ? 'softmax' : null;
    this.preprocess = { inputSize: inputShape as [number, number, number], mean: [0, 0, 0], std: [1, 1, 1], interpolation: 'bilinear', cropPct: 1, ...opts.preprocess };
    this.plan = {
      ...segments, inputKey: input.name, outputKey,
      bindings: weighted.flatMap((b) => b.op.weights.map((binding) => ({ path: this.modulePaths.get(b.node.name)!, binding }))),
      constants, inlineConstants: new Set([...constants.keys()].filter((k) => !consts.has(k))),
      staticConsts: new Set(built.flatMap((b) => b.op.staticConsts)), headless: false,
    };
    const store = new GraphConstants();
    for (const [name, buffer] of constants) store.add(buffer, weightTensor(constValue(name)));
    this.module('constants', store);
    const scopes = new Map<string, ModuleDict>();
    weighted.forEach((b, i) => this.attach(paths[i]!, b.op.module!, scopes));
    const classifier = segments.classifierKeys[0];
    const lastConv = segments.features.map((s) => (s.module ? this.getModule(s.module) : null)).filter((m) => m instanceof Conv2d).pop() as Conv2d | undefined;
    this.numFeatures = classifier ? (this.getModule(this.modulePaths.get(classifier)!) as Linear).inFeatures : lastConv?.outChannels ?? inputShape[0]!;
  }

  private attach(path: string, m: Module, scopes: Map<string, ModuleDict>): void {
    const parts = path.split('.');
    let owner: ModuleDict | null = null;
    for (let i = 0; i < parts.length - 1; i++) {
      const prefix = parts.slice(0, i + 1).join('.');
      let scope = scopes.get(prefix);
      if (!scope) {
        scope = new ModuleDict();
        scopes.set(prefix, scope);
        if (owner) owner.set(parts[i]!, scope);
        else this.module(parts[i]!, scope);
      }
      owner = scope;
    }
    if (owner) owner.set(parts[parts.length - 1]!, m);
    else this.module(parts[0]!, m);
  }

  get numClasses(): number {
    const path = this.plan.headless ? null : this.classifierModule();
    return path ? (this.getModule(path) as Linear).outFeatures : 0;
  }

  protected readonly classifierKind = 'MatMul';

  protected classifierModule(): string | null {
    const last = this.plan.classifierKeys[this.plan.classifierKeys.length - 1];
    return last ? this.modulePaths.get(last)! : null;
  }

  protected freshClassifier(old: Linear, numClasses: number, generator?: Generator): Linear {
    return new Linear(old.inFeatures, numClasses, { bias: old.bias !== null, generator });
  }

  /**
   * Copies the graph's weight constants into its layers (in graft's layouts) and constants.
   * Strict by default: a constant the graph needs but the manifest lacks, or a manifest entry the
   * graph never reads, is an error.
   */
  loadGraphWeights(weights: Map<string, TfjsWeight>, opts: { strict?: boolean; what?: string } = {}): LoadResult {
    const what = opts.what ?? 'the graph weights';
    const strict = opts.strict ?? true;
    const used = new Set([...this.plan.staticConsts, ...this.plan.constants.keys(), ...this.plan.bindings.map((b) => b.binding.constName)]);
    const unread = [...weights.keys()].filter((k) => !used.has(k));
    if (strict && unread.length) throw new TfjsFormatError(`loading ${what}: the manifest has weights no graph node reads: ${unread.join(', ')}`);
    return tidy(() => {
      const state = new Map<string, Tensor>();
      for (const { path, binding } of this.plan.bindings) {
        const w = weights.get(binding.constName);
        if (w) state.set(`${path}.${binding.param}`, binding.toGraft(weightTensor(w)));
      }
      const store = this.getModule('constants') as GraphConstants;
      for (const [name, buffer] of this.plan.constants) {
        const w = weights.get(name);
        // A constant stored inline in the graph keeps the value it was built with.
        if (w || this.plan.inlineConstants.has(name)) state.set(`constants.${buffer}`, w ? weightTensor(w) : store.value(buffer));
      }
      return this.loadStateDict(state, { strict, what });
    });
  }
}

/** A small constant stored in the graph itself (intVal / floatVal / int64Val). */
function inlineConst(node: TfNodeDef | undefined): TfjsWeight | undefined {
  const t = node?.attr?.['value']?.tensor;
  const values = t?.intVal ?? t?.int64Val?.map(Number) ?? t?.floatVal;
  if (!node || !t || !values) return undefined;
  const shape = (t.tensorShape?.dim ?? []).map((d) => Number(d.size));
  const n = shape.reduce((p, d) => p * d, 1);
  const data = t.floatVal ? new Float32Array(n) : new Int32Array(n);
  for (let i = 0; i < n; i++) data[i] = values.length === 1 ? values[0]! : values[i]!;
  return { name: node.name, shape, data };
}
