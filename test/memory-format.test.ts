// Channels-last inference (tensor/memory-format.ts): a CNN's features under noGrad run on
// channels-last maps and give the logits of the NCHW run; with gradients on, nothing changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { createModel } from '../src/models/registry.js';
import '../src/models/all.js';
import { isChannelsLast, setChannelsLast } from '../src/tensor/memory-format.js';
import type { VisionModel } from '../src/models/model.js';

const CASES: [string, number][] = [['mobilenet_v2', 96], ['nsfwjs_mobilenet_v2', 224], ['resnet18', 64], ['resnet50', 64]];

for (const [name, size] of CASES) {
  test(`memory format: ${name} runs its features channels-last under noGrad, with the NCHW logits`, () => {
    const model = createModel(name, { numClasses: 4, imageSize: size }).eval() as VisionModel;
    const x = g.randn([2, 3, size, size], { generator: new g.Generator(5) });
    const run = (on: boolean) => {
      setChannelsLast(on);
      try {
        return g.noGrad(() => g.tidy(() => {
          const f = model.forwardFeatures(x);
          return { channelsLast: isChannelsLast(f), logits: Float32Array.from(model.forwardHead(f).toArray() as Float32Array) };
        }));
      } finally {
        setChannelsLast(true);
      }
    };
    const nchw = run(false);
    const nhwc = run(true);
    assert.equal(nchw.channelsLast, false);
    assert.equal(nhwc.channelsLast, true, 'the features are channels-last');
    let worst = 0;
    for (let i = 0; i < nchw.logits.length; i++) worst = Math.max(worst, Math.abs(nchw.logits[i]! - nhwc.logits[i]!) / (1 + Math.abs(nchw.logits[i]!)));
    assert.ok(worst < 1e-5, `logits differ by ${worst}`);
    // With gradients recorded the maps stay NCHW.
    const f = g.tidy(() => isChannelsLast(model.forwardFeatures(x)));
    assert.equal(f, false);
  });
}
