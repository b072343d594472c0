// Builds the native backend addon with npm's bundled node-gyp. Without --strict a failed build
// only warns (graft then runs on the reference backend and says so); with --strict it fails.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const strict = process.argv.includes('--strict');
const npmDir = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
const candidates = [
  process.env.npm_config_node_gyp,
  join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
].filter(Boolean);
const gyp = candidates.find((p) => existsSync(p));
if (!existsSync('binding.gyp')) process.exit(0);
if (!gyp) {
  console.warn('graft: node-gyp was not found, so the native backend was not built (graft will use the reference backend).');
  process.exit(strict ? 1 : 0);
}
const args = [gyp, 'rebuild', '-j', 'max'];
if (existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.status !== 0) {
  console.warn('graft: building the native backend failed. Install the compiler and oneDNN (Debian/Ubuntu: apt-get install -y g++ make libdnnl-dev), then run: npm run build:native');
  process.exit(strict ? 1 : 0);
}
