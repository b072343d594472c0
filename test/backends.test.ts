// Backends register themselves; the registry picks the default and names the choices; the native
// addon's description of its enum codes and argument lists must match contract.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import * as g from '../src/index.js';
import { BINARY, contractMismatches, KERNELS, REDUCE, UNARY, type AddonContract } from '../src/backends/native/contract.js';

const ADDON = 'build/Release/graft_native.node';

function runScript(script: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
}

test('registry: a backend registered from outside the registry is chosen by name and by priority', () => {
  const script = `
    import * as g from './dist/src/index.js';
    const ref = g.getBackend('reference');
    g.registerBackend('broken', { load: () => { throw new Error('no such device'); }, priority: 100 });
    g.registerBackend('mirror', { load: () => ({ ...ref, name: 'mirror' }), priority: 50 });
    console.log(g.currentBackend().name, g.registeredBackends().join(','), g.backendLoadError('broken'));
    g.setBackend('reference');
    console.log(g.withBackend('mirror', () => g.zeros([2]).backend.name), g.currentBackend().name);
    try { g.setBackend('broken'); } catch (e) { console.log(e.message); }
  `;
  const r = runScript(script, { GRAFT_BACKEND: '' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), [
    'mirror reference,native,broken,mirror no such device',
    'mirror reference',
    'the broken backend is not available: no such device',
  ]);
  assert.match(r.stderr, /the broken backend could not be loaded \(no such device\); running on the mirror backend instead/);
  assert.equal(r.stderr.match(/GraftBackendWarning/g)?.length, 1, 'one warning');
});

test('registry: unknown names list the registered backends', () => {
  assert.throws(() => g.setBackend('tpu'), /unknown backend 'tpu'; use 'reference' or 'native'/);
  assert.throws(() => g.getBackend('cuda'), /unknown backend 'cuda'; use 'reference' or 'native'/);
  assert.throws(() => g.registerBackend('reference', { load: () => g.getBackend('reference'), priority: 0 }), /a backend named 'reference' is already registered/);
});

test('registry: modules imported without an entry point say which import registers the backends', () => {
  const bare = runScript("import('./dist/src/ops/index.js').then((ops) => ops.zeros([2])).catch((e) => { console.error(e.message); process.exit(3); })");
  assert.equal(bare.status, 3);
  assert.match(bare.stderr, /no backend is registered: import graft's entry point \(src\/index\.ts\), or src\/backends\/all\.js, before making tensors/);
  const withAll = runScript("import './dist/src/backends/all.js'; const ops = await import('./dist/src/ops/index.js'); console.log(ops.ones([3]).toArray().length)");
  assert.equal(withAll.stdout.trim(), '3', withAll.stderr);
});

/** The description an addon built from today's sources gives, made from contract.ts's own tables. */
function agreeingContract(): AddonContract {
  return {
    enums: { unary: { ...UNARY }, binary: { ...BINARY }, reduce: { ...REDUCE } },
    arity: Object.fromEntries(Object.entries(KERNELS).map(([name, args]) => [name, args.length])),
  };
}

test('native contract: the built addon describes the codes and argument counts this side uses', { skip: existsSync(ADDON) ? false : `${ADDON} is not built` }, () => {
  const addon = createRequire(import.meta.url)(`${process.cwd()}/${ADDON}`) as { contract: AddonContract };
  assert.deepEqual(contractMismatches(addon.contract), []);
  assert.deepEqual(addon.contract, agreeingContract());
  assert.equal(g.nativeLoadError(), '');
});

test('native contract: a description that differs is rejected, naming the enum or function and both values', () => {
  assert.deepEqual(contractMismatches(agreeingContract()), []);
  const c = agreeingContract();
  c.enums['unary']!['gelu'] = 17;
  c.enums['unary']!['erf'] = 13;
  delete c.enums['binary']!['ge'];
  c.enums['reduce']!['prod'] = 3;
  c.enums['mode'] = { nearest: 0 };
  c.arity['matmul'] = 13;
  delete c.arity['where'];
  c.arity['conv3d'] = 5;
  assert.deepEqual(contractMismatches(c), [
    "unary 'gelu' is 13 in TypeScript but 17 in the addon",
    "unary 'erf' is 17 in TypeScript but 13 in the addon",
    "binary 'ge' is 11 in TypeScript but absent from the addon",
    "reduce 'prod' is 3 in the addon but unknown to TypeScript",
    'enum mode is unknown to TypeScript',
    'matmul() takes 14 arguments in TypeScript but 13 in the addon',
    'where() is called with 11 arguments by TypeScript but not exported by the addon',
    'conv3d() is exported by the addon (5 arguments) but unknown to TypeScript',
  ]);
  const noReduce = agreeingContract();
  delete noReduce.enums['reduce'];
  assert.deepEqual(contractMismatches(noReduce), ['enum reduce is absent from the addon']);
});
