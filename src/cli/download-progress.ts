// Download progress on stderr: a bar redrawn in place (bytes, MB/s, ETA) on a terminal; a plain
// line at the start, every 10 seconds and at the end otherwise.
import type { DownloadProgress } from '../io/hub.js';

const mb = (n: number) => (n / 1e6).toFixed(1);

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** One line: file, bar, bytes, rate and ETA (`width` cells of bar on a terminal). */
export function describeDownload(p: DownloadProgress, bar: boolean, width = 24): string {
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.received / seconds : 0;
  const size = p.total !== null ? `${mb(p.received)}/${mb(p.total)} MB` : `${mb(p.received)} MB`;
  const parts = [`${p.repo} ${p.file}`];
  if (bar && p.total) {
    const filled = Math.min(width, Math.round((p.received / p.total) * width));
    parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`);
  }
  if (p.total) parts.push(`${Math.floor((100 * p.received) / p.total)}%`);
  parts.push(size, `${mb(rate)} MB/s`);
  if (p.done) parts.push(`in ${duration(seconds)}`);
  else if (p.total && rate > 0) parts.push(`ETA ${duration((p.total - p.received) / rate)}`);
  return parts.join('  ');
}

/** An onProgress callback (buildModel, resolveCheckpoint, downloadHubFiles) writing to `stream`; the library itself prints nothing. */
export function downloadProgressPrinter(stream: NodeJS.WriteStream = process.stderr, intervalMs = stream.isTTY ? 100 : 10_000): (p: DownloadProgress) => void {
  let last = 0;
  return (p) => {
    const now = Date.now();
    const first = p.received === 0 && !p.done;
    if (!first && !p.done && now - last < intervalMs) return;
    last = now;
    if (stream.isTTY) {
      stream.write(`\r\x1b[2K${describeDownload(p, true)}${p.done ? '\n' : ''}`);
    } else if (first) {
      stream.write(`downloading ${p.repo} ${p.file}${p.total !== null ? ` (${mb(p.total)} MB)` : ''}\n`);
    } else stream.write(`${describeDownload(p, false)}\n`);
  };
}
