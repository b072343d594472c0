// A Keras model config (what model.json's modelTopology holds for a TF.js LayersModel) as a
// graph: each call of a layer is a node whose inputs are other nodes' outputs, listed in an
// order that computes every input before it is used. Functional models ('Model', 'Functional')
// name their inputs per node in `inbound_nodes`: [[[layer, nodeIndex, tensorIndex, kwargs], …], …];
// Sequential models chain their layers.
import { TfjsFormatError } from '../../io/tfjs.js';
import { topologicalOrder } from './graph-runner.js';

export type KerasConfig = Record<string, unknown>;

export interface KerasLayerSpec {
  name: string;
  className: string;
  config: KerasConfig;
}

/** One call of a layer. Its output is referred to by `key` (`layer#nodeIndex`). */
export interface KerasNode {
  key: string;
  layer: KerasLayerSpec;
  nodeIndex: number;
  inputs: string[];
}

export interface KerasGraph {
  name: string;
  /** Layers in config order. */
  layers: KerasLayerSpec[];
  /** Every node, each after the nodes it reads. */
  nodes: KerasNode[];
  inputs: string[];
  outputs: string[];
  /** Keras's batch_input_shape of each input, e.g. [null, 224, 224, 3]. */
  inputShapes: (number | null)[][];
}

export const nodeKey = (layer: string, nodeIndex: number) => `${layer}#${nodeIndex}`;

type RawLayer = { name?: string; class_name?: string; config?: KerasConfig; inbound_nodes?: unknown };

function layerSpec(raw: RawLayer, source: string): KerasLayerSpec {
  const config = (raw.config ?? {}) as KerasConfig;
  const name = raw.name ?? (config['name'] as string | undefined);
  if (!name || !raw.class_name) throw new TfjsFormatError(`${source}: a layer without name or class_name: ${JSON.stringify(raw).slice(0, 200)}`);
  return { name, className: raw.class_name, config };
}

/** A tensor reference `[layer, nodeIndex, tensorIndex, kwargs?]` as a node key. */
function refKey(ref: unknown, layer: string, source: string): string {
  if (!Array.isArray(ref) || typeof ref[0] !== 'string') {
    throw new TfjsFormatError(`${source}: layer '${layer}' has an inbound reference ${JSON.stringify(ref)}; expected [layer, nodeIndex, tensorIndex, kwargs] (the Keras 2 format TF.js reads)`);
  }
  const [name, nodeIndex = 0, tensorIndex = 0] = ref as [string, number?, number?];
  if (tensorIndex !== 0) throw new TfjsFormatError(`${source}: layer '${layer}' reads output ${tensorIndex} of '${name}'; graft's Keras layers have one output each`);
  return nodeKey(name, nodeIndex);
}

function batchInputShape(spec: KerasLayerSpec): (number | null)[] | null {
  const s = spec.config['batch_input_shape'] ?? spec.config['batch_shape'];
  return Array.isArray(s) ? (s as (number | null)[]) : null;
}

function functionalGraph(config: KerasConfig, source: string): KerasGraph {
  const rawLayers = (config['layers'] ?? []) as RawLayer[];
  const layers = rawLayers.map((l) => layerSpec(l, source));
  const nodes: KerasNode[] = [];
  rawLayers.forEach((raw, i) => {
    const layer = layers[i]!;
    const inbound = raw.inbound_nodes ?? [];
    if (!Array.isArray(inbound)) throw new TfjsFormatError(`${source}: layer '${layer.name}' has inbound_nodes that are not a list`);
    if (inbound.length === 0) {
      if (layer.className !== 'InputLayer') throw new TfjsFormatError(`${source}: layer '${layer.name}' (${layer.className}) has no inbound nodes and is not an InputLayer`);
      nodes.push({ key: nodeKey(layer.name, 0), layer, nodeIndex: 0, inputs: [] });
      return;
    }
    inbound.forEach((node, nodeIndex) => {
      if (!Array.isArray(node)) {
        throw new TfjsFormatError(`${source}: layer '${layer.name}' uses the Keras 3 inbound_nodes format ({ args, kwargs }); save the model with Keras 2 / tf.keras or convert it with tensorflowjs_converter`);
      }
      nodes.push({ key: nodeKey(layer.name, nodeIndex), layer, nodeIndex, inputs: node.map((ref) => refKey(ref, layer.name, source)) });
    });
  });
  const refs = (v: unknown, what: string) => {
    if (!Array.isArray(v) || v.length === 0) throw new TfjsFormatError(`${source}: the model config has no ${what}`);
    return v.map((ref) => refKey(ref, what, source));
  };
  const inputs = refs(config['input_layers'], 'input_layers');
  const outputs = refs(config['output_layers'], 'output_layers');
  const inputShapes = inputs.map((key) => {
    const spec = layers.find((l) => nodeKey(l.name, 0) === key);
    const shape = spec && batchInputShape(spec);
    if (!shape) throw new TfjsFormatError(`${source}: input '${key}' has no batch_input_shape`);
    return shape;
  });
  return { name: (config['name'] as string) ?? 'model', layers, nodes: ordered(nodes, source), inputs, outputs, inputShapes };
}

function ordered(nodes: KerasNode[], source: string): KerasNode[] {
  try {
    return topologicalOrder(nodes, (n) => `layer '${n.layer.name}'`);
  } catch (e) {
    throw new TfjsFormatError(`${source}: ${(e as Error).message}`);
  }
}

function sequentialGraph(config: KerasConfig | RawLayer[], source: string): KerasGraph {
  const rawLayers = (Array.isArray(config) ? config : (config['layers'] ?? [])) as RawLayer[];
  const layers = rawLayers.map((l) => layerSpec(l, source));
  if (layers.length === 0) throw new TfjsFormatError(`${source}: the Sequential model has no layers`);
  const first = layers[0]!;
  const shape = batchInputShape(first);
  if (!shape) throw new TfjsFormatError(`${source}: the first layer '${first.name}' of the Sequential model has no batch_input_shape`);
  const all = first.className === 'InputLayer' ? layers : [{ name: `${first.name}_input`, className: 'InputLayer', config: { batch_input_shape: shape } }, ...layers];
  const nodes = all.map((layer, i): KerasNode => ({ key: nodeKey(layer.name, 0), layer, nodeIndex: 0, inputs: i === 0 ? [] : [nodeKey(all[i - 1]!.name, 0)] }));
  const name = Array.isArray(config) ? 'sequential' : ((config['name'] as string) ?? 'sequential');
  return { name, layers: all, nodes, inputs: [nodes[0]!.key], outputs: [nodes[nodes.length - 1]!.key], inputShapes: [shape] };
}

/**
 * The graph of a LayersModel topology: either Keras's { model_config, keras_version, … } as
 * tensorflowjs_converter writes it, or the model config itself as TF.js's own save writes it.
 */
export function parseKerasTopology(topology: Record<string, unknown>, source: string): KerasGraph {
  const modelConfig = (topology['model_config'] ?? topology) as { class_name?: string; config?: KerasConfig | RawLayer[] };
  const cls = modelConfig.class_name;
  if (topology['node'] && !cls) {
    throw new TfjsFormatError(`${source} is a TF.js graph model (a TensorFlow GraphDef), not a LayersModel; load it with loadTfjsGraphModel`);
  }
  if (!modelConfig.config) throw new TfjsFormatError(`${source}: modelTopology has no model config (expected { class_name, config })`);
  if (cls === 'Sequential') return sequentialGraph(modelConfig.config, source);
  if (cls === 'Model' || cls === 'Functional') return functionalGraph(modelConfig.config as KerasConfig, source);
  throw new TfjsFormatError(`${source}: model class '${String(cls)}' is not a Keras Model, Functional or Sequential model`);
}
