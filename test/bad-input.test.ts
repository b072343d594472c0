// The bad-input suite: every kind of bad flag, configuration, data source, weights file and run
// folder given to the CLI, each answered with its exit status (2: bad input, 1: a failure while
// running) and a message naming the file or field and what to do; and the inputs that used to
// give wrong results (one class, labels 0 and 5, symlinked and non-UTF-8 folders) now train right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const root = mkdtempSync(join(tmpdir(), 'graft-bad-'));
const p = (...parts: string[]) => join(root, ...parts);

function graft(args: string[]) {
  const r = spawnSync(process.execPath, ['dist/src/cli/main.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

async function png(file: string, v: number): Promise<void> {
  await sharp(Buffer.alloc(16 * 16 * 3, v), { raw: { width: 16, height: 16, channels: 3 } }).png().toFile(file);
}

/** root/<class>/<n>.png, four images a class. */
async function folder(dir: string, classes: string[]): Promise<string> {
  for (const [k, c] of classes.entries()) {
    mkdirSync(join(dir, c), { recursive: true });
    for (let i = 0; i < 4; i++) await png(join(dir, c, `${i}.png`), 30 + 60 * k + 5 * i);
  }
  return dir;
}

/** A safetensors file from a header object and a data section of `dataBytes` zero bytes. */
function safetensors(file: string, header: Record<string, unknown>, dataBytes: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return file;
}

const TINY = { model: 'resnet18', modelOverrides: { layers: [1, 1, 1, 1] } };
function config(name: string, extra: Record<string, unknown> = {}): string {
  const file = p(`${name}.json`);
  writeFileSync(file, JSON.stringify({ ...TINY, data: { source: p('img'), perClass: 2, imageSize: 32 }, train: { epochs: 1, batchSize: 2 }, ...extra }));
  return file;
}

interface Case {
  name: string;
  args: () => string[];
  status: number;
  /** Words the message (stderr, or stdout for successes) must hold. */
  words: RegExp;
  setup?: () => Promise<void> | void;
  /** Checked after the command. */
  after?: () => void;
}

const lora = () => ['-c', p('base.json'), '--method', 'lora', '--targets', 'conv1'];
const train = (out: string, ...more: string[]) => ['train', ...lora(), '--output', p(out), ...more];

const cases: Case[] = [
  // Flags
  { name: 'no --model', args: () => ['train', '--data', p('img'), '--output', p('onm')], status: 2, words: /no backbone given: add --model NAME, e\.g\. --model nsfwjs_mobilenet_v2.*graft inspect --list/ },
  { name: 'a non-numeric --lr', args: () => train('o1', '--lr', 'fast'), status: 2, words: /--lr must be a number; got 'fast'/ },
  { name: '--quantize with a method that trains the base', args: () => train('oq1', '--quantize', 'nf4', '--method', 'full'), status: 2, words: /quantize: a 4-bit base is frozen, so it needs an adapter method/ },
  { name: '--quant-block not a power of two', args: () => train('oq2', '--quantize', 'nf4', '--quant-block', '48'), status: 2, words: /quantize\.blocksize.*power of two from 32 to 4096/ },
  { name: 'an unknown --quantize type', args: () => train('oq3', '--quantize', 'int3'), status: 2, words: /quantize\.type.*nf4.*fp4/ },
  { name: '--epochs 0', args: () => train('o2', '--epochs', '0'), status: 2, words: /--epochs must be a positive integer/ },
  { name: 'a malformed --ratio', args: () => ['train', '--ratio', '3'], status: 2, words: /--ratio must look like 98:1/ },
  { name: 'an unknown command', args: () => ['frobnicate'], status: 2, words: /unknown command/ },
  { name: 'an unknown flag', args: () => ['train', '--frobnicate'], status: 2, words: /unknown option/ },
  { name: '--per-class with --ratio', args: () => train('o3', '--ratio', '3:1'), status: 2, words: /data\.perClass \(--per-class\) and data\.ratio \(--ratio\) both split the data; give one/ },
  { name: 'an invalid --targets regex', args: () => train('o4', '--targets', '(['), status: 2, words: /adapter\.targets: '\(\[' is not a valid regular expression/ },
  { name: '--image-size absurdly large', args: () => train('o5', '--image-size', '100000'), status: 2, words: /data\.imageSize: 100000 .*give at most 2048/ },
  { name: '--image-size too small', args: () => train('o6', '--image-size', '2'), status: 2, words: /data\.imageSize: 2 is too small.*at least 8/ },
  { name: '--image-size below the model\'s smallest input', args: () => train('o6b', '--model', 'nsfwjs_inception_v3', '--image-size', '64'), status: 2, words: /nsfwjs_inception_v3 needs an input of at least 75×75.*--image-size 75/ },
  { name: "--output ''", args: () => ['train', ...lora(), '--output', ''], status: 2, words: /output: is empty; give a folder/ },
  { name: '--method scratch with --weights', args: () => ['train', '-c', p('base.json'), '--method', 'scratch', '--weights', p('w.safetensors'), '--output', p('o7')], status: 2, words: /weights: method 'scratch' .*drop --weights/ },
  { name: '--alpha 1e300', args: () => train('o8', '--alpha', '1e300'), status: 2, words: /adapter\.alpha: 1e\+300 .*usual alpha/ },
  { name: 'an unknown model', args: () => train('o9', '--model', 'resnet5000'), status: 2, words: /model: unknown model 'resnet5000'; graft inspect --list names the models/ },
  { name: '--resume with --overwrite', args: () => train('o10', '--resume', '--overwrite'), status: 2, words: /pass one of them/ },
  { name: 'an unknown --head-from', args: () => train('o11', '--head-from', 'middle'), status: 2, words: /headFrom: Invalid option/ },
  { name: '--val-fraction 0.95', args: () => train('o12', '--val-fraction', '0.95'), status: 2, words: /data\.valFraction: Too big/ },
  { name: 'all-linear targets on a CNN', args: () => ['train', '-c', p('base.json'), '--method', 'lora', '--targets', 'all-linear', '--output', p('o13')], status: 2, words: /adapter\.targets: no module matches "all-linear".*a CNN.*conv1.*downsample\.0/ },
  { name: 'an unknown --format', args: () => ['predict', p('run'), p('img', 'a', '0.png'), '--format', 'xml'], status: 2, words: /--format must be json or csv/ },
  // Configuration files
  { name: 'a config holding null', setup: () => writeFileSync(p('null.json'), 'null'), args: () => ['train', '-c', p('null.json')], status: 2, words: /null\.json must hold a JSON object .*it holds null/ },
  { name: 'a config holding an array', setup: () => writeFileSync(p('arr.json'), '[1]'), args: () => ['train', '-c', p('arr.json')], status: 2, words: /arr\.json must hold a JSON object .*an array/ },
  { name: 'a config that is not JSON', setup: () => writeFileSync(p('bad.json'), '{ model: '), args: () => ['train', '-c', p('bad.json')], status: 2, words: /config file .*bad\.json is not valid JSON/ },
  { name: 'a missing config file', args: () => ['train', '-c', p('none.json')], status: 2, words: /cannot read config file .*none\.json/ },
  { name: 'an unknown config field', setup: () => void config('unknown', { colour: 'red' }), args: () => ['train', '-c', p('unknown.json')], status: 2, words: /\(config\): Unrecognized key: "colour"/ },
  { name: 'an unknown method in a config', setup: () => void config('magic', { method: 'magic' }), args: () => ['train', '-c', p('magic.json')], status: 2, words: /method: Invalid option: expected one of/ },
  { name: 'a config with neither split nor test data', setup: () => writeFileSync(p('nosplit.json'), JSON.stringify({ ...TINY, data: { source: p('img') } })), args: () => ['train', '-c', p('nosplit.json')], status: 2, words: /data: give data\.perClass/ },
  // Data
  { name: 'a missing data source', args: () => train('d1', '--data', p('nowhere')), status: 2, words: /data source .*nowhere does not exist/ },
  { name: 'a one-class folder', setup: async () => void (await folder(p('one'), ['cat'])), args: () => train('d2', '--data', p('one')), status: 2, words: /has 1 class \(cat\); a classifier needs at least two/ },
  { name: 'an empty class folder', setup: async () => { await folder(p('withempty'), ['a', 'b']); mkdirSync(p('withempty', 'empty')); }, args: () => train('d3', '--data', p('withempty')), status: 2, words: /class 'empty' has no readable images; add images or remove it/ },
  {
    name: 'a class of only unreadable images',
    setup: async () => {
      await folder(p('unreadable'), ['a', 'b']);
      mkdirSync(p('unreadable', 'bad'));
      for (let i = 0; i < 3; i++) writeFileSync(p('unreadable', 'bad', `${i}.png`), 'not a png');
    },
    args: () => train('d4', '--data', p('unreadable')), status: 2, words: /class 'bad' has no readable images/,
  },
  { name: 'a folder of only unreadable images', setup: () => { for (const c of ['x', 'y']) { mkdirSync(p('allbad', c), { recursive: true }); writeFileSync(p('allbad', c, '0.jpg'), 'junk'); } }, args: () => train('d5', '--data', p('allbad')), status: 2, words: /classes 'x', 'y' have no readable images/ },
  {
    name: 'skipped files do not count toward --per-class',
    setup: async () => { await folder(p('short'), ['a', 'b']); writeFileSync(p('short', 'a', 'broken.png'), 'junk'); },
    args: () => train('d6', '--data', p('short'), '--per-class', '5'), status: 2, words: /data\.perClass is 5 but 'a' has 4, 'b' has 4 readable images; lower --per-class/,
  },
  { name: 'an image given as --data', args: () => train('d7', '--data', p('img', 'a', '0.png')), status: 2, words: /0\.png is a file but not a manifest \(\.csv, \.jsonl\)/ },
  { name: 'a text file given as --data', setup: () => writeFileSync(p('notes.txt'), 'hello'), args: () => train('d8', '--data', p('notes.txt')), status: 2, words: /notes\.txt is a file but not a manifest/ },
  { name: 'a CSV without path/label columns', setup: () => writeFileSync(p('nohdr.csv'), 'a.png,cat\n'), args: () => train('d9', '--data', p('nohdr.csv')), status: 2, words: /nohdr\.csv: the CSV header must name 'path' and 'label'/ },
  { name: 'a JSONL line that is not JSON', setup: () => writeFileSync(p('bad.jsonl'), '{"path": "a.png", "label": 0}\n{oops\n'), args: () => train('d10', '--data', p('bad.jsonl')), status: 2, words: /bad\.jsonl:2: not valid JSON/ },
  { name: 'a CSV row without a label', setup: () => writeFileSync(p('nolabel.csv'), 'path,label\nimg/a/0.png,\n'), args: () => train('d11', '--data', p('nolabel.csv')), status: 2, words: /nolabel\.csv:2: missing path or label/ },
  { name: 'an empty manifest', setup: () => writeFileSync(p('empty.csv'), 'path,label\n'), args: () => train('d12', '--data', p('empty.csv')), status: 2, words: /empty\.csv lists no images/ },
  { name: 'test classes that differ from training classes', setup: async () => void (await folder(p('digits'), ['0', '1', '2'])), args: () => train('d13', '--test-data', p('digits')), status: 2, words: /has classes \[0, 1, 2\] but the run's classes are \[a, b\]; '0', '1', '2' are not among them \(classes are matched by name\)/ },
  { name: 'a manifest of missing images', setup: () => writeFileSync(p('ghost.csv'), 'path,label\nghost1.png,a\nghost2.png,b\n'), args: () => train('d14', '--data', p('ghost.csv')), status: 2, words: /classes 'a', 'b' have no readable images/ },
  // Weights files
  { name: 'a missing weights file', args: () => ['train', ...lora(), '--weights', p('nope.safetensors'), '--output', p('w1')], status: 2, words: /checkpoint .*nope\.safetensors does not exist; give a \.safetensors file/ },
  { name: 'a folder without model.safetensors as weights', args: () => ['train', ...lora(), '--weights', p('img'), '--output', p('w2')], status: 2, words: /img holds no model\.safetensors/ },
  { name: 'a text file as weights', setup: () => writeFileSync(p('text.safetensors'), 'just some text here'), args: () => ['train', ...lora(), '--weights', p('text.safetensors'), '--output', p('w3')], status: 2, words: /text\.safetensors is not a valid safetensors file/ },
  {
    name: 'overlapping tensor byte ranges',
    setup: () => void safetensors(p('overlap.safetensors'), { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
    args: () => ['train', ...lora(), '--weights', p('overlap.safetensors'), '--output', p('w4')], status: 2, words: /tensor 'b' starts at byte 4, inside the bytes of another tensor.*must not overlap/,
  },
  {
    name: 'a gap in the data section',
    setup: () => void safetensors(p('gap.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12),
    args: () => ['train', ...lora(), '--weights', p('gap.safetensors'), '--output', p('w5')], status: 2, words: /bytes 4\.\.8 of the data section belong to no tensor; the data section must be contiguous/,
  },
  {
    name: 'bytes after the last tensor',
    setup: () => void safetensors(p('tail.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 16),
    args: () => ['train', ...lora(), '--weights', p('tail.safetensors'), '--output', p('w6')], status: 2, words: /the tensors end at byte 4 but the data section has 16 bytes/,
  },
  {
    name: 'a truncated weights file',
    setup: () => void safetensors(p('short.safetensors'), { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8),
    args: () => ['train', ...lora(), '--weights', p('short.safetensors'), '--output', p('w7')], status: 2, words: /ends at byte 16 but the data section has 8 bytes \(the file is truncated\)/,
  },
  {
    name: "another architecture's weights",
    setup: () => void safetensors(p('other.safetensors'), { 'blocks.0.weight': { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4),
    args: () => ['train', ...lora(), '--weights', p('other.safetensors'), '--output', p('w8')], status: 2, words: /other\.safetensors/,
  },
  // Run folders
  { name: 'eval on a missing folder', args: () => ['eval', p('no-run'), '--data', p('img')], status: 2, words: /no-run is not a graft run folder \(no run\.json\)/ },
  { name: 'predict on a folder that is no run', args: () => ['predict', p('img'), p('img', 'a', '0.png')], status: 2, words: /is not a graft run folder/ },
  { name: 'a corrupt run.json', setup: () => { cpSync(p('run'), p('r-corrupt'), { recursive: true }); writeFileSync(p('r-corrupt', 'run.json'), '{"config": '); }, args: () => ['eval', p('r-corrupt'), '--data', p('img')], status: 2, words: /r-corrupt\/run\.json is not valid JSON .*damaged/ },
  { name: 'a run.json holding null', setup: () => { cpSync(p('run'), p('r-null'), { recursive: true }); writeFileSync(p('r-null', 'run.json'), 'null'); }, args: () => ['predict', p('r-null'), p('img', 'a', '0.png')], status: 2, words: /r-null\/run\.json is not valid JSON \(expected an object/ },
  { name: 'a run.json with one class', setup: () => { cpSync(p('run'), p('r-one'), { recursive: true }); const m = JSON.parse(readFileSync(p('run', 'run.json'), 'utf8')); writeFileSync(p('r-one', 'run.json'), JSON.stringify({ ...m, classes: ['a'] })); }, args: () => ['predict', p('r-one'), p('img', 'a', '0.png')], status: 2, words: /'classes' must be a list of at least two class names/ },
  { name: 'an adapter of another rank (predict)', setup: () => { cpSync(p('run'), p('r-rank'), { recursive: true }); cpSync(p('run4', 'adapter', 'adapter_model.safetensors'), p('r-rank', 'adapter', 'adapter_model.safetensors')); }, args: () => ['predict', p('r-rank'), p('img', 'a', '0.png')], status: 2, words: /adapter .*adapter_model\.safetensors does not fit the model .*shape mismatch for .*lora_A.*the model has \[8, .*the file has \[4,/s },
  { name: 'an adapter of another rank (eval ends)', args: () => ['eval', p('r-rank'), '--data', p('img')], status: 2, words: /shape mismatch/ },
  {
    name: 'an adapter tensor of another dtype',
    setup: () => {
      cpSync(p('run'), p('r-dtype'), { recursive: true });
      const file = p('r-dtype', 'adapter', 'adapter_model.safetensors');
      const bytes = readFileSync(file);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string }>;
      const first = Object.keys(header).find((k) => k !== '__metadata__')!;
      header[first]!.dtype = 'I32';
      const json = Buffer.from(JSON.stringify(header).padEnd(n, ' '));
      writeFileSync(file, Buffer.concat([bytes.subarray(0, 8), json.subarray(0, n), bytes.subarray(8 + n)]));
    },
    args: () => ['predict', p('r-dtype'), p('img', 'a', '0.png')], status: 2, words: /dtype mismatch for .*: the model has float32, the file has I32/,
  },
  { name: "a linear-probe run holding another model's weights", setup: () => { cpSync(p('probe'), p('p-other'), { recursive: true }); cpSync(p('other.safetensors'), p('p-other', 'model.safetensors')); }, args: () => ['predict', p('p-other'), p('img', 'a', '0.png')], status: 2, words: /trained weights .*model\.safetensors does not fit the model \(\d+ problems\):\n  missing: / },
  { name: 'a run without its trained weights', setup: () => { cpSync(p('run'), p('r-noweights'), { recursive: true }); rmSync(p('r-noweights', 'adapter'), { recursive: true }); }, args: () => ['eval', p('r-noweights'), '--data', p('img')], status: 2, words: /has no trained weights .*graft train --resume/ },
  { name: 'train into a folder holding another run', args: () => train('run'), status: 2, words: /run already holds a run of resnet18 · lora; pass --resume .*--overwrite .*another --output/ },
  { name: 'train into a folder of other files', setup: () => { mkdirSync(p('mine')); writeFileSync(p('mine', 'thesis.tex'), 'x'); }, args: () => train('mine', '--overwrite'), status: 2, words: /mine is not empty and not a graft run folder \(it holds thesis\.tex\)/, after: () => assert.equal(readFileSync(p('mine', 'thesis.tex'), 'utf8'), 'x') },
  { name: '--resume on a folder without a run', args: () => train('fresh-empty', '--resume'), status: 2, words: /holds no run to resume \(no run\.json\); start without --resume/ },
  {
    name: '--resume of another configuration leaves run.json',
    setup: () => writeFileSync(p('run-json-before'), readFileSync(p('run', 'run.json'))),
    args: () => train('run', '--resume', '--rank', '4'), status: 2, words: /--resume continues the run .* differs: adapter\.r \(8 in the run, 4 now\)/,
    after: () => assert.deepEqual(readFileSync(p('run', 'run.json')), readFileSync(p('run-json-before'))),
  },
  { name: 'a run folder locked by a live process', setup: () => { mkdirSync(p('locked')); writeFileSync(p('locked', '.graft.lock'), JSON.stringify({ pid: process.pid, host: require_hostname() })); }, args: () => train('locked'), status: 2, words: /locked is in use by another graft process \(pid \d+\)/ },
  { name: '--output under /proc', args: () => ['train', ...lora(), '--output', '/proc/graft-x'], status: 2, words: /cannot use \/proc\/graft-x as the run folder.*choose a writable --output/ },
  { name: '--output that is a file', args: () => ['train', ...lora(), '--output', p('notes.txt')], status: 2, words: /cannot use .*notes\.txt as the run folder: a file is in the way/ },
  // merge
  { name: "merge into the run's own adapter", setup: () => writeFileSync(p('adapter-before'), readFileSync(p('run', 'adapter', 'adapter_model.safetensors'))), args: () => ['merge', p('run'), '--output', p('run', 'adapter', 'adapter_model.safetensors')], status: 2, words: /would replace a file of the run .* itself/, after: () => assert.deepEqual(readFileSync(p('run', 'adapter', 'adapter_model.safetensors')), readFileSync(p('adapter-before'))) },
  { name: "merge over the run's model file", args: () => ['merge', p('run'), '--output', p('run', 'model.safetensors')], status: 2, words: /would replace a file of the run/ },
  { name: 'merge into a folder', args: () => ['merge', p('run'), '--output', p('img')], status: 2, words: /give a path ending in \.safetensors/ },
  { name: 'merge into a folder named .safetensors', setup: () => mkdirSync(p('dir.safetensors')), args: () => ['merge', p('run'), '--output', p('dir.safetensors')], status: 2, words: /dir\.safetensors is a folder; give a file path/ },
  { name: 'merge of a linear-probe run', args: () => ['merge', p('probe'), '--output', p('m.safetensors')], status: 2, words: /used method 'linear-probe', which has no adapter to merge/ },
  // inspect
  { name: 'inspect a missing folder', args: () => ['inspect', p('nothing-here')], status: 2, words: /unknown model '.*nothing-here'.*graft inspect --list/ },
  { name: 'inspect a safetensors file', args: () => ['inspect', p('other.safetensors')], status: 2, words: /give a model name \(graft inspect --list\), a run folder or an adapter folder .*a \.safetensors file is none of them/ },
  { name: 'inspect a folder without adapter_config.json', args: () => ['inspect', p('img')], status: 2, words: /img: the folder holds no adapter_config\.json/ },
  { name: 'inspect a corrupt adapter_config.json', setup: () => { cpSync(p('run', 'adapter'), p('bad-adapter'), { recursive: true }); writeFileSync(p('bad-adapter', 'adapter_config.json'), '{'); }, args: () => ['inspect', p('bad-adapter')], status: 2, words: /bad-adapter\/adapter_config\.json is not a valid adapter configuration/ },
  // predict / eval inputs
  { name: 'predict a missing image', args: () => ['predict', p('run'), p('img', 'a', 'missing.png')], status: 2, words: /missing\.png does not exist/ },
  { name: 'predict a folder without images', setup: () => { mkdirSync(p('noimg')); writeFileSync(p('noimg', 'a.txt'), 'x'); }, args: () => ['predict', p('run'), p('noimg')], status: 2, words: /no images to predict in .*noimg/ },
  { name: 'predict with an unreadable image', setup: () => writeFileSync(p('broken.png'), 'junk'), args: () => ['predict', p('run'), p('img', 'a', '0.png'), p('broken.png')], status: 2, words: /1 of 2 images could not be read \(.*broken\.png\)/ },
  { name: 'eval on data of other classes', args: () => ['eval', p('run'), '--data', p('digits')], status: 2, words: /not among them \(classes are matched by name\)/ },
  // Inputs that used to give wrong results now train right (status 0).
  { name: 'default targets on a CNN are its convolutions', args: () => ['train', '-c', p('base.json'), '--method', 'lora', '--output', p('o13b')], status: 0, words: /settings: method lora .*targets \d+ layers \(conv1, /s },
  { name: 'manifest labels 0 and 5 make two classes', setup: () => writeFileSync(p('labels.csv'), ['path,label', ...[0, 1, 2, 3].map((i) => `img/a/${i}.png,0`), ...[0, 1, 2, 3].map((i) => `img/b/${i}.png,5`)].join('\n')), args: () => train('ok1', '--data', p('labels.csv')), status: 0, words: /4 training \/ 0 validation \/ 4 test images, 2 classes/ },
  { name: 'a label of 99999999 allocates nothing', setup: () => writeFileSync(p('huge.csv'), ['path,label', ...[0, 1, 2, 3].map((i) => `img/a/${i}.png,0`), ...[0, 1, 2, 3].map((i) => `img/b/${i}.png,99999999`)].join('\n')), args: () => train('ok2', '--data', p('huge.csv')), status: 0, words: /2 classes/ },
  {
    name: 'symlinked class folders are followed, a link loop ends',
    setup: async () => { mkdirSync(p('linked')); await folder(p('linked-src'), ['a', 'b']); symlinkSync(p('linked-src', 'a'), p('linked', 'a')); symlinkSync(p('linked-src', 'b'), p('linked', 'b')); symlinkSync('.', p('linked-src', 'a', 'loop')); },
    args: () => train('ok3', '--data', p('linked')), status: 0, words: /4 training \/ 0 validation \/ 4 test images, 2 classes/,
  },
  {
    name: 'non-UTF-8 file and class names are read',
    setup: async () => {
      await folder(p('latin'), ['b']);
      const cls = Buffer.concat([Buffer.from(p('latin') + '/caf'), Buffer.from([0xe9])]);
      mkdirSync(cls);
      for (let i = 0; i < 4; i++) {
        const tmp = p(`latin-${i}.png`);
        await png(tmp, 200 - 10 * i);
        writeFileSync(Buffer.concat([cls, Buffer.from('/'), Buffer.from([0x66, 0xff, 0x30 + i]), Buffer.from('.png')]), readFileSync(tmp));
      }
    },
    args: () => train('ok4', '--data', p('latin')), status: 0, words: /4 training \/ 0 validation \/ 4 test images, 2 classes/,
    after: () => assert.deepEqual(JSON.parse(readFileSync(p('ok4', 'run.json'), 'utf8')).classes, ['b', 'caf\\xe9']),
  },
  { name: 'test classes are matched by name, not position', setup: async () => void (await folder(p('test-ba'), ['b', 'a'].reverse())), args: () => ['train', '-c', p('base.json'), '--method', 'linear-probe', '--test-data', p('test-ba'), '--output', p('ok5')], status: 0, words: /test accuracy/ },
  { name: 'a stale lock is taken over', setup: () => { mkdirSync(p('stale')); writeFileSync(p('stale', '.graft.lock'), JSON.stringify({ pid: 2 ** 22 + 7, host: require_hostname() })); }, args: () => ['train', '-c', p('base.json'), '--method', 'linear-probe', '--output', p('stale')], status: 0, words: /test accuracy/ },
];

function graftAsync(args: string[]): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['dist/src/cli/main.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (status) => done({ status, out, err }));
  });
}

function require_hostname(): string {
  return spawnSync('hostname', { encoding: 'utf8' }).stdout.trim();
}

test('bad input: every case answers with its exit status and names what to fix', async () => {
  await folder(p('img'), ['a', 'b']);
  writeFileSync(p('base.json'), readFileSync(config('base')));
  writeFileSync(p('w.safetensors'), '');
  for (const [dir, rank] of [['run', '8'], ['run4', '4']] as const) {
    const r = graft(train(dir, '--rank', rank));
    assert.equal(r.status, 0, r.err + r.out);
  }
  const probe = graft(['train', '-c', p('base.json'), '--method', 'linear-probe', '--output', p('probe')]);
  assert.equal(probe.status, 0, probe.err);
  assert.ok(cases.length >= 60, `${cases.length} cases`);
  const failures: string[] = [];
  for (const c of cases) await c.setup?.();
  // Cases run four at a time, but those sharing the 'run' folder's lock one after another.
  const check = async (c: Case) => {
    const r = await graftAsync(c.args());
    const text = c.status === 0 ? r.out : r.err;
    if (r.status !== c.status || !c.words.test(text)) failures.push(`${c.name}: status ${r.status} (want ${c.status})\n    ${(r.err || r.out).trim().split('\n').slice(-3).join('\n    ')}`);
    else if (c.status !== 0 && /\n\s+at .*\.js:\d+/.test(r.err)) failures.push(`${c.name}: a stack trace\n${r.err}`);
    else {
      try {
        c.after?.();
      } catch (e) {
        failures.push(`${c.name}: ${(e as Error).message}`);
      }
    }
  };
  const touchesRun = (c: Case) => c.args().some((a) => a === p('run')) && c.args()[0] === 'train';
  const queue = cases.filter((c) => !touchesRun(c));
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let c = queue.shift(); c; c = queue.shift()) await check(c);
  }));
  for (const c of cases.filter(touchesRun)) await check(c);
  assert.deepEqual(failures, []);
});
