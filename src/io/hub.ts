// The Hugging Face Hub cache (the layout huggingface_hub writes) and downloading into it:
//   <cache>/models--ORG--NAME/blobs/<etag>                 the file's bytes
//   <cache>/models--ORG--NAME/snapshots/<commit>/<file>    a relative symlink to ../../blobs/<etag>
//   <cache>/models--ORG--NAME/refs/main                    the commit `main` resolved to
// Files stream to a temporary name in blobs/ and are renamed when complete and checked, so an
// interrupted download never leaves a partial file under its final name.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, copyFileSync, unlinkSync, writeFileSync, lstatSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';

/** The Hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(): string {
  return process.env['HF_HUB_CACHE'] ?? join(hfHome(), 'hub');
}

function hfHome(): string {
  return process.env['HF_HOME'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'huggingface');
}

/** $HF_ENDPOINT without a trailing slash, else https://huggingface.co. */
export function hubEndpoint(): string {
  return (process.env['HF_ENDPOINT'] || 'https://huggingface.co').replace(/\/+$/, '');
}

/** As huggingface_hub: $HF_TOKEN, else the token file ($HF_TOKEN_PATH, else $HF_HOME/token); null when neither is set. */
export function hubToken(): string | null {
  const env = process.env['HF_TOKEN']?.trim();
  if (env) return env;
  const file = process.env['HF_TOKEN_PATH'] ?? join(hfHome(), 'token');
  try {
    const t = readFileSync(file, 'utf8').trim();
    return t || null;
  } catch {
    return null;
  }
}

/** HF_HUB_OFFLINE set to 1/true/yes/on, as huggingface_hub reads it. */
export function hubOffline(): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env['HF_HUB_OFFLINE'] ?? '').trim().toLowerCase());
}

/** The cache folder of a model repository: models--ORG--NAME. */
export function hubRepoDir(repo: string, cacheDir = hubCacheDir()): string {
  return join(cacheDir, `models--${repo.split('/').join('--')}`);
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

export function checkRepoId(repo: string): void {
  if (!REPO_ID.test(repo) || repo.includes('..') || repo.includes('--')) {
    throw new Error(`'${repo}' is not a Hugging Face model id: expected ORG/NAME (letters, digits, '-', '_', '.')`);
  }
}

/**
 * The snapshot folder holding `file` (the newest such snapshot by modification time, preferring
 * the commit refs/main names), or null when the cache has none.
 */
export function cachedSnapshot(repo: string, file = 'model.safetensors', cacheDir = hubCacheDir()): string | null {
  const root = hubRepoDir(repo, cacheDir);
  const dir = join(root, 'snapshots');
  if (!existsSync(dir)) return null;
  const snapshots = readdirSync(dir).filter((s) => existsSync(join(dir, s, file)));
  if (!snapshots.length) return null;
  const refMain = join(root, 'refs', 'main');
  const main = existsSync(refMain) ? readFileSync(refMain, 'utf8').trim() : null;
  if (main && snapshots.includes(main)) return join(dir, main);
  snapshots.sort((a, b) => statSync(join(dir, b)).mtimeMs - statSync(join(dir, a)).mtimeMs);
  return join(dir, snapshots[0]!);
}

/** The Hub could not be reached at all (no response): DNS, refused connection, no network. */
export class HubUnreachableError extends Error {
  override name = 'HubUnreachableError';
}

/** An HTTP error status from the Hub, or a download that did not complete. */
export class HubDownloadError extends Error {
  override name = 'HubDownloadError';
  constructor(message: string, readonly status: number | null = null) {
    super(message);
  }
}

export interface DownloadProgress {
  repo: string;
  file: string;
  received: number;
  /** Bytes expected, or null when the server did not say. */
  total: number | null;
  /** Milliseconds since the body started. */
  elapsedMs: number;
  done: boolean;
}

export interface HubFile {
  name: string;
  /** A 404 for an optional file is skipped. */
  optional?: boolean;
}

export interface HubDownloadOptions {
  endpoint?: string;
  token?: string | null;
  cacheDir?: string;
  revision?: string;
  onProgress?: (p: DownloadProgress) => void;
}

const cause = (e: unknown): string => {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const c = err.cause;
  return c ? `${c.code ?? ''}${c.code && c.message ? ': ' : ''}${c.message ?? ''}` || err.message : err.message;
};

/** `W/"abc"` → abc: the ETag as huggingface_hub names blobs. */
function normaliseEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

const MAX_REDIRECTS = 10;

interface Resolved {
  response: Response;
  commit: string | null;
  etag: string | null;
  size: number | null;
  url: string;
  /** The redirect was not followed: `have` said the blob is already cached. */
  cached: boolean;
}

/**
 * GETs `url`, following redirects by hand: the first response's X-Repo-Commit, X-Linked-Etag
 * (LFS files: the sha256 of the content) or ETag, and X-Linked-Size are the file's identity, as
 * huggingface_hub reads them; the token goes only to the endpoint's own origin.
 */
async function resolveFile(url: string, token: string | null, have: (etag: string) => boolean): Promise<Resolved> {
  const origin = new URL(url).origin;
  let commit: string | null = null;
  let etag: string | null = null;
  let size: number | null = null;
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'graft', 'accept-encoding': 'identity' };
    if (token && new URL(current).origin === origin) headers['authorization'] = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(current, { headers, redirect: 'manual' });
    } catch (e) {
      if (hop === 0) throw new HubUnreachableError(`${new URL(current).origin} could not be reached (${cause(e)})`);
      throw new HubDownloadError(`the download of ${url} failed at its redirect to ${current} (${cause(e)})`);
    }
    commit ??= response.headers.get('x-repo-commit');
    const linked = response.headers.get('x-linked-etag');
    etag ??= linked ?? response.headers.get('etag');
    const linkedSize = response.headers.get('x-linked-size');
    if (size === null && linkedSize !== null) size = Number(linkedSize);
    if (response.status >= 300 && response.status < 400 && response.headers.get('location')) {
      await response.body?.cancel();
      if (commit && etag && have(normaliseEtag(etag))) return { response, commit, etag: normaliseEtag(etag), size, url: current, cached: true };
      current = new URL(response.headers.get('location')!, current).toString();
      continue;
    }
    if (size === null && response.ok && response.headers.get('content-length') !== null) size = Number(response.headers.get('content-length'));
    return { response, commit, etag: etag && normaliseEtag(etag), size, url: current, cached: false };
  }
  throw new HubDownloadError(`${url}: more than ${MAX_REDIRECTS} redirects`);
}

/** Streams the body to `tmp`, hashing it; the file is removed on any failure. */
async function streamToFile(r: Resolved, tmp: string, report: (received: number, done: boolean) => void): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const out = createWriteStream(tmp, { flags: 'wx' });
  let bytes = 0;
  try {
    if (!r.response.body) throw new Error('the response has no body');
    const reader = r.response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      hash.update(value);
      bytes += value.byteLength;
      if (!out.write(value)) await new Promise<void>((resolve, reject) => {
        out.once('drain', resolve);
        out.once('error', reject);
      });
      report(bytes, false);
    }
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
    return { bytes, sha256: hash.digest('hex') };
  } catch (e) {
    out.destroy();
    if (!out.closed) await new Promise((resolve) => out.once('close', () => resolve(undefined)));
    removeQuietly(tmp);
    throw Object.assign(e as Error, { bytesReceived: bytes });
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** snapshots/<commit>/<file> → ../../blobs/<etag>, relative as huggingface_hub makes it; a copy where symlinks fail. */
function linkIntoSnapshot(blob: string, pointer: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  try {
    lstatSync(pointer);
    unlinkSync(pointer);
  } catch {
    // no pointer yet
  }
  try {
    symlinkSync(relative(dirname(pointer), blob), pointer);
  } catch {
    copyFileSync(blob, pointer);
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/**
 * Downloads `files` of model repository `repo` at `revision` (default main) into the Hub cache
 * and returns the snapshot folder. The first file fixes the commit (X-Repo-Commit); later files
 * are fetched at that commit. Blobs already in the cache are not fetched again.
 * Errors: HubUnreachableError when no response came (offline); HubDownloadError for an HTTP
 * error (404 names the repository and the file) or a body that broke off or does not match its
 * size or sha256 ETag — nothing is then left under the blob's name.
 */
export async function downloadHubFiles(repo: string, files: readonly HubFile[], opts: HubDownloadOptions = {}): Promise<string> {
  checkRepoId(repo);
  const endpoint = (opts.endpoint ?? hubEndpoint()).replace(/\/+$/, '');
  const token = opts.token === undefined ? hubToken() : opts.token;
  const root = hubRepoDir(repo, opts.cacheDir);
  const revision = opts.revision ?? 'main';
  let commit: string | null = null;
  for (const f of files) {
    const url = `${endpoint}/${repo}/resolve/${encodeURIComponent(commit ?? revision)}/${f.name.split('/').map(encodeURIComponent).join('/')}`;
    let r: Resolved;
    try {
      r = await resolveFile(url, token, (etag) => /^[\w.-]+$/.test(etag) && existsSync(join(root, 'blobs', etag)));
    } catch (e) {
      // Once one file came, the Hub was reachable: a later failure is a broken download, not offline.
      if (commit !== null && e instanceof HubUnreachableError) throw new HubDownloadError(`the download of ${repo}/${f.name} failed: ${e.message}`);
      throw e;
    }
    if (!r.response.ok && !r.cached) {
      await r.response.body?.cancel();
      const status = r.response.status;
      if (status === 404 && f.optional) continue;
      const code = r.response.headers.get('x-error-code');
      const why = status === 404 && code !== 'RepoNotFound'
        ? `${repo} has no ${f.name} at revision ${commit ?? revision} on ${endpoint}${f.name.endsWith('.safetensors') ? ' (graft reads safetensors checkpoints; a repository with only pytorch_model.bin needs converting)' : ''}`
        : status === 401 || status === 403 || code === 'RepoNotFound' || code === 'GatedRepo'
          ? `${repo} is not on ${endpoint} or needs access: ${code ?? `HTTP ${status}`}${hubTokenHint(token)}`
          : `${repo}: ${f.name} could not be downloaded from ${url} (HTTP ${status} ${r.response.statusText})`;
      throw new HubDownloadError(why, status);
    }
    if (!r.commit) {
      await r.response.body?.cancel();
      throw new HubDownloadError(`${url} answered without an X-Repo-Commit header, so it is not a Hugging Face Hub endpoint graft can cache from (HF_ENDPOINT=${endpoint})`);
    }
    if (commit === null) {
      commit = r.commit;
      mkdirSync(join(root, 'refs'), { recursive: true });
      if (!/^[0-9a-f]{40}$/.test(revision)) writeFileSync(join(root, 'refs', revision), commit);
    }
    const etag = r.etag;
    if (!etag || !/^[\w.-]+$/.test(etag)) {
      await r.response.body?.cancel();
      throw new HubDownloadError(`${url} answered without a usable ETag (${JSON.stringify(etag)}), which names the file in the cache`);
    }
    const blobs = join(root, 'blobs');
    const blob = join(blobs, etag);
    const pointer = join(root, 'snapshots', commit, f.name);
    if (existsSync(blob)) {
      await r.response.body?.cancel();
    } else {
      mkdirSync(blobs, { recursive: true });
      const tmp = join(blobs, `${etag}.${process.pid}.${randomBytes(4).toString('hex')}.incomplete`);
      const started = Date.now();
      const report = (received: number, done: boolean) => opts.onProgress?.({ repo, file: f.name, received, total: r.size, elapsedMs: Date.now() - started, done });
      report(0, false);
      let got: { bytes: number; sha256: string };
      try {
        got = await streamToFile(r, tmp, report);
      } catch (e) {
        const n = (e as { bytesReceived?: number }).bytesReceived ?? 0;
        throw new HubDownloadError(`the download of ${repo}/${f.name} from ${r.url} broke off after ${mb(n)}${r.size !== null ? ` of ${mb(r.size)}` : ''} (${cause(e)}); nothing was saved under its name, run again to retry`);
      }
      const wrong = r.size !== null && got.bytes !== r.size
        ? `${got.bytes} bytes arrived, the Hub announced ${r.size}`
        : /^[0-9a-f]{64}$/.test(etag) && got.sha256 !== etag ? `its sha256 is ${got.sha256}, the Hub's ETag ${etag}` : null;
      if (wrong) {
        removeQuietly(tmp);
        throw new HubDownloadError(`the download of ${repo}/${f.name} from ${r.url} is incomplete or damaged (${wrong}); nothing was saved under its name, run again to retry`);
      }
      renameSync(tmp, blob);
      report(got.bytes, true);
    }
    linkIntoSnapshot(blob, pointer);
  }
  if (commit === null) throw new HubDownloadError(`${repo}: none of ${files.map((f) => f.name).join(', ')} is on ${endpoint}`, 404);
  return join(root, 'snapshots', commit);
}

function hubTokenHint(token: string | null): string {
  return token ? ' (the token in HF_TOKEN was sent; check that it has access)' : ' (for a private or gated repository set HF_TOKEN to a token with access)';
}
