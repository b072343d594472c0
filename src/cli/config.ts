// The run configuration read from a JSON file, with command-line flags overriding its fields.
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { methodSection, runConfigSchema, type RunConfig } from '../train/run-config.js';

import { ConfigError } from '../errors.js';

export { ConfigError };

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
  const parsed = runConfigSchema().safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid configuration${file ? ` (${file} and flags)` : ''}:\n${describe(parsed.error)}`);
  const c = parsed.data;
  checkRunConfig(c);
  return c;
}

/** Checks across fields that the schema cannot express, each naming the field and what to do. */
function checkRunConfig(c: RunConfig): void {
  const bad = (field: string, why: string) => {
    throw new ConfigError(`invalid configuration:\n  ${field}: ${why}`);
  };
  if (c.data.perClass !== undefined && c.data.ratio !== undefined) bad('data', 'data.perClass (--per-class) and data.ratio (--ratio) both split the data; give one of them');
  if (c.task === 'segmentation') {
    if (c.data.perClass !== undefined || c.data.ratio !== undefined || c.data.testPerClass !== undefined) bad('data', 'data.perClass, data.ratio and data.testPerClass split classification data; a segmentation set is split by its own layout (VOC, ADE20K), data.test, or 20% of its pairs for testing');
  } else if (c.segmentation !== undefined) bad('segmentation', "sets the segmentation head, but the task is classification; add --task segmentation (task: 'segmentation') or drop it");
  else if (c.data.perClass === undefined && c.data.ratio === undefined && !c.data.test) bad('data', 'give data.perClass (images per class) or data.ratio (test:train, e.g. [98, 1]), or a separate data.test');
  if (c.output !== undefined && c.output.trim() === '') bad('output', 'is empty; give a folder for the run (--output runs/my-run)');
  if (c.method === 'scratch' && c.weights !== undefined) bad('weights', "method 'scratch' trains from a random initialisation and would ignore the weights; drop --weights or choose another method");
  if (c.data.imageSize !== undefined && c.data.imageSize > 2048) bad('data.imageSize', `${c.data.imageSize} is far beyond what the models are trained at (up to 518); give at most 2048`);
  if (c.data.imageSize !== undefined && c.data.imageSize < 8) bad('data.imageSize', `${c.data.imageSize} is too small for any backbone; give at least 8 (32 for the CNNs)`);
  if (c.method === 'dra') {
    const d = methodSection(c, 'dra') as { rMin?: number; rMax?: number };
    if (d.rMin !== undefined && d.rMax !== undefined && d.rMin > d.rMax) bad('dra.rMin', `${d.rMin} (--rank-min) is above dra.rMax ${d.rMax} (--rank-max); give rMin ≤ rMax`);
  }
  const scaling = c.adapter.alpha / c.adapter.r;
  if (!Number.isFinite(scaling) || scaling > 1e4) bad('adapter.alpha', `${c.adapter.alpha} with rank ${c.adapter.r} scales the adapter by ${scaling.toPrecision(3)}, which overflows training; the usual alpha is 1–4 × the rank (--alpha 16 with --rank 8)`);
  const patterns: [string, string][] = [];
  if (typeof c.adapter.targets === 'string' && c.adapter.targets !== 'all-linear') patterns.push(['adapter.targets', c.adapter.targets]);
  if (typeof c.adapter.exclude === 'string') patterns.push(['adapter.exclude', c.adapter.exclude]);
  for (const [field, pattern] of patterns) {
    try {
      new RegExp(pattern);
    } catch (e) {
      bad(field, `'${pattern}' is not a valid regular expression (${(e as Error).message.replace(/^Invalid regular expression: /, '')}); give a regex over module paths, comma-separated names, or 'all-linear'`);
    }
  }
}
