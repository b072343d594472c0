// Loading TF.js models into graft: a LayersModel's topology becomes a KerasModel, a graph
// model's GraphDef a TfGraphModel, and the decoded weights are copied in by name.
import { readTfjsModel, type TfjsArtifacts } from '../../io/tfjs.js';
import { parseKerasTopology } from './topology.js';
import { KerasModel, type KerasModelOptions } from './keras-model.js';
import { parseTfGraph, TfGraphModel } from './graph-model.js';

export interface LoadKerasOptions extends KerasModelOptions {
  /** Replace the classifier (the last Dense) with a fresh one of this width; 0 removes it. */
  numClasses?: number;
}

/** A KerasModel with the artifacts' weights loaded (strictly: every weight matched, none left over). */
export function kerasModelFromArtifacts(artifacts: TfjsArtifacts, opts: LoadKerasOptions = {}): KerasModel {
  const graph = parseKerasTopology(artifacts.modelJson.modelTopology, artifacts.source);
  const model = new KerasModel(graph, { ...opts, source: artifacts.source });
  model.loadKerasWeights(artifacts.weights, { what: `the weights of ${artifacts.source}` });
  if (opts.numClasses !== undefined && opts.numClasses !== model.numClasses) model.resetClassifier(opts.numClasses, opts.generator);
  return model.eval();
}

/** A TfGraphModel with the artifacts' weights loaded (strictly). */
export function tfGraphModelFromArtifacts(artifacts: TfjsArtifacts, opts: LoadKerasOptions = {}): TfGraphModel {
  const model = new TfGraphModel(parseTfGraph(artifacts.modelJson, artifacts.source), artifacts.weights, { ...opts, source: artifacts.source });
  model.loadGraphWeights(artifacts.weights, { what: `the weights of ${artifacts.source}` });
  if (opts.numClasses !== undefined && opts.numClasses !== model.numClasses) model.resetClassifier(opts.numClasses, opts.generator);
  return model.eval();
}

/** Either kind of TF.js model, by the model.json's format (a GraphDef node list means a graph model). */
export function modelFromArtifacts(artifacts: TfjsArtifacts, opts: LoadKerasOptions = {}): KerasModel | TfGraphModel {
  const graph = artifacts.modelJson.format === 'graph-model' || Array.isArray(artifacts.modelJson.modelTopology['node']);
  return graph ? tfGraphModelFromArtifacts(artifacts, opts) : kerasModelFromArtifacts(artifacts, opts);
}

/**
 * Loads a TF.js graph model (format 'graph-model') from a folder holding model.json and its
 * shards, or the path of the model.json.
 */
export function loadTfjsGraphModel(folderOrModelJson: string, opts: LoadKerasOptions = {}): TfGraphModel {
  return tfGraphModelFromArtifacts(readTfjsModel(folderOrModelJson), opts);
}

/**
 * Loads a TF.js LayersModel from disk: a folder holding model.json and its shards, or the path of
 * the model.json. Example: `loadTfjsLayersModel('models/my_model')`.
 */
export function loadTfjsLayersModel(folderOrModelJson: string, opts: LoadKerasOptions = {}): KerasModel {
  return kerasModelFromArtifacts(readTfjsModel(folderOrModelJson), opts);
}
