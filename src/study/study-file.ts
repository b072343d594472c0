// The study file: a base run configuration, a grid over any of its fields, seeds and named
// baseline rows, validated like the run configuration (every error names the field), and its
// expansion into cells: one run configuration per (grid point or baseline row) × seed.
//
//   {
//     "name": "qlora-dora",
//     "base": { "model": "dinov2_small", "data": { "source": "…", "perClass": 10 } },
//     "grid": {
//       "method+adapter.targets+adapter.r": [["lora", "q_proj", 8], ["dora", "all-linear", 16]],
//       "data.perClass": [5, 10]
//     },
//     "baselines": { "scratch": { "method": "scratch" }, "frozen": { "method": "linear-probe" } },
//     "seeds": [0, 1, 2],
//     "columns": ["macroF1", "data.perClass"]
//   }
//
// A grid key is a dotted path into the run configuration, or several joined by '+' whose values
// are rows of paired values (one per path). The grid is the product of its keys, in file order;
// each baseline row is the base configuration with its fields set (dotted paths too), not crossed
// with the grid; a value of null removes the field from the base (a scratch baseline dropping the
// base's weights). Every cell runs under every seed (train.seed).
import { existsSync, readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { checkRunConfig, runConfigSchema, type RunConfig } from '../train/run-config.js';

/** Columns a study may add to the table beyond the papers' default ones. */
export const SUMMARY_COLUMNS = ['accuracy', 'weightedF1', 'macroF1', 'mAP', 'trainableParams', 'trainablePercent', 'trainSeconds', 'latencyMs', 'throughput', 'peakMemoryMB'] as const;

const fieldPath = z.string().regex(/^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$/, { error: 'a dotted path into the run configuration such as "adapter.r"' });

const studySchema = z.object({
  /** The study's name (default: the file's name without .json). */
  name: z.string().min(1).regex(/^[\w.-]+$/, { error: 'letters, digits, ".", "_" and "-" only' }).optional(),
  description: z.string().optional(),
  /** The run configuration every cell starts from (no `output`: the study places each cell's folder). */
  base: z.record(z.string(), z.unknown()),
  /** Dotted path (or paths joined by '+') → the values it takes. */
  grid: z.record(z.string(), z.array(z.unknown()).min(1, { error: 'give at least one value' })).default({}),
  /** Named rows outside the grid: name → fields set on the base configuration (dotted paths). */
  baselines: z.record(z.string().regex(/^[\w.-]+$/, { error: 'a row name of letters, digits, ".", "_" and "-"' }), z.record(z.string(), z.unknown())).default({}),
  seeds: z.array(z.number().int()).min(1).default([0]),
  /** More table columns: summary fields (SUMMARY_COLUMNS) or dotted configuration paths. */
  columns: z.array(z.string()).default([]),
  /** The study's folder when --output is not given (default: runs/<name>). */
  output: z.string().optional(),
}).strict();

export type StudyFile = z.infer<typeof studySchema>;

export interface StudyCell {
  /** Folder name under cells/, unique in the study: the row's id and the seed. */
  id: string;
  /** The table row the cell belongs to (the same for every seed). */
  row: string;
  /** What the grid set for this row ({ path: value }), or the baseline's fields. */
  values: Record<string, unknown>;
  /** Whether the row is a named baseline. */
  baseline: boolean;
  seed: number;
  /** The validated run configuration, its output left for the runner to set. */
  config: RunConfig;
}

export interface Study {
  name: string;
  description?: string;
  file: string | null;
  output?: string;
  seeds: number[];
  columns: string[];
  /** Grid paths in file order (paired keys split), the columns the table shows for them. */
  axes: string[];
  rows: { id: string; label: string; baseline: boolean; values: Record<string, unknown> }[];
  cells: StudyCell[];
}

const KNOWN_TOP = new Set(['model', 'modelOverrides', 'weights', 'data', 'method', 'adapter', 'head', 'headFrom', 'train', 'output', 'reportTo']);

/** Sets a dotted path; null removes the field (a baseline dropping the base's weights). */
function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null || Array.isArray(cur[p])) {
      if (value === null) return; // nothing there to remove
      cur[p] = {};
    }
    cur = cur[p] as Record<string, unknown>;
  }
  if (value === null) delete cur[parts[parts.length - 1]!];
  else cur[parts[parts.length - 1]!] = value;
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

/** A short text for a value in a row's name and folder ("q_proj", "all-linear", "8"). */
function short(v: unknown): string {
  if (Array.isArray(v)) return v.map(short).join('+');
  if (v !== null && typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}=${short(x)}`).join(',');
  return String(v);
}

const slug = (s: string) => s.replace(/[^\w.+=-]+/g, '_').replace(/^[._]+/, '').slice(0, 80) || 'row';

function fail(where: string, lines: string[]): never {
  throw new ConfigError(`invalid study ${where}:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

/** Validates a study object (from a file or a program) and expands it into its cells. */
export function parseStudy(raw: unknown, where = '(study)'): Study {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(where, ['(study): must be a JSON object { "base": { … }, "grid": { … }, "seeds": [ … ] }']);
  const parsed = studySchema.safeParse(raw);
  if (!parsed.success) fail(where, parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(study)'}: ${i.message}`));
  const s = parsed.data;
  if ('output' in s.base) fail(where, ['base.output: a study places each cell in its own folder (<output>/cells/<row>-s<seed>); give the study\'s folder as "output" or --output']);
  if (new Set(s.seeds).size !== s.seeds.length) fail(where, [`seeds: ${JSON.stringify(s.seeds)} repeats a seed; each seed runs once per row`]);

  // The grid's axes: each key one path or several paired ones.
  const axes: { key: string; paths: string[]; values: unknown[][] }[] = [];
  const allPaths: string[] = [];
  for (const [key, values] of Object.entries(s.grid)) {
    const paths = key.split('+');
    const issues: string[] = [];
    for (const p of paths) {
      if (!fieldPath.safeParse(p).success) issues.push(`grid["${key}"]: '${p}' is not a dotted path into the run configuration (such as "adapter.r" or "method+adapter.targets+adapter.r")`);
      else if (!KNOWN_TOP.has(p.split('.')[0]!) && !(p.split('.')[0]! in runConfigSchemaShape())) issues.push(`grid["${key}"]: '${p}' is no field of the run configuration (top-level fields: ${[...new Set([...KNOWN_TOP, ...Object.keys(runConfigSchemaShape())])].join(', ')})`);
      else if (p === 'output' || p === 'train.seed') issues.push(`grid["${key}"]: '${p}' is set by the study itself (${p === 'output' ? 'each cell has its own folder' : 'use "seeds"'})`);
      else if (allPaths.includes(p)) issues.push(`grid["${key}"]: '${p}' appears in two grid keys; give each field once`);
      else allPaths.push(p);
    }
    const rows = values.map((v, i) => {
      if (paths.length === 1) return [v];
      if (!Array.isArray(v) || v.length !== paths.length) {
        issues.push(`grid["${key}"][${i}]: paired values must be a list of ${paths.length} (one for each of ${paths.join(', ')}); got ${JSON.stringify(v)}`);
        return [];
      }
      return v as unknown[];
    });
    if (issues.length) fail(where, issues);
    axes.push({ key, paths, values: rows });
  }

  const rows: Study['rows'] = [];
  const cells: StudyCell[] = [];
  const ids = new Set<string>();
  const uniqueId = (label: string) => {
    let id = slug(label);
    for (let k = 2; ids.has(id); k++) id = `${slug(label)}-${k}`;
    ids.add(id);
    return id;
  };
  const addRow = (label: string, values: Record<string, unknown>, baseline: boolean, whereInFile: string) => {
    const id = uniqueId(label);
    rows.push({ id, label, baseline, values });
    for (const seed of s.seeds) {
      const config = clone(s.base);
      for (const [p, v] of Object.entries(values)) setPath(config, p, clone(v));
      setPath(config, 'train.seed', seed);
      const r = runConfigSchema().safeParse(config);
      if (!r.success) fail(where, r.error.issues.map((i) => `${whereInFile} → ${i.path.length ? i.path.join('.') : '(config)'}: ${i.message}`));
      try {
        checkRunConfig(r.data);
      } catch (e) {
        fail(where, [`${whereInFile} → ${(e as Error).message.replace(/^invalid configuration:\n\s*/, '')}`]);
      }
      cells.push({ id: `${id}-s${seed}`, row: id, values, baseline, seed, config: r.data });
    }
  };

  // The product of the axes, in file order (the first key varies slowest).
  const points: { values: Record<string, unknown>; index: number[] }[] = [{ values: {}, index: [] }];
  for (const axis of axes) {
    const next: typeof points = [];
    for (const p of points) {
      axis.values.forEach((row, i) => {
        const values = { ...p.values };
        axis.paths.forEach((path, j) => { values[path] = row[j]; });
        next.push({ values, index: [...p.index, i] });
      });
    }
    points.splice(0, points.length, ...next);
  }
  const gridUsed = axes.length > 0;
  if (gridUsed || Object.keys(s.baselines).length === 0) {
    for (const p of points) {
      const label = gridUsed ? Object.values(p.values).filter((v) => v !== null).map(short).join(' ') : 'base';
      const whereInFile = gridUsed ? `grid cell ${axes.map((a, k) => `${a.key}[${p.index[k]}]`).join(', ')}` : 'base';
      addRow(label, p.values, false, whereInFile);
    }
  }
  for (const [name, fields] of Object.entries(s.baselines)) {
    for (const path of Object.keys(fields)) {
      if (!fieldPath.safeParse(path).success) fail(where, [`baselines.${name}: '${path}' is not a dotted path into the run configuration`]);
      if (path === 'output' || path === 'train.seed') fail(where, [`baselines.${name}: '${path}' is set by the study itself`]);
    }
    addRow(name, fields, true, `baselines.${name}`);
  }
  for (const c of s.columns) {
    if (!(SUMMARY_COLUMNS as readonly string[]).includes(c) && !fieldPath.safeParse(c).success) fail(where, [`columns: '${c}' is neither a result (${SUMMARY_COLUMNS.join(', ')}) nor a dotted configuration path`]);
  }
  return { name: s.name ?? 'study', description: s.description, file: null, output: s.output, seeds: s.seeds, columns: s.columns, axes: allPaths, rows, cells };
}

let shapeCache: Record<string, unknown> | null = null;
function runConfigSchemaShape(): Record<string, unknown> {
  // The top-level fields of the run configuration with every registered method's section.
  shapeCache ??= (runConfigSchema() as unknown as { shape: Record<string, unknown> }).shape ?? {};
  return shapeCache;
}

/** Reads and validates a study file. */
export function loadStudyFile(file: string): Study {
  if (!existsSync(file)) throw new ConfigError(`study file ${file} does not exist; give the path of a study JSON file (see docs/studies.md)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`study file ${file} is not valid JSON: ${(e as Error).message}`);
  }
  const study = parseStudy(raw, file);
  const named = (raw as { name?: unknown }).name !== undefined;
  return { ...study, name: named ? study.name : basename(file, extname(file)).replace(/[^\w.-]+/g, '_') || 'study', file };
}
