// graft serve on loopback: adapters of tiny runs on one base, each answering with its own run's
// predictions; hot load and unload while requests are in flight; malformed requests; the full
// queue; SIGTERM draining a served request (the CLI as a child process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as g from '../src/index.js';
import { ConfigError } from '../src/errors.js';
import { decodeImage } from '../src/data/image.js';
import { prepareImage } from '../src/data/transforms.js';
import { loadRun } from '../src/train/run.js';
import { AdapterHost } from '../src/serve/host.js';
import { GraftServer, batchSizeFor, type ServeOptions } from '../src/serve/server.js';
import { makeTinyRun, TINY_BACKBONES, TINY_CLASSES, writeTestImages } from './helpers/tiny-runs.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

const images = await writeTestImages(4, 40);
const runA = await makeTinyRun(TINY_BACKBONES['mobilenet']!, 'lora', 11);
const runB = await makeTinyRun(TINY_BACKBONES['mobilenet']!, 'dora', 22);
const runC = await makeTinyRun(TINY_BACKBONES['mobilenet']!, 'lora', 33);

/** What graft predict computes for each image under a run (loadRun, one image at a time). */
async function expected(run: string): Promise<Float32Array[]> {
  const r = await loadRun(run);
  const [c, h, w] = r.preprocess.inputSize;
  const out: Float32Array[] = [];
  for (const f of images) {
    const data = new Float32Array(c * h * w);
    await prepareImage(await decodeImage(f), r.preprocess, null, new g.Generator(0), data, 0);
    out.push(g.noGrad(() => g.tidy(() => g.softmax(r.model.forward(g.tensor(data, [1, c, h, w])), -1).toArray())) as Float32Array);
  }
  r.model.dispose();
  return out;
}
const want = { a: await expected(runA), b: await expected(runB), c: await expected(runC) };

async function start(opts: ServeOptions = {}, adapters: [string, string][] = [['a', runA], ['b', runB]]) {
  const host = await AdapterHost.open(adapters[0]![0], adapters[0]![1]);
  for (const [n, d] of adapters.slice(1)) host.add(n, d);
  const server = new GraftServer(host, opts);
  const url = await server.listen(0);
  return { server, host, url, close: async () => { await server.drain(); host.dispose(); } };
}

const png = (i: number) => readFileSync(images[i]!);
const predict = (url: string, adapter: string | null, body: Uint8Array | string | FormData, type: string | null = 'image/png', headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/predict${adapter === null ? '' : `?adapter=${adapter}`}`, { method: 'POST', body: body as BodyInit, headers: { ...(type ? { 'content-type': type } : {}), ...headers } });

function assertScores(got: { scores: Record<string, number>; label: string }, exp: Float32Array, what: string) {
  const s = TINY_CLASSES.map((c) => got.scores[c]!);
  for (let k = 0; k < s.length; k++) assert.ok(Math.abs(s[k]! - exp[k]!) < 1e-5, `${what}: class ${k} ${s[k]} vs ${exp[k]}`);
  let best = 0;
  for (let k = 1; k < exp.length; k++) if (exp[k]! > exp[best]!) best = k;
  assert.equal(got.label, TINY_CLASSES[best], what);
}

test('two adapters on one base answer with their own run\'s predictions, batched or not', async () => {
  const s = await start({ batchWindowMs: 20, maxBatch: 8 });
  try {
    // Adapters differ: otherwise the test could not tell them apart.
    assert.ok(Math.abs(want.a[0]![0]! - want.b[0]![0]!) > 1e-4);
    const jobs = [];
    for (const name of ['a', 'b'] as const) for (let i = 0; i < images.length; i++) jobs.push(predict(s.url, name, png(i)).then(async (r) => ({ name, i, status: r.status, body: await r.json() })));
    for (const j of await Promise.all(jobs)) {
      assert.equal(j.status, 200, JSON.stringify(j.body));
      assert.equal(j.body.adapter, j.name);
      assertScores(j.body, want[j.name][j.i]!, `${j.name} image ${j.i}`);
    }
    // Multipart form, and the batch histogram saw batches of more than one image.
    const form = new FormData();
    form.append('image', new Blob([png(1)], { type: 'image/png' }), 'img1.png');
    const m = await predict(s.url, 'b', form, null);
    assert.equal(m.status, 200);
    assertScores(await m.json(), want.b[1]!, 'multipart b image 1');
    const list = await (await fetch(`${s.url}/v1/adapters`)).json();
    assert.deepEqual(list.adapters.map((x: { name: string }) => x.name), ['a', 'b']);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /graft_requests_total\{adapter="a",code="200"\} 4/);
    assert.match(metrics, /graft_request_duration_seconds_bucket\{adapter="b",le="\+Inf"\} 5/);
    assert.match(metrics, /graft_queue_depth 0/);
    const small = /graft_batch_size_bucket\{adapter="a",le="1"\} (\d+)/.exec(metrics);
    assert.ok(small && Number(small[1]) < 4, 'requests of one adapter were batched');
    assert.deepEqual(await (await fetch(`${s.url}/healthz`)).json(), { status: 'ok', adapters: ['a', 'b'] });
  } finally {
    await s.close();
  }
});

test('batches are powers of two up to --max-batch, so a handful of shapes serve any load', () => {
  const sizes = (pending: number, max: number) => {
    const out: number[] = [];
    while (pending > 0) {
      const n = batchSizeFor(pending, max);
      out.push(n);
      pending -= n;
    }
    return out;
  };
  assert.deepEqual(sizes(1, 16), [1]);
  assert.deepEqual(sizes(7, 16), [4, 2, 1]);
  assert.deepEqual(sizes(16, 16), [16]);
  assert.deepEqual(sizes(40, 16), [16, 16, 8]);
  assert.deepEqual(sizes(13, 10), [8, 4, 1]);
  assert.deepEqual(sizes(5, 1), [1, 1, 1, 1, 1]);
});

test('the host\'s merged, folded adapters answer as the unmerged ones, evicted past the cache size, and leave the base as it was', async () => {
  const host = await AdapterHost.open('a', runA);
  try {
    host.add('b', runB);
    host.add('c', runC);
    const base = new Map([...host.model.model.stateDict()].map(([k, t]) => [k, Float32Array.from(t.toArray() as Float32Array)]));
    const [ch, h, w] = host.preprocess.inputSize;
    const prepared = await Promise.all(images.map(async (f) => {
      const d = new Float32Array(ch * h * w);
      await prepareImage(await decodeImage(f), host.preprocess, null, new g.Generator(0), d, 0);
      return d;
    }));
    const batch = new Float32Array(prepared.length * ch * h * w);
    prepared.forEach((d, i) => batch.set(d, i * d.length));
    for (const size of [4, 1, 0]) {
      host.mergedCacheSize = size;
      for (const name of ['a', 'b', 'c', 'a', 'c'] as const) {
        const got = host.predict(name, batch, prepared.length);
        got.forEach((p, i) => {
          for (let k = 0; k < p.length; k++) assert.ok(Math.abs(p[k]! - want[name][i]![k]!) < 1e-5, `cache ${size}, ${name} image ${i} class ${k}: ${p[k]} vs ${want[name][i]![k]}`);
        });
      }
    }
    for (const [k, t] of host.model.model.stateDict()) assert.deepEqual(Float32Array.from(t.toArray() as Float32Array), base.get(k), `${k} unchanged`);
    // Unloading frees the adapter's cached copies with it.
    host.mergedCacheSize = 4;
    host.predict('c', batch, prepared.length);
    const live = g.memory().liveBuffers;
    host.predict('b', batch, prepared.length);
    assert.ok(g.memory().liveBuffers > live, 'b\'s merged copies are cached');
    host.remove('b');
    assert.ok(g.memory().liveBuffers < live, 'removing b freed its copies and tensors');
  } finally {
    host.dispose();
  }
});

test('hot load and unload while requests are in flight', async () => {
  const s = await start({ batchWindowMs: 150 }, [['a', runA]]);
  try {
    const inflight = [0, 1, 2].map((i) => predict(s.url, 'a', png(i)));
    await new Promise((r) => setTimeout(r, 30));
    const load = await fetch(`${s.url}/v1/adapters`, { method: 'POST', body: JSON.stringify({ name: 'c', run: runC }), headers: { 'content-type': 'application/json' } });
    assert.equal(load.status, 201, await load.clone().text());
    const c0 = predict(s.url, 'c', png(0));
    // Unloading a waits for its queued requests; new ones for it are refused at once.
    const del = fetch(`${s.url}/v1/adapters/a`, { method: 'DELETE' });
    await new Promise((r) => setTimeout(r, 20));
    const late = await predict(s.url, 'a', png(3));
    assert.equal(late.status, 404);
    assert.equal((await late.json()).error.code, 'unknown_adapter');
    const answered = await Promise.all(inflight);
    for (let i = 0; i < 3; i++) {
      assert.equal(answered[i]!.status, 200);
      assertScores(await answered[i]!.json(), want.a[i]!, `in-flight a ${i}`);
    }
    assert.equal((await del).status, 200);
    const c = await c0;
    assert.equal(c.status, 200);
    assertScores(await c.json(), want.c[0]!, 'hot-loaded c');
    const list = await (await fetch(`${s.url}/v1/adapters`)).json();
    assert.deepEqual(list.adapters.map((x: { name: string }) => x.name), ['c']);
    // Loaded again after unloading: the same predictions.
    assert.equal((await fetch(`${s.url}/v1/adapters`, { method: 'POST', body: JSON.stringify({ name: 'a', run: runA }), headers: { 'content-type': 'application/json' } })).status, 201);
    assertScores(await (await predict(s.url, 'a', png(2))).json(), want.a[2]!, 'reloaded a');
  } finally {
    await s.close();
  }
});

test('malformed requests get 4xx JSON errors naming the problem', async () => {
  const s = await start({ maxBodyBytes: 64 * 1024, token: 'sesame' });
  const auth = { authorization: 'Bearer sesame' };
  try {
    const cases: [Promise<Response>, number, string, RegExp][] = [
      [predict(s.url, 'a', png(0)), 401, 'unauthorized', /bearer token/],
      [predict(s.url, 'a', png(0), 'image/png', { authorization: 'Bearer wrong' }), 401, 'unauthorized', /bearer/],
      [predict(s.url, 'a', Buffer.from('not an image at all'), 'image/png', auth), 400, 'bad_image', /could not be decoded/],
      [predict(s.url, 'zzz', png(0), 'image/png', auth), 404, 'unknown_adapter', /no adapter 'zzz'.*a, b/],
      [predict(s.url, null, png(0), 'image/png', auth), 400, 'adapter_required', /\?adapter=NAME/],
      [predict(s.url, 'a', 'hello', 'text/plain', auth), 415, 'unsupported_content_type', /text\/plain/],
      [predict(s.url, 'a', Buffer.alloc(0), 'image/png', auth), 400, 'no_image', /empty/],
      [predict(s.url, 'a', Buffer.alloc(200 * 1024, 1), 'image/png', auth), 413, 'body_too_large', /limit of 65536 bytes/],
      [fetch(`${s.url}/v1/adapters`, { method: 'POST', body: JSON.stringify({ name: 'x' }), headers: { 'content-type': 'application/json', ...auth } }), 400, 'bad_request', /"run": RUN_DIR/],
      [fetch(`${s.url}/v1/adapters`, { method: 'POST', body: JSON.stringify({ name: 'a', run: runC }), headers: { 'content-type': 'application/json', ...auth } }), 409, 'adapter_exists', /already served/],
      [fetch(`${s.url}/v1/adapters`, { method: 'POST', body: JSON.stringify({ name: 'x', run: '/nonexistent/run' }), headers: { 'content-type': 'application/json', ...auth } }), 400, 'bad_request', /not a graft run folder/],
      [fetch(`${s.url}/v1/adapters/nope`, { method: 'DELETE', headers: auth }), 404, 'unknown_adapter', /no adapter 'nope'/],
      [fetch(`${s.url}/v2/whatever`, { headers: auth }), 404, 'not_found', /routes:/],
    ];
    for (const [p, status, code, msg] of cases) {
      const r = await p;
      const body = await r.json();
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal(body.error.code, code, JSON.stringify(body));
      assert.match(body.error.message, msg);
    }
    assert.equal((await fetch(`${s.url}/healthz`)).status, 200, '/healthz needs no token');
    assert.equal((await predict(s.url, 'a', png(0), 'image/png', auth)).status, 200);
  } finally {
    await s.close();
  }
});

test('runs on another base or of a baseline method are refused with a clear message', async () => {
  const vit = await makeTinyRun(TINY_BACKBONES['vit']!, 'lora', 5);
  const full = await makeTinyRun(TINY_BACKBONES['mobilenet']!, 'full', 5);
  const host = await AdapterHost.open('a', runA);
  try {
    assert.throws(() => host.add('v', vit), (e: Error) => e instanceof ConfigError && /another base \(model "vit_small_patch16_224".*one graft serve holds one base/.test(e.message));
    assert.throws(() => host.add('f', full), (e: Error) => e instanceof ConfigError && /method 'full'.*no adapter over a frozen base/.test(e.message));
    assert.deepEqual(host.list().map((x) => x.name), ['a']);
    // A second run adds its adapter tensors only: the base is held once.
    const size = () => host.model.model.namedParameters().reduce((n, [, t]) => n + t.size, 0) + host.model.model.namedBuffers().reduce((n, [, t]) => n + t.size, 0);
    const before = size();
    host.add('c', runC);
    const added = [...host.model.adapterStateDict('served0').values()].reduce((n, t) => n + t.size, 0);
    assert.equal(size() - before, added);
    assert.ok(added < before / 4, `adapter ${added} vs base ${before}`);
  } finally {
    host.dispose();
  }
});

test('a full queue answers 429 instead of growing', async () => {
  const s = await start({ maxQueue: 2, batchWindowMs: 300 });
  try {
    const rs = await Promise.all([0, 1, 2, 3].map((i) => predict(s.url, 'a', png(i))));
    const statuses = rs.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 429, 429]);
    const refused = rs.find((r) => r.status === 429)!;
    assert.equal((await refused.json()).error.code, 'queue_full');
  } finally {
    await s.close();
  }
});

test('SIGTERM drains in-flight requests before the CLI exits', async () => {
  const child = spawn(process.execPath, [CLI, 'serve', '--adapter', `a=${runA}`, '--adapter', `b=${runB}`, '--port', '0', '--batch-window', '700'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`graft serve exited ${code}: ${err}`)));
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const inflight = predict(url, 'b', png(1));
  await new Promise((r) => setTimeout(r, 250));
  child.kill('SIGTERM');
  const r = await inflight;
  assert.equal(r.status, 200);
  assertScores(await r.json(), want.b[1]!, 'drained b');
  assert.equal(await exited, 0, err);
  assert.match(out, /SIGTERM: draining/);
  await assert.rejects(fetch(`${url}/healthz`), 'the port is closed after the drain');
});
