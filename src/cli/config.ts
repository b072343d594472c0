// The run configuration read from a JSON file, with command-line flags overriding its fields.
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { runConfigSchema, type RunConfig } from '../train/run-config.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export { runConfigSchema, type RunConfig } from '../train/run-config.js';

/** One line per problem, each naming the field: "train.lr: expected number, received string". */
function describe(error: z.ZodError): string {
  return error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(config)'}: ${i.message}`).join('\n');
}

/** Sets a dotted path in a plain object ("train.lr" = 0.01). */
export function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = value;
}

/** Reads the config file (if any), applies flag overrides (dotted paths), and validates. */
export function loadRunConfig(file: string | undefined, overrides: Record<string, unknown>): RunConfig {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`);
    }
  }
  for (const [path, value] of Object.entries(overrides)) if (value !== undefined) setPath(raw, path, value);
  const parsed = runConfigSchema().safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration${file ? ` (${file} and flags)` : ''}:\n${describe(parsed.error)}`);
  const c = parsed.data;
  if ((c.data.perClass === undefined) === (c.data.ratio === undefined) && !c.data.test) {
    throw new ConfigError('invalid configuration:\n  data: give data.perClass (images per class) or data.ratio (test:train, e.g. [98, 1]), or a separate data.test');
  }
  return c;
}
