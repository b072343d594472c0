// The import rule (docs/architecture.md): no runtime import cycle among src/ modules, and no
// module imports from a layer above its own. The checker reads src/'s TypeScript import and
// export-from statements; `import type`, `export type` and imports whose names are all marked
// `type` are erased by the compiler, so they count for the layer rule but not for cycles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';

/** Bottom → top. A module may import from its own layer and the layers below it. */
const LAYERS: readonly (readonly string[])[] = [
  ['src/errors.ts', 'src/backends', 'src/tensor'],
  ['src/ops'],
  ['src/nn'],
  ['src/io'],
  ['src/data'],
  ['src/models'],
  ['src/adapters'],
  ['src/train'],
  ['src/eval'],
  ['src/report'],
  ['src/export'],
  ['src/serve'],
  ['src/study'],
  ['src/cli'],
  ['src/index.ts'],
];

/** tensor/ shares the bottom layer with backends/ but may see only the kernel interface's types. */
const TENSOR_MAY_SEE = 'src/backends/backend.ts';

/** The modules that decide which backends exist, by importing src/backends/all.ts. */
const ENTRY_POINTS = ['src/index.ts', 'src/cli/main.ts'];
const ALL_BACKENDS = 'src/backends/all.ts';

/** `native` for src/backends/native/index.ts: each backend's folder is private to it and all.ts. */
const backendFolder = (file: string) => /^src\/backends\/([^/]+)\//.exec(file)?.[1] ?? null;

/**
 * Imports that break the layer rule today, each `importer -> imported`. The list may only
 * shrink: the test fails on any import not listed here and on any entry that no longer occurs.
 */
const KNOWN_VIOLATIONS: readonly string[] = [];

interface Edge {
  from: string;
  to: string;
  line: number;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** `./x.js` seen from `src/a/b.ts` → `src/a/x.ts`; null for packages and node: modules. */
function resolveSpecifier(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const path = normalize(join(dirname(from), spec)).split('\\').join('/');
  return path.replace(/\.js$/, '.ts');
}

function importsOf(file: string): Edge[] {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const edges: Edge[] = [];
  const add = (spec: ts.Expression | undefined, node: ts.Node, typeOnly: boolean) => {
    if (!spec || !ts.isStringLiteral(spec)) return;
    const to = resolveSpecifier(file, spec.text);
    if (to) edges.push({ from: file, to, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, typeOnly });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings;
      const allNamedTypes = !!named && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
      const typeOnly = !!clause && (clause.isTypeOnly || (!clause.name && allNamedTypes));
      add(node.moduleSpecifier, node, typeOnly);
    } else if (ts.isExportDeclaration(node)) {
      const named = node.exportClause;
      const allNamedTypes = !!named && ts.isNamedExports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier, node, node.isTypeOnly || allNamedTypes);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], node, false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal as ts.Expression, node, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

function layerOf(file: string): number {
  const i = LAYERS.findIndex((folders) => folders.some((f) => file === f || file.startsWith(f + '/')));
  if (i < 0) throw new Error(`${file} is in no layer; add its folder to LAYERS in test/imports.test.ts and to the table in docs/architecture.md`);
  return i;
}

const files = sourceFiles('src').map((f) => relative('.', f).split('\\').join('/')).sort();
const edges = files.flatMap(importsOf);
const where = (e: Edge) => `${e.from}:${e.line} imports ${e.to}`;

/** Every import that breaks the layer rule. */
function layerViolations(all: readonly Edge[]): { edge: Edge; why: string }[] {
  const out: { edge: Edge; why: string }[] = [];
  for (const e of all) {
    const a = layerOf(e.from);
    const b = layerOf(e.to);
    if (b > a) out.push({ edge: e, why: `${LAYERS[a]!.join('/')} is below ${LAYERS[b]!.join('/')}` });
    else if (e.from.startsWith('src/tensor/') && e.to.startsWith('src/backends/') && !(e.typeOnly && e.to === TENSOR_MAY_SEE)) {
      out.push({ edge: e, why: `tensor/ may import only types from ${TENSOR_MAY_SEE}` });
    } else if (backendFolder(e.to) && backendFolder(e.from) === null && e.from !== ALL_BACKENDS) {
      out.push({ edge: e, why: `a backend's folder is imported only by ${ALL_BACKENDS} and other backends; use the registry or the Backend interface` });
    } else if (e.to === ALL_BACKENDS && !ENTRY_POINTS.includes(e.from)) {
      out.push({ edge: e, why: `only the entry points (${ENTRY_POINTS.join(', ')}) import ${ALL_BACKENDS}` });
    }
  }
  return out;
}

/** Runtime import cycles (Tarjan's strongly connected components), each as the edges inside it. */
function runtimeCycles(all: readonly Edge[]): Edge[][] {
  const runtime = all.filter((e) => !e.typeOnly);
  const next = new Map<string, Edge[]>();
  for (const e of runtime) next.set(e.from, [...(next.get(e.from) ?? []), e]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const e of next.get(v) ?? []) {
      if (!index.has(e.to)) {
        connect(e.to);
        low.set(v, Math.min(low.get(v)!, low.get(e.to)!));
      } else if (onStack.has(e.to)) low.set(v, Math.min(low.get(v)!, index.get(e.to)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component);
    }
  };
  for (const f of new Set(all.map((e) => e.from))) if (!index.has(f)) connect(f);
  const selfLoops = runtime.filter((e) => e.from === e.to).map((e) => [e]);
  return [...selfLoops, ...components.map((c) => runtime.filter((e) => c.includes(e.from) && c.includes(e.to)))];
}

test('imports: every import resolves to a file in src/', () => {
  const missing = edges.filter((e) => !files.includes(e.to)).map(where);
  assert.deepEqual(missing, [], `imports of files that do not exist:\n${missing.join('\n')}`);
});

test('imports: no runtime import cycle among src/ modules', () => {
  const cycles = runtimeCycles(edges).map((c) => `cycle through ${[...new Set(c.map((e) => e.from))].join(', ')}:\n  ${c.map(where).join('\n  ')}`);
  assert.deepEqual(cycles, [], `runtime import cycles (make type-only imports \`import type\`, or move the shared part down):\n${cycles.join('\n')}`);
});

test('imports: no module imports from a layer above its own (KNOWN_VIOLATIONS only shrinks)', () => {
  const found = layerViolations(edges);
  const key = (e: Edge) => `${e.from} -> ${e.to}`;
  const fresh = found.filter((v) => !KNOWN_VIOLATIONS.includes(key(v.edge))).map((v) => `${where(v.edge)} (${v.why})`);
  const gone = KNOWN_VIOLATIONS.filter((k) => !found.some((v) => key(v.edge) === k));
  assert.deepEqual(fresh, [], `imports from a layer above (docs/architecture.md, "The import rule"):\n${fresh.join('\n')}`);
  assert.deepEqual(gone, [], `these KNOWN_VIOLATIONS no longer occur; delete them from test/imports.test.ts:\n${gone.join('\n')}`);
});

test('imports: the checker sees cycles and upward imports in a made-up graph', () => {
  const e = (from: string, to: string, typeOnly = false): Edge => ({ from, to, line: 1, typeOnly });
  const graph = [e('src/ops/a.ts', 'src/ops/b.ts'), e('src/ops/b.ts', 'src/ops/a.ts'), e('src/ops/c.ts', 'src/ops/a.ts', true), e('src/ops/a.ts', 'src/ops/c.ts')];
  assert.deepEqual(runtimeCycles(graph).map((c) => c.map((x) => x.from).sort()), [['src/ops/a.ts', 'src/ops/b.ts']]);
  const layered = [
    e('src/nn/x.ts', 'src/models/y.ts'),
    e('src/models/y.ts', 'src/nn/x.ts'),
    e('src/tensor/t.ts', 'src/backends/backend.ts', true),
    e('src/tensor/t.ts', 'src/backends/backend.ts'),
    e('src/tensor/t.ts', 'src/backends/registry.ts', true),
    e('src/backends/registry.ts', 'src/tensor/t.ts'),
    e('src/backends/registry.ts', 'src/backends/native/index.ts'),
    e('src/ops/creation.ts', 'src/backends/reference/index.ts', true),
    e('src/backends/native/index.ts', 'src/backends/reference/index.ts'),
    e('src/backends/all.ts', 'src/backends/native/index.ts'),
    e('src/ops/index.ts', 'src/backends/all.ts'),
    e('src/index.ts', 'src/backends/all.ts'),
  ];
  assert.deepEqual(layerViolations(layered).map((v) => `${v.edge.from} -> ${v.edge.to}${v.edge.typeOnly ? ' (type)' : ''}`), [
    'src/nn/x.ts -> src/models/y.ts',
    'src/tensor/t.ts -> src/backends/backend.ts',
    'src/tensor/t.ts -> src/backends/registry.ts (type)',
    'src/backends/registry.ts -> src/backends/native/index.ts',
    'src/ops/creation.ts -> src/backends/reference/index.ts (type)',
    'src/ops/index.ts -> src/backends/all.ts',
  ]);
});
