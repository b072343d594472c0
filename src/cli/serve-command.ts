// `graft serve --adapter NAME=RUN_DIR ...`: flags into a GraftServer (src/serve/), SIGTERM/SIGINT drain.
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { ConfigError } from '../errors.js';
import { AdapterHost } from '../serve/host.js';
import { GraftServer, type ServeOptions } from '../serve/server.js';

export interface ServeCommandOptions extends ServeOptions {
  adapter: [string, string][];
  host: string;
  port: number;
  /** Adapters kept merged and folded for fast inference (AdapterHost.mergedCacheSize; default 4). */
  mergedAdapters?: number;
}

/** Loads the adapters onto one base, listens, and drains on SIGTERM / SIGINT. Resolves once closed. */
export async function serveCommand(o: ServeCommandOptions, log: (l: string) => void = console.log): Promise<void> {
  if (!o.adapter.length) throw new ConfigError('graft serve needs at least one --adapter NAME=RUN_DIR');
  const [[firstName, firstDir], ...rest] = o.adapter as [[string, string], ...[string, string][]];
  const host = await AdapterHost.open(firstName, firstDir);
  if (o.mergedAdapters !== undefined) host.mergedCacheSize = o.mergedAdapters;
  try {
    for (const [name, dir] of rest) host.add(name, dir);
  } catch (e) {
    host.dispose();
    throw e;
  }
  const server = new GraftServer(host, o);
  const address = await server.listen(o.port, o.host);
  log(`graft serve: listening on ${address} (adapters: ${host.list().map((a) => `${a.name}=${a.runDir}`).join(', ')})`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log(`graft serve: ${sig}: draining in-flight requests`);
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      void server.drain().then(() => {
        log('graft serve: closed');
        resolve();
      });
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  host.dispose();
}

const int = (flag: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${flag} must be an integer >= ${min}; got '${v}'`);
  return n;
};

export function registerServeCommand(program: Command, fail: (e: unknown) => never): void {
  program
    .command('serve')
    .description('an HTTP server holding one base model and adapters over it: POST /v1/predict?adapter=NAME, /v1/adapters, /healthz, /metrics')
    .option('--adapter <name=run>', 'an adapter to serve: a name and the run folder (repeatable; every run on the same base)', (v: string, acc: [string, string][]) => {
      const i = v.indexOf('=');
      if (i <= 0 || i === v.length - 1) throw new InvalidArgumentError(`--adapter takes NAME=RUN_DIR; got '${v}'`);
      return [...acc, [v.slice(0, i), v.slice(i + 1)] as [string, string]];
    }, [] as [string, string][])
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', int('--port', 0), 8080)
    .option('--max-batch <n>', 'largest images per forward pass', int('--max-batch', 1), 16)
    .option('--batch-window <ms>', 'how long a request waits for others of its adapter', int('--batch-window', 0), 5)
    .option('--max-queue <n>', 'requests admitted at once; more get 429', int('--max-queue', 1), 64)
    .option('--max-body <bytes>', 'largest request body', int('--max-body', 1), 16 * 1024 * 1024)
    .option('--merged-adapters <n>', 'adapters kept merged into a copy of their layers\' weights for fast inference (0: none)', int('--merged-adapters', 0), 4)
    .option('--token <token>', 'require Authorization: Bearer <token> (or set GRAFT_SERVE_TOKEN)')
    .action(async (o: { adapter: [string, string][]; host: string; port: number; maxBatch: number; batchWindow: number; maxQueue: number; maxBody: number; mergedAdapters: number; token?: string }) => {
      try {
        await serveCommand({ adapter: o.adapter, host: o.host, port: o.port, maxBatch: o.maxBatch, batchWindowMs: o.batchWindow, maxQueue: o.maxQueue, maxBodyBytes: o.maxBody, mergedAdapters: o.mergedAdapters, token: o.token ?? process.env['GRAFT_SERVE_TOKEN'] });
      } catch (e) {
        fail(e);
      }
    });
}
