// Every case of an op with a gradient in the op table: autograd gradients against central
// differences, float64, reference backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as g from '../src/index.js';
import { gradcheck } from './helpers/gradcheck.js';
import { opCases } from './helpers/op-cases.js';

g.setBackend('reference');

for (const { name, differentiable, make } of opCases('float64')) {
  if (!differentiable) continue;
  test(`gradcheck: ${name}`, () => {
    const [fn, inputs, opts] = make();
    const r = gradcheck(fn, inputs, opts);
    assert.ok(r.maxErr < 1e-5, `${name}: worst relative error ${r.maxErr.toExponential(2)} at ${r.where}`);
  });
}
