// Atomic file writes: the bytes go to a temporary file beside the target, are flushed to disk,
// and replace the target by rename, so a crash or kill -9 leaves the old file or the new one,
// never a partial one; on failure the temporary file is removed.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeError } from '../errors.js';

/** Writes `chunks` (text or bytes) to `path` atomically; a failure names the path (WriteError). */
export function writeFileAtomic(path: string, ...chunks: (string | Uint8Array)[]): void {
  writeChunksAtomic(path, chunks);
}

/** writeFileAtomic from an iterable: each chunk is made when it is written (a large file a piece at a time). */
export function writeChunksAtomic(path: string, chunks: Iterable<string | Uint8Array>): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw writeError(e, path);
  }
  let open = true;
  try {
    for (const c of chunks) writeSync(fd, typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
    fsyncSync(fd);
    closeSync(fd);
    open = false;
    renameSync(tmp, path);
  } catch (e) {
    if (open) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // the temporary file was never created or is already gone
    }
    throw writeError(e, path);
  }
}
