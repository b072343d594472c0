// The op table (src/ops/table.ts) against the ops themselves: it lists every export, each entry is
// checked by cases, and what an entry says about gradients is what the op does on the tape.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as g from '../src/index.js';
import * as ops from '../src/ops/index.js';
import { opTable, type OpName } from '../src/ops/table.js';
import { opCases, type OpCase } from './helpers/op-cases.js';

g.setBackend('reference');

const tableOps = Object.keys(opTable) as OpName[];
const cases = new Map<string, OpCase>(opCases('float64').map((c) => [c.name, c]));

/** Names recorded on the tape behind `t`. */
function recordedNames(t: g.Tensor): Set<string> {
  const names = new Set<string>();
  const stack = [t];
  const seen = new Set<g.Tensor>();
  while (stack.length) {
    const cur = stack.pop()!;
    if (seen.has(cur) || !cur.gradFn) continue;
    seen.add(cur);
    names.add(cur.gradFn.name);
    stack.push(...cur.gradFn.inputs);
  }
  return names;
}

/** Runs a case with every float input requiring a gradient. */
function runCase(c: OpCase): { out: g.Tensor; floatInputs: number } {
  const [fn, inputs] = c.make();
  const floats = inputs.filter((x) => x.dtype === 'float64' || x.dtype === 'float32');
  for (const x of floats) x.requiresGrad_(true);
  return { out: fn(...inputs), floatInputs: floats.length };
}

test('op table: every function src/ops exports has an entry, and every entry is an exported function', () => {
  const exported = Object.entries(ops).filter(([, v]) => typeof v === 'function').map(([k]) => k);
  assert.deepEqual(exported.filter((k) => !(k in opTable)), [], 'exports without a table entry');
  assert.deepEqual(tableOps.filter((k) => typeof (ops as Record<string, unknown>)[k] !== 'function'), [], 'entries that are not exported functions');
});

test('op table: every entry has a conformance case, and every entry with a gradient a gradient-checked case with inputs', () => {
  for (const op of tableOps) {
    const { gradient, cases: names } = opTable[op];
    assert.ok(names.length > 0, `${op}: no cases`);
    for (const name of names) assert.ok(cases.has(name), `${op}: case '${name}' has no builder`);
    if (gradient.kind === 'none') continue;
    const checked = names.filter((n) => cases.get(n)!.differentiable && runCase(cases.get(n)!).floatInputs > 0);
    assert.ok(checked.length > 0, `${op}: has a gradient (${gradient.kind}) but no case that the gradient check runs on float inputs`);
  }
});

test('op table: an op with a rule records it under its name, a composed op carries a gradient, an op with none carries none', () => {
  for (const op of tableOps) {
    const { gradient, cases: names } = opTable[op];
    let recordsOwnName = false;
    for (const name of names) {
      const { out } = runCase(cases.get(name)!);
      if (gradient.kind === 'none') {
        assert.equal(out.requiresGrad, false, `${op} (case '${name}'): the table says no gradient (${gradient.reason}), but the output requires one`);
      } else {
        assert.equal(out.requiresGrad, true, `${op} (case '${name}'): the table gives a gradient (${gradient.kind}), but the output requires none`);
        if (recordedNames(out).has(op)) recordsOwnName = true;
      }
    }
    if (gradient.kind === 'rule') assert.ok(recordsOwnName, `${op}: the table gives it a rule, but none of its cases records '${op}' on the tape`);
  }
});

test('op table: ops record only through the table\'s record, which checks the name', () => {
  const dir = fileURLToPath(new URL('../../src/ops/', import.meta.url));
  const direct = readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && f !== 'table.ts')
    .filter((f) => /import\s*\{[^}]*\brecord\b[^}]*\}\s*from\s*'\.\.\/tensor\/autograd\.js'/.test(readFileSync(dir + f, 'utf8')));
  assert.deepEqual(direct, [], 'files importing the tape\'s record directly');
});

test('erf: its gradient is 2/√π · exp(−x²)', () => {
  const x = g.tensor([-2, -0.5, 0, 0.3, 1.7], undefined, { dtype: 'float64' }).requiresGrad_(true);
  g.sum(g.erfOp(x)).backward();
  const gx = x.grad!.toArray();
  [-2, -0.5, 0, 0.3, 1.7].forEach((v, i) => assert.ok(Math.abs(gx[i]! - (2 / Math.sqrt(Math.PI)) * Math.exp(-v * v)) < 1e-15, `x = ${v}: ${gx[i]}`));
});
