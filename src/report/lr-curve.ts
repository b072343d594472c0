// The learning-rate range test's curve as a small SVG (loss against log learning rate, the
// smoothed loss drawn over the raw one, the chosen rate marked), written next to lr_find.json.

interface CurvePoint {
  lr: number;
  loss: number;
  smoothed: number;
}

const W = 480;
const H = 300;
const PAD = 40;

export function lrCurveSvg(curve: readonly CurvePoint[], chosen: number): string {
  const pts = curve.filter((p) => Number.isFinite(p.loss) && Number.isFinite(p.smoothed));
  if (pts.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><text x="${PAD}" y="${H / 2}">no finite loss</text></svg>\n`;
  const lx = pts.map((p) => Math.log10(p.lr));
  const x0 = Math.min(...lx);
  const x1 = Math.max(...lx, x0 + 1e-9);
  // The raw loss can spike far above the rest as the test diverges; the y range follows the smoothed loss.
  const ys = pts.map((p) => p.smoothed);
  const y0 = Math.min(...ys);
  const y1 = Math.max(...ys, y0 + 1e-9);
  const sx = (v: number) => PAD + ((v - x0) / (x1 - x0)) * (W - 2 * PAD);
  const sy = (v: number) => H - PAD - ((Math.min(Math.max(v, y0), y1) - y0) / (y1 - y0)) * (H - 2 * PAD);
  const line = (f: (p: CurvePoint) => number) => pts.map((p, i) => `${sx(lx[i]!).toFixed(1)},${sy(f(p)).toFixed(1)}`).join(' ');
  const cx = sx(Math.log10(chosen));
  const ticks = [];
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) ticks.push(`<text x="${sx(e).toFixed(1)}" y="${H - PAD + 16}" font-size="11" text-anchor="middle">1e${e}</text>`);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<polyline fill="none" stroke="#bbb" points="${line((p) => p.loss)}"/>`,
    `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="${line((p) => p.smoothed)}"/>`,
    `<line x1="${cx.toFixed(1)}" y1="${PAD}" x2="${cx.toFixed(1)}" y2="${H - PAD}" stroke="#d62728" stroke-dasharray="4 3"/>`,
    `<text x="${(cx + 4).toFixed(1)}" y="${PAD + 12}" font-size="11" fill="#d62728">lr ${chosen}</text>`,
    ...ticks,
    `<text x="${W / 2}" y="${H - 6}" font-size="12" text-anchor="middle">learning rate (log)</text>`,
    `<text x="12" y="${H / 2}" font-size="12" transform="rotate(-90 12 ${H / 2})" text-anchor="middle">loss (smoothed ${y0.toFixed(2)}–${y1.toFixed(2)})</text>`,
    '</svg>',
    '',
  ].join('\n');
}
