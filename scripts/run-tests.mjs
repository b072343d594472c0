// Runs every compiled test file with node's test runner (Node 20 has no --test globs).
// Usage: node scripts/run-tests.mjs [name-filter]
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const dir = 'dist/test';
const filter = process.argv[2] ?? '';
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js') && f.includes(filter))
  .sort()
  .map((f) => `${dir}/${f}`);
if (files.length === 0) {
  console.error(`no test files in ${dir} match '${filter}'; run 'npx tsc -p .' first`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
