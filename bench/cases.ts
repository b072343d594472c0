// The benchmark cases: one list that graft and every reference system (raw oneDNN, PyTorch,
// onnxruntime) measure, with the work each pass does, so rates are computed in one place.
//
// Shape vocabulary: B batch, N tokens, C channels, H/W spatial, K kernel, D head dim.
// Shapes are those of a ViT-S/16 (batch 8 at 224², so M = 8·197 = 1576 token rows) and of the
// CNN layers the adapters train through (ResNet-18, MobileNetV2, ConvNeXt-T, batch 8 at 56²).

export type OpKind =
  | 'linear' | 'matmul' | 'attention' | 'conv'
  | 'add' | 'bias_add' | 'gelu' | 'layernorm' | 'softmax' | 'batchnorm'
  | 'overhead_add' | 'overhead_matmul';

export type PassName = 'fwd' | 'bwd' | 'bwd-data' | 'bwd-weight' | 'call';

/** How a pass is rated: compute rate, memory rate, or latency per call. */
export type Unit = 'GFLOP/s' | 'GB/s' | 'µs';

/** The target each row is held to (see bench/README.md). */
export type Target = 'raw' | 'copy' | 'latency' | 'none';

export interface Pass {
  name: PassName;
  unit: Unit;
  /** FLOPs for GFLOP/s rows, bytes for GB/s rows, 1 for µs rows. */
  work: number;
}

export interface BenchCase {
  id: string;
  op: OpKind;
  /** Human-readable shape for the table. */
  label: string;
  /** Integer parameters, read by every implementation (names as in the C++ and Python programs). */
  params: Record<string, number>;
  passes: Pass[];
  target: Target;
}

const F32 = 4;
const M = 8 * 197;
/** ViT-S/16 linear layers: name, in features K, out features N. */
const vitLinears: readonly [string, number, number][] = [['qkv', 384, 1152], ['proj', 384, 384], ['fc1', 384, 1536], ['fc2', 1536, 384]];

function linearCase(op: 'linear' | 'matmul', name: string, k: number, n: number): BenchCase {
  const flops = 2 * M * k * n;
  return {
    id: `${op}.${name}`, op, target: 'raw',
    label: op === 'linear' ? `${name} x ${M}×${k}, W ${n}×${k}` : `${name} ${M}×${k} @ ${k}×${n}`,
    params: { m: M, k, n },
    // Backward computes gx and gW (two GEMMs of the forward's size); the bias takes no gradient.
    passes: [{ name: 'fwd', unit: 'GFLOP/s', work: flops }, { name: 'bwd', unit: 'GFLOP/s', work: 2 * flops }],
  };
}

function convCase(name: string, c: number, k: number, groups: number): BenchCase {
  const [n, h, w] = [8, 56, 56];
  const pad = (k - 1) / 2;
  // Stride 1 and "same" padding: the output is H×W.
  const flops = 2 * n * c * h * w * (c / groups) * k * k;
  return {
    id: `conv.${name}`, op: 'conv', target: 'raw',
    label: `${name} ${n}×${c}×${h}² k${k}${groups > 1 ? ' dw' : ''}`,
    params: { n, c, h, w, cout: c, kh: k, kw: k, stride: 1, pad, groups },
    passes: (['fwd', 'bwd-data', 'bwd-weight'] as const).map((p) => ({ name: p, unit: 'GFLOP/s', work: flops })),
  };
}

/**
 * Memory-bound ops are rated by the bytes they must move: every input read once and every
 * output written once (fwd reads x and writes y; bwd reads x or y and gy and writes gx).
 */
function streamCase(op: OpKind, id: string, label: string, params: Record<string, number>, elements: number, fwdTensors: number, bwdTensors: number | null): BenchCase {
  const passes: Pass[] = [{ name: 'fwd', unit: 'GB/s', work: fwdTensors * elements * F32 }];
  if (bwdTensors !== null) passes.push({ name: 'bwd', unit: 'GB/s', work: bwdTensors * elements * F32 });
  return { id, op, label, params, passes, target: 'copy' };
}

function buildCases(): BenchCase[] {
  const [heads, n, d] = [6, 197, 64];
  const attnBatch = 8 * heads;
  const attnFlops = 4 * attnBatch * n * n * d;
  const hidden = 1536;
  const bnShape = { n: 8, c: 64, h: 56, w: 56 };
  const bnElements = 8 * 64 * 56 * 56;
  return [
    ...(['linear', 'matmul'] as const).flatMap((op) => vitLinears.map(([name, k, nOut]) => linearCase(op, name, k, nOut))),
    {
      id: 'attention.vit_s', op: 'attention', target: 'raw',
      label: `B·heads ${attnBatch}, N ${n}, D ${d}`,
      params: { batch: 8, heads, n, d },
      // FlashAttention's convention: backward is 2.5× the forward (it recomputes q·kᵀ).
      passes: [{ name: 'fwd', unit: 'GFLOP/s', work: attnFlops }, { name: 'bwd', unit: 'GFLOP/s', work: 2.5 * attnFlops }],
    },
    convCase('resnet18', 64, 3, 1),
    convCase('mbv2_dw', 144, 3, 144),
    convCase('convnext_dw', 96, 7, 96),
    streamCase('add', 'add.residual', `${M}×384 + ${M}×384`, { rows: M, cols: 384 }, M * 384, 3, null),
    {
      id: 'bias_add.fc1', op: 'bias_add', target: 'copy',
      label: `${M}×${hidden} + ${hidden}`,
      params: { rows: M, cols: hidden },
      // Backward is the bias gradient: a column sum of gy.
      passes: [
        { name: 'fwd', unit: 'GB/s', work: (2 * M * hidden + hidden) * F32 },
        { name: 'bwd', unit: 'GB/s', work: (M * hidden + hidden) * F32 },
      ],
    },
    streamCase('gelu', 'gelu.fc1', `${M}×${hidden} erf`, { rows: M, cols: hidden }, M * hidden, 2, 3),
    streamCase('layernorm', 'layernorm.vit_s', `${M}×384`, { rows: M, cols: 384 }, M * 384, 2, 3),
    streamCase('softmax', 'softmax.attn', `${attnBatch}×${n}×${n}`, { rows: attnBatch * n, cols: n }, attnBatch * n * n, 2, 3),
    streamCase('batchnorm', 'batchnorm.resnet18', `${bnShape.n}×${bnShape.c}×${bnShape.h}² train`, bnShape, bnElements, 2, 3),
    {
      id: 'overhead.add4', op: 'overhead_add', target: 'latency', label: 'add of two [4]',
      params: { n: 4 }, passes: [{ name: 'call', unit: 'µs', work: 1 }],
    },
    {
      id: 'overhead.matmul64', op: 'overhead_matmul', target: 'latency', label: '64×64 @ 64×64',
      params: { m: 64, k: 64, n: 64 }, passes: [{ name: 'call', unit: 'µs', work: 1 }],
    },
  ];
}

export const allCases: readonly BenchCase[] = buildCases();

/** Cases whose id or op contains `only` (all when absent). */
export function selectCases(only: string | undefined): BenchCase[] {
  if (!only) return [...allCases];
  const picked = allCases.filter((c) => c.id.includes(only) || c.op.includes(only));
  if (picked.length === 0) {
    throw new Error(`--only '${only}' matches no case; ids are: ${allCases.map((c) => c.id).join(', ')}`);
  }
  return picked;
}

/**
 * Bytes moved by the memory-bandwidth copy: 512 MiB read and 512 MiB written, far beyond the
 * caches, so it measures the machine's memory bandwidth (the GB/s rows' target).
 */
export const MEMORY_COPY_BYTES = 2 ** 30;

/**
 * Copy sizes to time: the memory-bandwidth copy, and the bytes of each GB/s pass (a copy of the
 * same bytes stays in cache, like the pass itself: the rows show their share of it too).
 */
export function copySizes(cases: readonly BenchCase[], memory = true): number[] {
  const sizes = new Set<number>(memory ? [MEMORY_COPY_BYTES] : []);
  for (const c of cases) for (const p of c.passes) if (p.unit === 'GB/s') sizes.add(p.work);
  return [...sizes].sort((a, b) => a - b);
}
