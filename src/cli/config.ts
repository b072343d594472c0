// The run configuration read from a JSON file, with command-line flags overriding its fields.
import { readFileSync } from 'node:fs';
import { checkRunConfig, describeIssues as describe, runConfigSchema, type RunConfig } from '../train/run-config.js';

import { ConfigError } from '../errors.js';

export { ConfigError };

export { runConfigSchema, type RunConfig } from '../train/run-config.js';


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
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${file} must hold a JSON object such as { "model": …, "data": { … } }; it holds ${parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed}`);
    }
    raw = parsed as Record<string, unknown>;
  }
  for (const [path, value] of Object.entries(overrides)) if (value !== undefined) setPath(raw, path, value);
  if (raw['model'] === undefined) {
    throw new ConfigError(`no backbone given: add --model NAME${file ? ` (or "model" in ${file})` : ''}, e.g. --model nsfwjs_mobilenet_v2 (pretrained MobileNetV2, installed with graft); graft inspect --list names every model`);
  }
  const parsed = runConfigSchema().safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration${file ? ` (${file} and flags)` : ''}:\n${describe(parsed.error)}`);
  const c = parsed.data;
  checkRunConfig(c);
  return c;
}

