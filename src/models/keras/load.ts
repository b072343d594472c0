// Loading TF.js LayersModels into graft: the topology becomes a KerasModel and the decoded
// weights are copied in by name.
import { readTfjsModel, type TfjsArtifacts } from '../../io/tfjs.js';
import { parseKerasTopology } from './topology.js';
import { KerasModel, type KerasModelOptions } from './keras-model.js';

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

/**
 * Loads a TF.js LayersModel from disk: a folder holding model.json and its shards, or the path of
 * the model.json. Example: `loadTfjsLayersModel('models/my_model')`.
 */
export function loadTfjsLayersModel(folderOrModelJson: string, opts: LoadKerasOptions = {}): KerasModel {
  return kerasModelFromArtifacts(readTfjsModel(folderOrModelJson), opts);
}
