// What an imported TF.js model is once its graph is planned, whichever way it was stored (a Keras
// LayersModel: KerasModel; a TensorFlow GraphDef: TfGraphModel): steps split into features and
// head (graph-runner.ts), run in order over the model's modules; the classifier's final softmax
// left out of forward() and applied by predict(); a classifier that can be reset or removed.
import type { Module } from '../../nn/module.js';
import type { Linear } from '../../nn/layers.js';
import type { Tensor } from '../../tensor/tensor.js';
import { channelsLastUnlessRecording } from '../../tensor/memory-format.js';
import type { Generator } from '../../tensor/random.js';
import { fmt } from '../../tensor/shape.js';
import { softmax } from '../../ops/norm.js';
import { VisionModel } from '../model.js';
import { runSteps, type Segments } from './graph-runner.js';

/** The steps of an imported model, and which of their values are its input and output. */
export interface ImportedPlan extends Segments {
  inputKey: string;
  outputKey: string;
  /** The classifier was removed (resetClassifier(0)): forwardHead stops at the pooled features. */
  headless: boolean;
}

export abstract class KerasBase<P extends ImportedPlan = ImportedPlan> extends VisionModel {
  /** Per-sample input shape in graft's layout, [C, H, W] (or [F] for a flat input). */
  abstract readonly inputShape: number[];
  /** The activation forward() leaves out and predict() applies ('softmax'), or null. */
  abstract readonly outputActivation: 'softmax' | null;
  protected abstract readonly plan: P;
  /** Output width (classes for a classifier; 0 once the classifier is removed). */
  abstract get numClasses(): number;

  /** Path of the module holding the classifier (the last Dense / MatMul), null when the model has none. */
  protected abstract classifierModule(): string | null;
  /** What the model lacks when it has no classifier, for the error (`Dense`, `MatMul`). */
  protected abstract readonly classifierKind: string;
  /** A fresh classifier of the model's own layer class in place of `old`, for `numClasses`. */
  protected abstract freshClassifier(old: Linear, numClasses: number, generator?: Generator): Linear;
  /** Called after the classifier at `path` was replaced, for models that keep per-step shapes. */
  protected classifierReplaced(_path: string, _numClasses: number): void {}

  forwardFeatures(x: Tensor): Tensor {
    const want = this.inputShape;
    if (x.rank !== want.length + 1 || x.shape.slice(1).some((d, i) => d !== want[i])) {
      const hint = want.length === 3 && x.rank === 4 && x.shape[1] === want[0] ? ` Load the model with { imageSize: [${x.shape[2]}, ${x.shape[3]}] } to run it at that size.` : '';
      throw new Error(`${this.family}: expected input (B, ${want.join(', ')}) (NCHW); got ${fmt(x.shape)}.${hint}`);
    }
    // Without a graph the features run channels-last (tensor/memory-format.ts).
    return channelsLastUnlessRecording(() => runSteps(this.plan.features, this.plan.inputKey, x, this.plan.featureKey, this.stepModules(), this.training));
  }

  /** Runs the head on features; `preLogits` stops at the pooled vector (B, numFeatures). */
  forwardHead(features: Tensor, preLogits = false): Tensor {
    const { head, featureKey, pooledKey, outputKey, headless } = this.plan;
    return runSteps(head, featureKey, features, preLogits || headless ? pooledKey : outputKey, this.stepModules(), this.training);
  }

  /** forwardHead(forwardFeatures(x)), freeing the features once the head has read them. */
  override forward(x: Tensor): Tensor {
    const features = this.forwardFeatures(x);
    const out = this.forwardHead(features);
    if (features !== x && features !== out) features.dispose();
    return out;
  }

  /** The imported model's own output: forward() followed by the output activation it leaves out. */
  predict(x: Tensor): Tensor {
    const out = this.forward(x);
    return this.outputActivation === 'softmax' ? softmax(out, -1) : out;
  }

  /**
   * A fresh classifier (the last Dense / MatMul) with `numClasses` outputs, initialised like
   * graft's Linear; 0 removes it, so forwardHead returns the pooled features.
   */
  resetClassifier(numClasses: number, generator?: Generator): void {
    const path = this.classifierModule();
    if (!path) throw new Error(`${this.family}: the model has no ${this.classifierKind} classifier after its features`);
    this.plan.headless = numClasses === 0;
    if (numClasses === 0) return;
    const old = this.getModule(path) as Linear;
    this.setModule(path, this.freshClassifier(old, numClasses, generator));
    old.dispose();
    this.classifierReplaced(path, numClasses);
  }

  /** Step module paths → modules (layers an adapter wrapped included). */
  private stepModules(): Map<string, Module> {
    return new Map(this.namedModules());
  }
}
