// TF.js / Keras LayersModels in graft; importing this registers the nsfwjs models.
export { KerasModel, tensorFromNhwc, type KerasModelOptions } from './keras-model.js';
export { kerasModelFromArtifacts, loadTfjsLayersModel, type LoadKerasOptions } from './load.js';
export { loadNsfwjsModel, readNsfwjsBundles, nsfwjsModelFolder, nsfwjsRoot, NSFWJS_CLASSES, NSFWJS_MODEL_NAMES, type NsfwjsModelName } from './nsfwjs.js';
export { parseKerasTopology, type KerasGraph, type KerasLayerSpec, type KerasNode } from './topology.js';
export { SUPPORTED_KERAS_LAYERS, samePadding, kerasToGraftAxis } from './layer-table.js';
export { KERAS_ACTIVATIONS } from './activations.js';
export { KerasBatchNormalization, KerasConv2D, KerasDense, KerasDepthwiseConv2D } from './weighted-layers.js';
