// Every differentiable op: autograd gradients against central differences, float64, reference backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { gradcheck } from './helpers/gradcheck.js';
import { opCases } from './helpers/op-cases.js';

g.setBackend('reference');

for (const [name, make] of opCases('float64')) {
  test(`gradcheck: ${name}`, () => {
    const [fn, inputs] = make();
    const r = gradcheck(fn, inputs);
    assert.ok(r.maxErr < 1e-5, `${name}: worst relative error ${r.maxErr.toExponential(2)} at ${r.where}`);
  });
}
