// `graft inspect <adapter folder>` (or a run folder): the method, each adapted layer with its rank
// and parameter count, the modules trained in full, and the total. Grouping and ranks come from
// the method's `inspect` info; without it, tensors group by module and ranks show '—'.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { methodForPeftJson } from '../adapters/registry.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { RunFolderError } from '../errors.js';

const PREFIX = 'base_model.model.';

interface Row {
  path: string;
  shapes: Record<string, readonly number[]>;
}

export function describeAdapter(dir: string): string[] {
  const configFile = join(dir, 'adapter_config.json');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('expected a JSON object');
  } catch (e) {
    throw new RunFolderError(`${configFile} is not a valid adapter configuration (${(e as Error).message}); the adapter folder is damaged`);
  }
  const method = methodForPeftJson(json, configFile);
  const config = method.fromPeftJson(json, configFile);
  const f = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  const shapes = new Map<string, readonly number[]>();
  try {
    for (const [k, info] of f.tensors) shapes.set(k.startsWith(PREFIX) ? k.slice(PREFIX.length) : k, info.shape);
  } finally {
    f.close();
  }
  const names = method.inspect?.tensors ?? [];
  const layers = new Map<string, Row>();
  const full = new Map<string, Row>();
  for (const [key, shape] of shapes) {
    const name = names.find((n) => key.endsWith(`.${n}`));
    const [groups, path, tensor] = name
      ? [layers, key.slice(0, -name.length - 1), name]
      : [method.inspect ? full : layers, key.slice(0, key.lastIndexOf('.')), key.slice(key.lastIndexOf('.') + 1)];
    const row = groups.get(path) ?? { path, shapes: {} };
    row.shapes[tensor] = shape;
    groups.set(path, row);
  }
  const count = (r: Row) => Object.values(r.shapes).reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  const fmt = (n: number) => n.toLocaleString('en-US');
  const table = (rows: Row[], rank: (r: Row) => string) => {
    const width = Math.max(5, ...rows.map((r) => r.path.length));
    return rows.map((r) => `  ${r.path.padEnd(width)}  ${rank(r).padStart(4)}  ${fmt(count(r)).padStart(11)}`);
  };
  const rankOf = (r: Row) => {
    const fn = method.inspect?.rank;
    return fn ? String(fn(r.shapes, config)) : '—';
  };
  const fields = ['r', 'lora_alpha', 'init_r', 'target_r'].filter((k) => json[k] !== undefined).map((k) => `${k}=${String(json[k])}`);
  const layerRows = [...layers.values()];
  const fullRows = [...full.values()];
  const total = [...layerRows, ...fullRows].reduce((a, r) => a + count(r), 0);
  const adapterTotal = layerRows.reduce((a, r) => a + count(r), 0);
  return [
    `adapter ${dir}: ${method.name} (peft_type ${String(json['peft_type'])})${fields.length ? `, ${fields.join(', ')}` : ''}, targets ${JSON.stringify(json['target_modules'])}`,
    `${layerRows.length} adapted layers (layer, rank, parameters):`,
    ...table(layerRows, rankOf),
    ...(fullRows.length ? ['modules trained in full (modules_to_save):', ...table(fullRows, () => '—')] : []),
    `${fmt(total)} parameters (${fmt(adapterTotal)} in adapter layers${fullRows.length ? `, ${fmt(total - adapterTotal)} in modules_to_save` : ''})`,
  ];
}
