// Pictures and report.html from fixture run results: every picture renders to a valid SVG and a
// PNG of the expected size (parsed back by sharp/librsvg); the Pareto front; `graft report` on a
// run folder and a study folder, opened in headless Chromium (Debian's chromium, driven by
// puppeteer-core): no console error, no request beyond the page itself, the tables sortable and
// every picture present. Screenshots are kept in test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { barChart, confusionHeatmap, figurePng, lineChart, paretoChart, paretoFront, type Figure } from '../src/report/charts.js';
import { runFigures, studyFigures } from '../src/report/figures.js';
import { adapterRanks, readRunResult } from '../src/report/results.js';
import { draConfig, toPeftJson } from '../src/adapters/dra/config.js';
import { readStudyResults, type StudyPlanLike } from '../src/report/study-output.js';

const root = mkdtempSync(join(tmpdir(), 'graft-report-'));
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = resolve('test-artifacts');

/** A finished AdaLoRA run as graft train leaves it (the parts reports read), with robustness measured. */
function makeRun(dir: string, seed: number, acc: number, params: number, method = 'adalora'): void {
  mkdirSync(join(dir, 'adapter'), { recursive: true });
  const history: Record<string, number>[] = [];
  for (let step = 1; step <= 12; step++) history.push({ loss: 2 * Math.exp(-step / 5) + 0.01 * seed, grad_norm: 1 / step, learning_rate: 1e-3 * (1 - step / 12), epoch: step / 4, step });
  for (let e = 1; e <= 3; e++) history.splice(e * 4 + e - 1, 0, { eval_accuracy: acc - 0.1 * (3 - e), eval_f1: acc - 0.12 * (3 - e), eval_loss: 1 / e, eval_runtime: 0.1, epoch: e, step: 4 * e });
  writeFileSync(join(dir, 'metrics.jsonl'), history.map((h) => JSON.stringify(h)).join('\n') + '\n');
  const classes = ['cat', 'dog', 'bird'];
  const metrics = {
    accuracy: acc, weightedF1: acc - 0.01, macroF1: acc - 0.02, mAP: acc + 0.01, count: 30,
    perClass: classes.map(() => ({ precision: acc, recall: acc, f1: acc, support: 10, averagePrecision: acc })),
    confusion: [[8, 1, 1], [2, 7, 1], [0, 1, 9]],
  };
  const summary = { model: 'vit_tiny', method, target: 'q_proj,v_proj', rank: 4, trainableParams: params, totalParams: 5e6, trainablePercent: (100 * params) / 5e6, trainSeconds: 10 + seed, accuracy: acc, weightedF1: acc - 0.01, macroF1: acc - 0.02, mAP: acc + 0.01, latencyMs: 3, throughput: 300, peakMemoryMB: 100 };
  const machine = { host: 'fixture-host', cpu: 'Fixture CPU', cores: 2, memoryGB: 8, os: 'linux', node: 'v20', backend: 'native', graft: '0.1.0' };
  writeFileSync(join(dir, 'report.json'), JSON.stringify({ summary, classes, metrics, machine }));
  // graft eval --perturb noise,crop (eval.json as it writes it)
  writeFileSync(join(dir, 'eval.json'), JSON.stringify({ source: 'fixture', metrics, robustness: { seed: 0, conditions: [
    { perturbation: 'noise', severity: 0.1, metrics: { ...metrics, accuracy: acc - 0.1 } },
    { perturbation: 'crop', severity: 0.7, metrics: { ...metrics, accuracy: acc - 0.2 } },
  ] } }));
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ config: { model: 'vit_tiny', method, adapter: { r: 4 }, train: { seed } }, classes }));
  writeFileSync(join(dir, 'adapter', 'adapter_config.json'), JSON.stringify({
    peft_type: 'ADALORA', init_r: 6, target_modules: ['q_proj', 'v_proj'],
    rank_pattern: { 'blocks.0.attn.q_proj': [true, true, false, true, false, false], 'blocks.0.attn.v_proj': [true, false, false, false, false, false], 'blocks.1.attn.q_proj': [true, true, true, true, true, true] },
  }));
}

/** The figure's SVG parses (librsvg) at its declared size and its PNG has that size. */
async function checkFigure(f: Figure, width: number, height: number): Promise<void> {
  assert.match(f.svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+"/);
  const svgMeta = await sharp(Buffer.from(f.svg)).metadata();
  assert.equal(svgMeta.format, 'svg', f.name);
  assert.deepEqual([svgMeta.width, svgMeta.height], [width, height], `${f.name}: svg size`);
  const png = await figurePng(f);
  const meta = await sharp(png).metadata();
  assert.equal(meta.format, 'png');
  assert.deepEqual([meta.width, meta.height], [width, height], `${f.name}: png size`);
  // Not blank: a picture has marks of more than one colour.
  const stats = await sharp(png).stats();
  assert.ok(stats.channels.slice(0, 3).some((c) => c.min < 200), `${f.name} has dark marks`);
}

test('figures: curves, confusion heatmap, Pareto, ranks, robustness render as SVG and PNG of their size', async () => {
  makeRun(join(root, 'run'), 0, 0.8, 12000);
  const r = readRunResult(join(root, 'run'));
  const figs = runFigures(r, 'fixture');
  assert.deepEqual(figs.map((f) => f.name), ['loss', 'accuracy', 'confusion', 'ranks', 'robustness']);
  const size: Record<string, [number, number]> = { loss: [640, 360], accuracy: [640, 360], confusion: [Math.max(130 + 3 * 48 + 30, 8 * 'fixture: test confusion matrix'.length + 20), 40 + 3 * 48 + 110], ranks: [640, 60 + 3 * 18 + 30], robustness: [640, 60 + 3 * 18 + 30] };
  for (const f of figs) await checkFigure(f, ...size[f.name]!);
  // Kept ranks from AdaLoRA's boolean rank_pattern.
  assert.deepEqual(r.ranks, [{ layer: 'blocks.0.attn.q_proj', rank: 3, max: 6 }, { layer: 'blocks.0.attn.v_proj', rank: 1, max: 6 }, { layer: 'blocks.1.attn.q_proj', rank: 6, max: 6 }]);
  assert.match(figs.find((f) => f.name === 'ranks')!.svg, />3\/6</);
  // DRA's rank_pattern (numbers, as its config writer leaves them), each of dra.rMax.
  mkdirSync(join(root, 'dra', 'adapter'), { recursive: true });
  writeFileSync(join(root, 'dra', 'adapter', 'adapter_config.json'), JSON.stringify(toPeftJson(draConfig({ r: 8, targetModules: ['q_proj'], rMin: 2, rMax: 12, rankPattern: { 'blocks.0.attn.q_proj': 12, 'blocks.1.attn.q_proj': 3 } }), 'Fixture')));
  assert.deepEqual(adapterRanks(join(root, 'dra')), [{ layer: 'blocks.0.attn.q_proj', rank: 12, max: 12 }, { layer: 'blocks.1.attn.q_proj', rank: 3, max: 12 }]);
  // Heatmap counts are drawn in the cells.
  const heat = confusionHeatmap('c', 't', ['a', 'b'], [[5, 1], [2, 4]]);
  for (const n of ['5', '1', '2', '4']) assert.match(heat.svg, new RegExp(`>${n}</text>`));
  await checkFigure(lineChart('l', 'one point', 'x', 'y', [{ name: 's', points: [[1, 1]] }]), 640, 360);
  await checkFigure(barChart('b', 'bars', 'v', [{ label: 'x', value: 0.5 }], { percent: true }), 640, 108);
});

test('figures: the Pareto front keeps the points no other beats on both axes', async () => {
  const pts = [
    { label: 'a', params: 100, accuracy: 0.7 }, { label: 'b', params: 1000, accuracy: 0.8 }, { label: 'c', params: 2000, accuracy: 0.75 },
    { label: 'd', params: 50, accuracy: 0.6 }, { label: 'e', params: 1e6, accuracy: 0.85 }, { label: 'f', params: 1000, accuracy: 0.79 },
  ];
  assert.deepEqual(paretoFront(pts).map((p) => p.label), ['d', 'a', 'b', 'e']);
  const f = paretoChart('p', 'pareto', pts);
  await checkFigure(f, 640, 380);
  assert.match(f.svg, /stroke="#d62728" stroke-width="1\.5" stroke-dasharray="6 3" points=/);
  // Log axis: decades 1e1 … 1e6 labelled.
  for (const e of [1, 2, 3, 4, 5, 6]) assert.match(f.svg, new RegExp(`>1e${e}<`));
});

function makeStudy(dir: string): StudyPlanLike {
  const plan: StudyPlanLike = {
    name: 'fixture-study', axes: ['method', 'adapter.r'], columns: [], seeds: [0, 1],
    rows: [{ id: 'adalora_4', label: 'adalora 4', baseline: false }, { id: 'lora_8', label: 'lora 8', baseline: false }],
    cells: ['adalora_4', 'lora_8'].flatMap((row) => [0, 1].map((seed) => ({ id: `${row}-s${seed}`, row, seed, dir: `cells/${row}-s${seed}` }))),
  };
  makeRun(join(dir, 'cells', 'adalora_4-s0'), 0, 0.8, 12000);
  makeRun(join(dir, 'cells', 'adalora_4-s1'), 1, 0.84, 12000);
  makeRun(join(dir, 'cells', 'lora_8-s0'), 0, 0.7, 30000, 'lora');
  makeRun(join(dir, 'cells', 'lora_8-s1'), 1, 0.72, 30000, 'lora');
  writeFileSync(join(dir, 'study.json'), JSON.stringify({ ...plan, file: null }));
  return plan;
}

test('figures: a study gets loss and accuracy per row, the Pareto plane, the best row\'s confusion matrix, ranks and robustness', async () => {
  const dir = join(root, 'study-figs');
  const plan = makeStudy(dir);
  const figs = studyFigures(readStudyResults(dir, plan), plan.rows, plan.name);
  assert.deepEqual(figs.map((f) => f.name), ['loss', 'accuracy', 'pareto', 'confusion', 'ranks', 'robustness']);
  assert.match(figs.find((f) => f.name === 'confusion')!.title, /of adalora 4/);
  for (const f of figs) {
    const m = /width="(\d+)" height="(\d+)"/.exec(f.svg)!;
    await checkFigure(f, Number(m[1]), Number(m[2]));
  }
});

const chromium = existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed: apt-get install -y chromium`;

/** Opens a page in headless Chromium; returns what the page did and shows. */
async function openInChromium(file: string, shot: string) {
  const { default: puppeteer } = await import('puppeteer-core');
  const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') errors.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`page error: ${(e as Error).message}`));
    page.on('requestfailed', (r) => errors.push(`failed request ${r.url()}`));
    page.on('request', (r) => requests.push(r.url()));
    const url = `file://${resolve(file)}`;
    await page.goto(url, { waitUntil: 'load' });
    await page.setViewport({ width: 1200, height: 900 });
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, shot), fullPage: true });
    const info = await page.evaluate(() => ({
      tables: document.querySelectorAll('table.sortable').length,
      figures: Array.from(document.querySelectorAll('figure.picture')).map((f) => ({ id: f.id, w: (f.querySelector('svg') as SVGSVGElement | null)?.getBoundingClientRect().width ?? 0 })),
      pre: document.querySelector('pre')?.textContent ?? '',
      text: document.body.innerText,
    }));
    // Sorting: click the first numeric header of the first table twice and read the column.
    const column = async (col: number) => page.evaluate((c) => Array.from(document.querySelectorAll('table.sortable')[0]!.querySelectorAll('tbody tr')).map((r) => (r as HTMLTableRowElement).cells[c]!.textContent), col);
    return { errors, requests: requests.filter((u) => u !== url && !u.startsWith('data:')), info, page, column, close: () => browser.close() };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

test('graft report: a run\'s report.html in headless Chromium: no console error, no request, tables and pictures', { skip: chromium ?? false }, async () => {
  const dir = join(root, 'run-html');
  makeRun(dir, 0, 0.8, 12000);
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'report', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const n of ['loss', 'accuracy', 'confusion', 'ranks', 'robustness']) for (const ext of ['svg', 'png']) assert.ok(existsSync(join(dir, 'figures', `${n}.${ext}`)), `${n}.${ext}`);
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no external resource');
  const o = await openInChromium(join(dir, 'report.html'), 'report-run.png');
  try {
    assert.deepEqual(o.errors, []);
    assert.deepEqual(o.requests, []);
    assert.equal(o.info.tables, 2);
    assert.deepEqual(o.info.figures.map((f) => f.id), ['fig-loss', 'fig-accuracy', 'fig-confusion', 'fig-ranks', 'fig-robustness']);
    for (const f of o.info.figures) assert.ok(f.w > 100, `${f.id} is drawn (${f.w}px wide)`);
    assert.match(o.info.pre, /"method": "adalora"/);
    assert.match(o.info.text, /Fixture CPU × 2/);
    assert.match(o.info.text, /graft\s+0\.1\.0/);
  } finally {
    await o.close();
  }
});

test('graft report: a study\'s report.html sorts its table by a click and shows every picture', { skip: chromium ?? false }, async () => {
  const dir = join(root, 'study-html');
  makeStudy(dir);
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', 'report', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const f of ['table.md', 'table.csv', 'table.json', 'table.tex', 'report.html', 'cells/lora_8-s1/report.html']) assert.ok(existsSync(join(dir, f)), f);
  const o = await openInChromium(join(dir, 'report.html'), 'report-study.png');
  try {
    assert.deepEqual(o.errors, []);
    assert.deepEqual(o.requests, []);
    assert.equal(o.info.tables, 2);
    assert.deepEqual(o.info.figures.map((f) => f.id), ['fig-loss', 'fig-accuracy', 'fig-pareto', 'fig-confusion', 'fig-ranks', 'fig-robustness']);
    const accCol = 5; // method, target, rank, trainable params, training time, test accuracy
    assert.deepEqual(await o.column(accCol), ['82.00 ± 2.83', '71.00 ± 1.41']);
    await o.page.click('table.sortable th[data-col="5"]');
    assert.deepEqual(await o.column(accCol), ['71.00 ± 1.41', '82.00 ± 2.83']);
    await o.page.click('table.sortable th[data-col="5"]');
    assert.deepEqual(await o.column(accCol), ['82.00 ± 2.83', '71.00 ± 1.41']);
    assert.deepEqual(o.errors, []);
  } finally {
    await o.close();
  }
});
