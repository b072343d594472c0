// Downloading hf:ORG/NAME into the Hugging Face cache from a local server that answers as the
// Hub does: /ORG/NAME/resolve/<rev>/<file> with X-Repo-Commit and ETag, and for the weights a 302
// to a second origin (the LFS/CDN redirect) with X-Linked-Etag (the sha256) and X-Linked-Size.
// No test touches the network.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createModel } from '../src/models/registry.js';
import { saveSafetensors } from '../src/io/safetensors.js';
import { buildModel } from '../src/models/build-model.js';
import { hubSnapshot } from '../src/io/checkpoint-source.js';
import { downloadHubFiles, type DownloadProgress } from '../src/io/hub.js';
import { describeDownload, downloadProgressPrinter } from '../src/cli/download-progress.js';
import { preprocessFromHf } from '../src/data/preprocess.js';
import '../src/backends/all.js';
import '../src/models/all.js';

const OVERRIDES = { widthMult: 0.5, invertedResidualSetting: [[1, 16, 1, 1], [6, 24, 2, 2]] };
const work = mkdtempSync(join(tmpdir(), 'graft-hub-'));
const source = createModel('mobilenet_v2', { overrides: OVERRIDES, numClasses: 7 });
saveSafetensors(join(work, 'weights.safetensors'), source.stateDict());
const WEIGHTS = readFileSync(join(work, 'weights.safetensors'));
const WEIGHTS_SHA = createHash('sha256').update(WEIGHTS).digest('hex');
const CONFIG = Buffer.from(JSON.stringify({ architectures: ['MobileNetV2ForImageClassification'] }));
const PREPROCESSOR = Buffer.from(JSON.stringify({
  image_processor_type: 'ViTImageProcessor', do_resize: true, size: { height: 160, width: 160 }, resample: 2,
  do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
}));
const gitSha = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const COMMIT = 'c0ffee0123456789abcdef0123456789abcdef01';

interface Repo {
  files: Record<string, Buffer>;
  /** Send half of the weights, then drop the connection. */
  dropBody?: boolean;
  /** Send the weights with one byte changed. */
  corrupt?: boolean;
}
const REPOS: Record<string, Repo> = {
  'acme/tiny-net': { files: { 'model.safetensors': WEIGHTS, 'config.json': CONFIG, 'preprocessor_config.json': PREPROCESSOR } },
  'acme/no-preprocessor': { files: { 'model.safetensors': WEIGHTS, 'config.json': CONFIG } },
  'acme/broken': { files: { 'model.safetensors': WEIGHTS }, dropBody: true },
  'acme/corrupt': { files: { 'model.safetensors': WEIGHTS }, corrupt: true },
  'acme/no-weights': { files: { 'config.json': CONFIG } },
};

interface Seen {
  url: string;
  authorization: string | undefined;
}
const hubRequests: Seen[] = [];
const cdnRequests: Seen[] = [];

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

// The CDN: /lfs/<repo>/<sha256> → the bytes.
const cdn = createServer((req: IncomingMessage, res: ServerResponse) => {
  cdnRequests.push({ url: req.url!, authorization: req.headers.authorization });
  const m = /^\/lfs\/(.+)\/([0-9a-f]{64})$/.exec(req.url!.split('?')[0]!);
  const repo = m && REPOS[decodeURIComponent(m[1]!)];
  const body = repo?.files['model.safetensors'];
  if (!repo || !body) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Length': body.length, ETag: `"${m[2]}"`, 'Content-Type': 'application/octet-stream' });
  if (repo.dropBody) {
    res.write(body.subarray(0, body.length >> 1));
    setTimeout(() => res.socket?.destroy(), 20);
  } else if (repo.corrupt) {
    const bad = Buffer.from(body);
    bad[bad.length - 1] ^= 1;
    res.end(bad);
  } else res.end(body);
});
const cdnUrl = await listen(cdn);

// The Hub: /ORG/NAME/resolve/<main|commit>/<file>.
const hub = createServer((req: IncomingMessage, res: ServerResponse) => {
  hubRequests.push({ url: req.url!, authorization: req.headers.authorization });
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url!);
  const repo = m && REPOS[m[1]!];
  if (!m || !repo) {
    res.writeHead(401, { 'X-Error-Code': 'RepoNotFound', 'X-Error-Message': 'Repository not found' }).end('Repository not found');
    return;
  }
  if (m[2] !== 'main' && m[2] !== COMMIT) {
    res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end();
    return;
  }
  const file = decodeURIComponent(m[3]!);
  const body = repo.files[file];
  if (!body) {
    res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': COMMIT }).end('Entry not found');
    return;
  }
  if (file.endsWith('.safetensors')) {
    const sha = createHash('sha256').update(body).digest('hex');
    res.writeHead(302, {
      Location: `${cdnUrl}/lfs/${encodeURIComponent(m[1]!)}/${sha}?X-Amz-Signature=abc`,
      'X-Repo-Commit': COMMIT, 'X-Linked-Etag': `"${sha}"`, 'X-Linked-Size': String(body.length), ETag: `"${gitSha(Buffer.from(`oid sha256:${sha}`))}"`,
    }).end();
    return;
  }
  res.writeHead(200, { 'Content-Length': body.length, ETag: `"${gitSha(body)}"`, 'X-Repo-Commit': COMMIT, 'Content-Type': 'application/json' });
  res.end(body);
});
const hubUrl = await listen(hub);

after(() => {
  for (const s of [hub, cdn]) {
    s.closeAllConnections();
    s.close();
  }
  source.dispose();
});

function useCache(name: string): string {
  const cache = join(work, name);
  process.env['HF_HUB_CACHE'] = cache;
  process.env['HF_ENDPOINT'] = hubUrl;
  process.env['HF_TOKEN'] = 'hf_test_token';
  delete process.env['HF_HUB_OFFLINE'];
  return cache;
}
const quiet = () => undefined;

test('hf:ORG/NAME not in the cache: downloaded into the huggingface_hub layout (blobs, snapshot symlinks, refs/main)', async () => {
  const cache = useCache('cache-layout');
  hubRequests.length = cdnRequests.length = 0;
  const progress: DownloadProgress[] = [];
  const snapshot = await hubSnapshot('acme/tiny-net', { onProgress: (p) => progress.push({ ...p }) });
  const root = join(cache, 'models--acme--tiny-net');
  assert.equal(snapshot, join(root, 'snapshots', COMMIT));
  assert.equal(readFileSync(join(root, 'refs', 'main'), 'utf8'), COMMIT);
  const blobs: Record<string, string> = { 'model.safetensors': WEIGHTS_SHA, 'config.json': gitSha(CONFIG), 'preprocessor_config.json': gitSha(PREPROCESSOR) };
  for (const [file, etag] of Object.entries(blobs)) {
    const pointer = join(snapshot, file);
    assert.ok(lstatSync(pointer).isSymbolicLink(), `${file} is a symlink`);
    assert.equal(readlinkSync(pointer), join('..', '..', 'blobs', etag), file);
    assert.deepEqual(readFileSync(pointer), REPOS['acme/tiny-net']!.files[file], file);
  }
  assert.deepEqual(readdirSync(join(root, 'blobs')).sort(), Object.values(blobs).sort());
  // main resolves once; the other files come from that commit. The token goes to the Hub, not to the CDN.
  assert.deepEqual(hubRequests.map((r) => r.url), [
    '/acme/tiny-net/resolve/main/model.safetensors', `/acme/tiny-net/resolve/${COMMIT}/config.json`, `/acme/tiny-net/resolve/${COMMIT}/preprocessor_config.json`,
  ]);
  assert.ok(hubRequests.every((r) => r.authorization === 'Bearer hf_test_token'));
  assert.equal(cdnRequests.length, 1);
  assert.equal(cdnRequests[0]!.authorization, undefined);
  const weights = progress.filter((p) => p.file === 'model.safetensors');
  assert.equal(weights[0]!.received, 0);
  assert.deepEqual({ ...weights.at(-1)!, elapsedMs: 0 }, { repo: 'acme/tiny-net', file: 'model.safetensors', received: WEIGHTS.length, total: WEIGHTS.length, elapsedMs: 0, done: true });

  // Again: the cache answers, no request is made.
  hubRequests.length = cdnRequests.length = 0;
  assert.equal(await hubSnapshot('acme/tiny-net', { onProgress: quiet }), snapshot);
  assert.equal(hubRequests.length + cdnRequests.length, 0);
});

test("buildModel awaits the download and uses the snapshot's weights and preprocessor_config.json", async () => {
  useCache('cache-build');
  const model = await buildModel({ name: 'mobilenet_v2', weights: 'hf:acme/tiny-net', overrides: OVERRIDES, onProgress: quiet });
  assert.deepEqual(model.preprocess, preprocessFromHf(JSON.parse(PREPROCESSOR.toString())));
  const mine = model.stateDict();
  for (const [k, t] of source.stateDict()) assert.deepEqual(mine.get(k)!.toArray(), t.toArray(), k);
  model.dispose();
  hubRequests.length = 0;
  const again = await buildModel({ name: 'mobilenet_v2', weights: 'hf:acme/tiny-net', overrides: OVERRIDES, onProgress: quiet });
  assert.equal(hubRequests.length, 0);
  again.dispose();
});

test('the library prints nothing while downloading unless given onProgress', async () => {
  useCache('cache-silent');
  hubRequests.length = 0;
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const model = await buildModel({ name: 'mobilenet_v2', weights: 'hf:acme/tiny-net', overrides: OVERRIDES });
    model.dispose();
  } finally {
    process.stderr.write = write;
  }
  assert.equal(hubRequests.length > 0, true);
  assert.deepEqual(written.filter((w) => w.includes('acme/tiny-net')), []);
});

test('optional files the repository lacks (404) are skipped; the model keeps its family preprocessing', async () => {
  const cache = useCache('cache-optional');
  const snapshot = await hubSnapshot('acme/no-preprocessor', { onProgress: quiet });
  assert.ok(existsSync(join(snapshot, 'config.json')));
  assert.ok(!existsSync(join(snapshot, 'preprocessor_config.json')));
  assert.ok(snapshot.startsWith(cache));
  const model = await buildModel({ name: 'mobilenet_v2', weights: 'hf:acme/no-preprocessor', overrides: OVERRIDES });
  assert.deepEqual(model.preprocess, createModel('mobilenet_v2', { overrides: OVERRIDES }).preprocess);
  model.dispose();
});

test('a connection dropped mid-body: a clear error, no file under its final name, nothing half-written left', async () => {
  const cache = useCache('cache-broken');
  await assert.rejects(hubSnapshot('acme/broken', { onProgress: quiet }), (e: unknown) => {
    const msg = (e as Error).message;
    assert.match(msg, /the download of acme\/broken\/model\.safetensors from .* broke off after [\d.]+ MB of [\d.]+ MB/);
    assert.match(msg, /nothing was saved under its name, run again to retry/);
    return true;
  });
  const root = join(cache, 'models--acme--broken');
  assert.deepEqual(readdirSync(join(root, 'blobs')), []);
  assert.ok(!existsSync(join(root, 'snapshots', COMMIT, 'model.safetensors')));
  // Not cached, so the next call tries again.
  hubRequests.length = 0;
  await assert.rejects(hubSnapshot('acme/broken', { onProgress: quiet }), /broke off/);
  assert.equal(hubRequests.length, 1);
});

test('a body that does not match its sha256 ETag is not kept', async () => {
  const cache = useCache('cache-corrupt');
  await assert.rejects(hubSnapshot('acme/corrupt', { onProgress: quiet }), new RegExp(`acme/corrupt/model\\.safetensors .* is incomplete or damaged \\(its sha256 is [0-9a-f]{64}, the Hub's ETag ${WEIGHTS_SHA}\\)`));
  assert.deepEqual(readdirSync(join(cache, 'models--acme--corrupt', 'blobs')), []);
});

test('404 for model.safetensors names the repository; an unknown repository says so', async () => {
  useCache('cache-404');
  await assert.rejects(hubSnapshot('acme/no-weights', { onProgress: quiet }), /acme\/no-weights has no model\.safetensors at revision main on http:\/\/127\.0\.0\.1:\d+/);
  await assert.rejects(buildModel({ name: 'mobilenet_v2', weights: 'hf:acme/missing', onProgress: quiet }), /acme\/missing is not on http:\/\/127\.0\.0\.1:\d+ or needs access: RepoNotFound/);
  await assert.rejects(hubSnapshot('../etc', { onProgress: quiet }), /not a Hugging Face model id/);
});

test("offline (no server, or HF_HUB_OFFLINE=1): the message says where to put the files", async () => {
  const cache = useCache('cache-offline');
  const closed = createServer();
  const deadUrl = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
  process.env['HF_ENDPOINT'] = deadUrl;
  await assert.rejects(buildModel({ name: 'mobilenet_v2', weights: 'hf:acme/tiny-net' }), (e: unknown) => {
    const msg = (e as Error).message;
    assert.ok(msg.startsWith(`acme/tiny-net is not in the Hugging Face cache: expected ${join(cache, 'models--acme--tiny-net', 'snapshots', '<revision>', 'model.safetensors')}`), msg);
    assert.match(msg, /downloading it failed: http:\/\/127\.0\.0\.1:\d+ could not be reached \(ECONNREFUSED/);
    assert.match(msg, /huggingface-cli download acme\/tiny-net model\.safetensors/);
    return true;
  });
  process.env['HF_ENDPOINT'] = hubUrl;
  process.env['HF_HUB_OFFLINE'] = '1';
  hubRequests.length = 0;
  await assert.rejects(hubSnapshot('acme/tiny-net'), /is not in the Hugging Face cache: .*HF_HUB_OFFLINE is set/);
  assert.equal(hubRequests.length, 0);
  delete process.env['HF_HUB_OFFLINE'];
});

test('downloadHubFiles keeps a blob it already has and links it into the new snapshot', async () => {
  const cache = useCache('cache-reuse');
  await downloadHubFiles('acme/tiny-net', [{ name: 'model.safetensors' }], { onProgress: quiet });
  cdnRequests.length = 0;
  const snapshot = await downloadHubFiles('acme/tiny-net', [{ name: 'model.safetensors' }, { name: 'config.json', optional: true }], { onProgress: quiet, cacheDir: cache });
  assert.equal(cdnRequests.length, 0);
  assert.deepEqual(readFileSync(join(snapshot, 'model.safetensors')), WEIGHTS);
});

test('progress: a bar with bytes, MB/s and ETA on a terminal; occasional plain lines otherwise', () => {
  const p: DownloadProgress = { repo: 'acme/tiny-net', file: 'model.safetensors', received: 25e6, total: 100e6, elapsedMs: 5000, done: false };
  assert.equal(describeDownload(p, true, 8), 'acme/tiny-net model.safetensors  [##......]  25%  25.0/100.0 MB  5.0 MB/s  ETA 15s');
  assert.equal(describeDownload({ ...p, received: 100e6, elapsedMs: 20000, done: true }, false), 'acme/tiny-net model.safetensors  100%  100.0/100.0 MB  5.0 MB/s  in 20s');
  assert.equal(describeDownload({ ...p, total: null }, false), 'acme/tiny-net model.safetensors  25.0 MB  5.0 MB/s');
  const stream = (isTTY: boolean) => {
    const out: string[] = [];
    return { out, s: { isTTY, write: (t: string) => out.push(t) } as unknown as NodeJS.WriteStream };
  };
  const plain = stream(false);
  const print = downloadProgressPrinter(plain.s);
  print({ ...p, received: 0 });
  for (let i = 1; i < 50; i++) print({ ...p, received: i * 1e6 });
  print({ ...p, received: 100e6, done: true });
  assert.deepEqual(plain.out, ['downloading acme/tiny-net model.safetensors (100.0 MB)\n', 'acme/tiny-net model.safetensors  100%  100.0/100.0 MB  20.0 MB/s  in 5s\n']);
  const tty = stream(true);
  const bar = downloadProgressPrinter(tty.s, 0);
  bar({ ...p, received: 0 });
  bar(p);
  bar({ ...p, received: 100e6, done: true });
  assert.ok(tty.out.every((l) => l.startsWith('\r\x1b[2K')));
  assert.match(tty.out[1]!, /\[#+\.+\]  25%  25\.0\/100\.0 MB  5\.0 MB\/s  ETA 15s$/);
  assert.ok(tty.out.at(-1)!.endsWith('in 5s\n'));
});
