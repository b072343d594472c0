// Test-time perturbations for robustness evaluation (`graft eval --perturb`), each drawn per
// image from a generator seeded by (seed, image position), so a run is reproducible:
//   noise     Gaussian noise of std σ on [0, 1] pixel values, added after resizing, not clipped (default σ = 0.1)
//   crop      a random box of side f · the image's sides (area f²) at a uniform position, resized to
//             the model's input (default f = 0.7)
//   jitter    brightness, contrast and saturation factors each uniform in [1 − j, 1 + j] (default j = 0.4)
//   rotation  a uniform angle in [−θ, θ] degrees, counter-clockwise, corners black, size kept (default θ = 30)
// Everything else is the model's evaluation preprocessing.
import type { Generator } from '../tensor/random.js';
import type { PreprocessConfig } from './preprocess.js';
import { transformImage, type GeometryOps, type RgbImage } from './image.js';
import { evalGeometry, writeNormalised, type JitterFactors } from './transforms.js';

export const PERTURBATIONS = ['noise', 'crop', 'jitter', 'rotation'] as const;
export type PerturbationKind = (typeof PERTURBATIONS)[number];

/** Default severities: noise σ, crop side fraction f, jitter strength j, rotation θ (degrees). */
export const PERTURBATION_DEFAULTS: Record<PerturbationKind, number> = { noise: 0.1, crop: 0.7, jitter: 0.4, rotation: 30 };

export interface Perturbation {
  kind: PerturbationKind;
  severity: number;
}

/** What one image's perturbation drew. */
export interface DrawnPerturbation {
  kind: PerturbationKind;
  /** crop: the box in source pixels. */
  box?: { left: number; top: number; width: number; height: number };
  /** rotation: degrees. */
  angle?: number;
  jitter?: JitterFactors;
  /** noise: σ (the noise itself is drawn while the pixels are written). */
  sigma?: number;
}

/** Checks a severity, naming the flag that sets it. */
export function checkSeverity(p: Perturbation): Perturbation {
  const { kind, severity: s } = p;
  const ok = kind === 'noise' ? s >= 0 : kind === 'crop' ? s > 0 && s <= 1 : kind === 'jitter' ? s >= 0 && s < 1 : s >= 0 && s <= 180;
  if (!Number.isFinite(s) || !ok) {
    const range = { noise: '≥ 0 (--noise-std)', crop: 'in (0, 1] (--crop-fraction)', jitter: 'in [0, 1) (--jitter)', rotation: 'in [0, 180] degrees (--rotation)' }[kind];
    throw new Error(`perturbation ${kind}: severity ${s} must be ${range}`);
  }
  return p;
}

/** Draws one image's perturbation (the crop box needs the image's size). */
export function drawPerturbation(p: Perturbation, img: { width: number; height: number }, gen: Generator): DrawnPerturbation {
  switch (p.kind) {
    case 'noise':
      return { kind: 'noise', sigma: p.severity };
    case 'crop': {
      const width = Math.max(1, Math.round(p.severity * img.width));
      const height = Math.max(1, Math.round(p.severity * img.height));
      return { kind: 'crop', box: { left: gen.int(img.width - width + 1), top: gen.int(img.height - height + 1), width, height } };
    }
    case 'jitter': {
      const f = () => 1 + p.severity * (2 * gen.uniform() - 1);
      return { kind: 'jitter', jitter: { brightness: f(), contrast: f(), saturation: f() } };
    }
    case 'rotation':
      return { kind: 'rotation', angle: (2 * gen.uniform() - 1) * p.severity };
  }
}

/** The perturbed image through the evaluation preprocessing into `out` at `offset`; returns what was drawn. */
export async function preparePerturbed(img: RgbImage, pre: PreprocessConfig, p: Perturbation, gen: Generator, out: Float32Array, offset: number): Promise<DrawnPerturbation> {
  const drawn = drawPerturbation(p, img, gen);
  const [, h, w] = pre.inputSize;
  let ops: GeometryOps;
  if (drawn.box) ops = { crop: drawn.box, resize: { width: w, height: h, kernel: pre.interpolation } };
  else ops = evalGeometry(img, pre);
  if (drawn.angle) ops.rotate = drawn.angle;
  const res = await transformImage(img, ops);
  writeNormalised(res, pre, drawn.jitter ?? null, drawn.sigma ?? 0, gen, out, offset);
  return drawn;
}
