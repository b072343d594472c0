// The kinds of error graft reports, one class per kind of bad input, so the command line can
// answer each with its exit status (docs: README "Exit status") wherever in the library it was
// thrown: 2 for bad input (the user can fix it by changing what they pass), 1 for a failure
// while running, 130 for an interrupt. Every message names the file or field and what to do.

/** Bad input of any kind: exit status 2. */
export class InputError extends Error {
  override name = 'InputError';
  readonly exitCode: number = 2;
}

/** A flag or a configuration field. */
export class ConfigError extends InputError {
  override name = 'ConfigError';
}

/** A data source: an image folder, a manifest, its images or its classes. */
export class DataError extends InputError {
  override name = 'DataError';
}

/** A checkpoint or tensor file: its format, or tensors that do not fit the model. */
export class WeightsError extends InputError {
  override name = 'WeightsError';
}

/** A run folder: not a run, damaged, owned by another run or locked by another process. */
export class RunFolderError extends InputError {
  override name = 'RunFolderError';
}

/** An output path that cannot be written (missing parent, read-only, a folder where a file goes). */
export class OutputPathError extends InputError {
  override name = 'OutputPathError';
}

/** A write that failed while running (disk full, I/O error): exit status 1, the path named. */
export class WriteError extends Error {
  override name = 'WriteError';
  readonly exitCode: number = 1;
}

/** The user pressed Ctrl-C: exit status 130 (128 + SIGINT), as shells report it. */
export class InterruptedError extends Error {
  override name = 'InterruptedError';
  readonly exitCode: number = 130;
}

/** The exit status for an error: its kind's, else 1. */
export function exitCodeOf(e: unknown): number {
  const code = (e as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === 'number' ? code : 1;
}

const WRITE_ADVICE: Record<string, string> = {
  ENOSPC: 'no space left on the device; free space or choose another --output',
  EDQUOT: 'the disk quota is exceeded; free space or choose another --output',
  EFBIG: 'the file is larger than the system allows (ulimit -f); raise the limit or choose another --output',
  EROFS: 'the file system is read-only; choose a writable --output',
  EACCES: 'permission denied; choose a folder you can write',
  EPERM: 'permission denied; choose a folder you can write',
  EISDIR: 'a folder is in the way; give a file path',
  ENOTDIR: 'a parent of the path is a file, not a folder',
  ENOENT: 'the parent folder does not exist',
};

/** A system error from writing `path`, as a WriteError naming the path, the cause and what to do. */
export function writeError(e: unknown, path: string): Error {
  if (e instanceof WriteError || e instanceof InputError) return e;
  const code = (e as NodeJS.ErrnoException).code ?? '';
  const advice = WRITE_ADVICE[code];
  return new WriteError(`cannot write ${path}: ${advice ? `${advice} (${code})` : (e as Error).message}`);
}
