// Importing this registers every built-in backend. graft's entry points (src/index.ts,
// src/cli/main.ts) import it; a new backend is its own folder plus one line here.
import './reference/index.js';
import './native/index.js';
