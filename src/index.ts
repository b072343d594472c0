// graft: parameter-efficient fine-tuning of vision models on a TypeScript tensor engine.
import './backends/all.js';
export * from './ops/index.js';
export { Tensor, Storage, emptyTensor } from './tensor/tensor.js';
export { tidy, keep, memory, resetPeakMemory, type MemoryInfo } from './tensor/memory.js';
export { noGrad, isGradEnabled } from './tensor/autograd.js';
export { Generator, manualSeed, defaultGenerator } from './tensor/random.js';
export { ShapeError, type Shape } from './tensor/shape.js';
export { DTypeError } from './ops/util.js';
export type { DType, TypedArray } from './tensor/dtype.js';
export type { Backend } from './backends/backend.js';
export {
  setBackend, getBackend, currentBackend, withBackend, nativeLoadError, backendLoadError, registerBackend, registeredBackends,
  type BackendName, type BackendRegistration,
} from './backends/registry.js';
export { AdamW, SGD, assign, type Optimizer, type ParamGroup, type AdamWOptions, type SGDOptions } from './train/optim.js';
export { buildModel, type ModelRequest } from './models/build-model.js';
export { createModel, listModels, registerModel, type ModelEntry } from './models/registry.js';
export { VisionModel, type CreateModelOptions } from './models/model.js';
export { classifierPath } from './models/head.js';
export { CheckpointFormatError } from './models/checkpoint-error.js';
export { resolveCheckpoint, checkpointFile, hubSnapshot, hubCheckpoint, HUB_FILES, type ResolvedCheckpoint, type CheckpointSourceOptions } from './io/checkpoint-source.js';
export { hubCacheDir, type DownloadProgress } from './io/hub.js';
export { linearCka, defaultEstimator, featureMatrix, poolFeatures, type FeatureMatrix, type CkaEstimator } from './nn/cka.js';
export { captureFeatures } from './nn/capture.js';
export { layerSimilarity, layerFeatures, type SimilarityMatrix, type SimilarityOptions } from './nn/similarity.js';
export { datasetSimilarity } from './eval/similarity.js';
export { similarityHeatmapSvg, similarityJson, writeSimilarity } from './report/heatmap.js';
export { roundBf16, roundBf16Array } from './tensor/bf16.js';
export { withComputePrecision, computePrecision, bf16Unavailable } from './ops/precision.js';
