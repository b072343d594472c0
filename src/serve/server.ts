// `graft serve`: an HTTP server (fastify) over an AdapterHost. Requests for one adapter are
// batched within a short window; a bounded queue answers 429 when full (503 while draining);
// every error is JSON { error: { code, message } } naming the problem.
//
//   POST   /v1/predict?adapter=NAME   image as the raw body (image/*, application/octet-stream) or multipart field
//   GET    /v1/adapters               the served adapters
//   POST   /v1/adapters               { "name": NAME, "run": RUN_DIR } loads an adapter run while serving
//   DELETE /v1/adapters/NAME          unloads it (after its queued requests are answered)
//   GET    /healthz                   { status: "ok" | "draining" }
//   GET    /metrics                   Prometheus text format
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { timingSafeEqual } from 'node:crypto';
import { InputError } from '../errors.js';
import { decodeImage } from '../data/image.js';
import { prepareImage } from '../data/transforms.js';
import { Generator } from '../tensor/random.js';
import { AdapterHost, type ServedAdapter } from './host.js';
import { Metrics } from './metrics.js';

export interface ServeOptions {
  /** Largest images per forward pass (default 16). */
  maxBatch?: number;
  /** How long the first request of a batch waits for others still being read or decoded, in ms (default 5). */
  batchWindowMs?: number;
  /** Requests admitted (being decoded, queued or computed) before new ones get 429 (default 64). */
  maxQueue?: number;
  /** Largest request body in bytes (default 16 MiB). */
  maxBodyBytes?: number;
  /** When set, every route but /healthz needs `Authorization: Bearer <token>`. */
  token?: string;
  /** fastify's logger (default off). */
  logger?: boolean;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

interface Pending {
  data: Float32Array;
  resolve: (p: Float32Array) => void;
  reject: (e: Error) => void;
}

interface Lane {
  pending: Pending[];
  timer: { timeout?: NodeJS.Timeout; immediate?: NodeJS.Immediate } | null;
}

/** Requests admitted for one adapter and not yet answered (read, decoded or queued), and who waits for none to be left. */
interface InFlight {
  count: number;
  idle: (() => void)[];
}

export class GraftServer {
  readonly app: FastifyInstance;
  readonly metrics = new Metrics();
  private readonly lanes = new Map<string, Lane>();
  private admitted = 0;
  /** Adapters being unloaded: unknown to new requests, the ones already admitted still answered. */
  private readonly removing = new Set<string>();
  private readonly inFlight = new Map<string, InFlight>();
  private draining = false;
  private readonly opts: Required<Omit<ServeOptions, 'token' | 'logger'>> & Pick<ServeOptions, 'token'>;

  constructor(readonly host: AdapterHost, opts: ServeOptions = {}) {
    this.opts = { maxBatch: opts.maxBatch ?? 16, batchWindowMs: opts.batchWindowMs ?? 5, maxQueue: opts.maxQueue ?? 64, maxBodyBytes: opts.maxBodyBytes ?? 16 * 1024 * 1024, token: opts.token };
    this.app = Fastify({ logger: opts.logger ?? false, bodyLimit: this.opts.maxBodyBytes, forceCloseConnections: 'idle', return503OnClosing: true });
    this.routes();
  }

  private routes(): void {
    const app = this.app;
    void app.register(multipart, { limits: { fileSize: this.opts.maxBodyBytes, files: 1, fields: 4 } });
    app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/i, { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

    app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
      if (err instanceof HttpError) return reply.code(err.status).send({ error: { code: err.code, message: err.message } });
      if (err instanceof InputError) return reply.code(400).send({ error: { code: 'bad_request', message: err.message } });
      const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
      const code = status === 413 ? 'body_too_large' : status === 415 ? 'unsupported_content_type' : status === 400 ? 'bad_request' : status >= 500 ? 'internal' : 'error';
      const message = status === 413 ? `the request body is larger than the limit of ${this.opts.maxBodyBytes} bytes; send a smaller image`
        : status === 415 ? `content type '${String(_req.headers['content-type'])}' is not accepted; send the image as the raw body (image/jpeg, image/png, image/webp, application/octet-stream) or as multipart/form-data`
          : err.message;
      return reply.code(status).send({ error: { code, message } });
    });
    app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}; routes: POST /v1/predict, GET|POST /v1/adapters, DELETE /v1/adapters/NAME, GET /healthz, GET /metrics` } }));

    app.addHook('onRequest', async (req: FastifyRequest) => {
      if (this.opts.token === undefined || req.url === '/healthz') return;
      const auth = req.headers.authorization ?? '';
      const given = Buffer.from(auth.startsWith('Bearer ') ? auth.slice(7) : '');
      const want = Buffer.from(this.opts.token);
      if (given.length !== want.length || !timingSafeEqual(given, want)) throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token: send Authorization: Bearer <token>');
    });

    // While draining, each answer closes its connection, so keep-alive sockets do not hold the close.
    app.addHook('onSend', async (_req, reply) => {
      if (this.draining) reply.header('connection', 'close');
    });

    app.get('/healthz', async () => ({ status: this.draining ? 'draining' : 'ok', adapters: this.host.list().map((a) => a.name) }));
    app.get('/metrics', async (_req, reply) => {
      reply.type('text/plain; version=0.0.4; charset=utf-8');
      return this.metrics.render(this.admitted, [...this.lanes].map(([n, l]) => [n, l.pending.length]));
    });
    app.get('/v1/adapters', async () => ({ adapters: this.host.list().map(describe) }));
    app.post('/v1/adapters', async (req, reply) => {
      const body = req.body as { name?: unknown; run?: unknown } | undefined;
      if (!body || typeof body !== 'object' || typeof body.name !== 'string' || typeof body.run !== 'string') {
        throw new HttpError(400, 'bad_request', 'POST /v1/adapters takes JSON { "name": NAME, "run": RUN_DIR }');
      }
      if (this.host.has(body.name)) throw new HttpError(409, 'adapter_exists', `an adapter named '${body.name}' is already served; DELETE /v1/adapters/${body.name} first or choose another name`);
      const a = this.host.add(body.name, body.run);
      return reply.code(201).send({ adapter: describe(a) });
    });
    app.delete('/v1/adapters/:name', async (req) => {
      const { name } = req.params as { name: string };
      if (!this.host.has(name) || this.removing.has(name)) throw this.unknown(name);
      this.removing.add(name);
      // Every request admitted before this one is answered first, whether it was still being read, decoded or queued.
      await this.whenIdle(name);
      this.lanes.delete(name);
      this.removing.delete(name);
      this.host.remove(name);
      this.metrics.forget(name);
      return { unloaded: name };
    });
    app.post('/v1/predict', async (req) => this.predict(req));
  }

  private unknown(name: string): HttpError {
    return new HttpError(404, 'unknown_adapter', `no adapter '${name}' is served; served: ${this.host.list().map((a) => a.name).join(', ') || 'none'} (GET /v1/adapters)`);
  }

  private adapterOf(req: FastifyRequest): ServedAdapter {
    const q = (req.query as { adapter?: unknown }).adapter;
    const served = this.host.list().filter((a) => !this.removing.has(a.name));
    if (q === undefined) {
      if (served.length === 1) return served[0]!;
      throw new HttpError(400, 'adapter_required', `several adapters are served (${served.map((a) => a.name).join(', ')}); choose one with ?adapter=NAME`);
    }
    if (typeof q !== 'string') throw new HttpError(400, 'bad_request', '?adapter must be given once');
    const a = this.host.get(q);
    if (!a || this.removing.has(q)) throw this.unknown(q);
    return a;
  }

  private async imageBytes(req: FastifyRequest): Promise<Buffer> {
    if (req.isMultipart()) {
      let file;
      try {
        file = await req.file();
      } catch (e) {
        throw new HttpError(400, 'bad_multipart', `the multipart body could not be read: ${(e as Error).message}`);
      }
      if (!file) throw new HttpError(400, 'no_image', 'the multipart body holds no file; send the image as a file field (e.g. -F image=@photo.jpg)');
      try {
        return await file.toBuffer();
      } catch (e) {
        const err = e as Error & { statusCode?: number };
        if (err.statusCode === 413) throw new HttpError(413, 'body_too_large', `the image is larger than the limit of ${this.opts.maxBodyBytes} bytes`);
        throw new HttpError(400, 'bad_multipart', err.message);
      }
    }
    const body = req.body;
    if (!Buffer.isBuffer(body)) {
      throw new HttpError(415, 'unsupported_content_type', `content type '${String(req.headers['content-type'] ?? 'none')}' is not an image; send the image as the raw body (image/jpeg, image/png, image/webp, application/octet-stream) or as multipart/form-data`);
    }
    if (body.length === 0) throw new HttpError(400, 'no_image', 'the request body is empty; send an image');
    return body;
  }

  private async predict(req: FastifyRequest) {
    const start = process.hrtime.bigint();
    let label = 'unknown';
    let status = 200;
    try {
      if (this.draining) throw new HttpError(503, 'draining', 'the server is shutting down; retry on another instance');
      const adapter = this.adapterOf(req);
      label = adapter.name;
      if (this.admitted >= this.opts.maxQueue) throw new HttpError(429, 'queue_full', `the queue is full (${this.opts.maxQueue} requests); retry later`);
      this.admitted++;
      this.track(adapter.name, 1);
      try {
        const bytes = await this.imageBytes(req);
        const [c, h, w] = this.host.preprocess.inputSize;
        const data = new Float32Array(c * h * w);
        try {
          await prepareImage(await decodeImage(bytes, 'the request body'), this.host.preprocess, null, new Generator(0), data, 0);
        } catch (e) {
          throw new HttpError(400, 'bad_image', `the image could not be decoded: ${(e as Error).message}; send a JPEG, PNG, WebP, GIF, TIFF or AVIF image`);
        }
        if (!this.host.has(adapter.name)) throw this.unknown(adapter.name);
        const probs = await this.enqueue(adapter.name, data);
        let best = 0;
        for (let k = 1; k < probs.length; k++) if (probs[k]! > probs[best]!) best = k;
        return {
          adapter: adapter.name,
          label: adapter.classes[best]!,
          score: probs[best]!,
          scores: Object.fromEntries(adapter.classes.map((cl, k) => [cl, probs[k]!])),
        };
      } finally {
        this.admitted--;
        this.track(adapter.name, -1);
      }
    } catch (e) {
      status = e instanceof HttpError ? e.status : (e as { statusCode?: number }).statusCode ?? 500;
      throw e;
    } finally {
      this.metrics.observe(label, status, Number(process.hrtime.bigint() - start) / 1e9);
    }
  }

  private enqueue(name: string, data: Float32Array): Promise<Float32Array> {
    let lane = this.lanes.get(name);
    if (!lane) {
      lane = { pending: [], timer: null };
      this.lanes.set(name, lane);
    }
    const l = lane;
    return new Promise<Float32Array>((resolve, reject) => {
      l.pending.push({ data, resolve, reject });
      // Waiting only pays while other admitted requests are still being read or decoded: once
      // every one of them is queued, nothing more can join the batch within the window.
      if (this.queued() >= this.admitted) {
        for (const [n, other] of this.lanes) if (other.pending.length) this.schedule(n, other, 0);
      } else if (l.pending.length >= this.opts.maxBatch) this.schedule(name, l, 0);
      else if (!l.timer) this.schedule(name, l, this.opts.batchWindowMs);
    });
  }

  /** Runs the lane's next batch in `ms` ms, or at the next turn of the event loop for 0 (a timer would wait at least 1 ms). */
  private schedule(name: string, lane: Lane, ms: number): void {
    this.cancel(lane);
    const run = () => {
      lane.timer = null;
      this.runBatch(name, lane);
    };
    lane.timer = ms > 0 ? { timeout: setTimeout(run, ms) } : { immediate: setImmediate(run) };
  }

  private cancel(lane: Lane): void {
    if (lane.timer?.timeout) clearTimeout(lane.timer.timeout);
    if (lane.timer?.immediate) clearImmediate(lane.timer.immediate);
    lane.timer = null;
  }

  /** Requests decoded and waiting in some lane. */
  private queued(): number {
    let n = 0;
    for (const l of this.lanes.values()) n += l.pending.length;
    return n;
  }

  private runBatch(name: string, lane: Lane): void {
    // Batches of 1, 2, 4, 8, … only (the rest runs next, at once): a handful of batch shapes keeps
    // the buffer pool to a handful of size classes, so resident memory stays flat under any load.
    const batch = lane.pending.splice(0, batchSizeFor(lane.pending.length, this.opts.maxBatch));
    if (batch.length) {
      const size = batch[0]!.data.length;
      const data = new Float32Array(size * batch.length);
      batch.forEach((p, i) => data.set(p.data, i * size));
      try {
        const out = this.host.predict(name, data, batch.length);
        this.metrics.batch(name, batch.length);
        batch.forEach((p, i) => p.resolve(out[i]!));
      } catch (e) {
        for (const p of batch) p.reject(e as Error);
      }
    }
    if (lane.pending.length) this.schedule(name, lane, 0);
  }

  private track(name: string, delta: number): void {
    let f = this.inFlight.get(name);
    if (!f) this.inFlight.set(name, (f = { count: 0, idle: [] }));
    f.count += delta;
    if (f.count === 0) {
      this.inFlight.delete(name);
      for (const r of f.idle) r();
    }
  }

  /** Resolves once no request admitted for `name` is left unanswered. */
  private whenIdle(name: string): Promise<void> {
    const f = this.inFlight.get(name);
    return f ? new Promise<void>((r) => f.idle.push(r)) : Promise.resolve();
  }

  async listen(port: number, host = '127.0.0.1'): Promise<string> {
    return this.app.listen({ port, host });
  }

  /** Stops taking requests (new ones get 503), answers those in flight, then closes. */
  async drain(): Promise<void> {
    this.draining = true;
    await this.app.close();
  }
}

/** The largest power of two that is at most both `pending` and `maxBatch` (at least 1). */
export function batchSizeFor(pending: number, maxBatch: number): number {
  let n = 1;
  while (n * 2 <= Math.min(pending, maxBatch)) n *= 2;
  return n;
}

function describe(a: ServedAdapter) {
  return { name: a.name, run: a.runDir, method: a.method, classes: a.classes };
}
