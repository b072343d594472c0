export { AdapterHost, baseKey, type ServedAdapter } from './host.js';
export { GraftServer, type ServeOptions } from './server.js';
export { Metrics } from './metrics.js';
