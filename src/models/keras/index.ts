// TF.js models (Keras LayersModels and TensorFlow graph models) in graft; importing this
// registers the nsfwjs models.
export { KerasBase, type ImportedPlan } from './keras-base.js';
export { KerasModel, tensorFromNhwc, type KerasModelOptions } from './keras-model.js';
export { kerasModelFromArtifacts, tfGraphModelFromArtifacts, modelFromArtifacts, loadTfjsLayersModel, loadTfjsGraphModel, type LoadKerasOptions } from './load.js';
export { TfGraphModel, parseTfGraph, type TfGraph } from './graph-model.js';
export { SUPPORTED_TF_OPS } from './graph-ops.js';
export { loadNsfwjsModel, readNsfwjsBundles, nsfwjsModelFolder, nsfwjsRoot, NSFWJS_CLASSES, NSFWJS_MODEL_NAMES, type NsfwjsModelName } from './nsfwjs.js';
export { parseKerasTopology, type KerasGraph, type KerasLayerSpec, type KerasNode } from './topology.js';
export { SUPPORTED_KERAS_LAYERS, kerasToGraftAxis } from './layer-table.js';
export { samePadding, tfPool2d } from './tf-windows.js';
export { KERAS_ACTIVATIONS } from './activations.js';
export { KerasBatchNormalization, KerasConv2D, KerasDense, KerasDepthwiseConv2D } from './weighted-layers.js';
