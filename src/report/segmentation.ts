// A segmentation run's report in Markdown: mIoU, pixel and mean accuracy, then IoU and accuracy per class.
import type { SegmentationReport } from '../eval/segmentation.js';
import { markdownTable, pct } from './tables.js';

export function segmentationMarkdown(title: string, r: SegmentationReport, extra: Record<string, string | number> = {}): string {
  const summary = markdownTable(['metric', 'value'], [
    ['mIoU', pct(r.mIoU)], ['pixel accuracy', pct(r.pixelAccuracy)], ['mean accuracy', pct(r.meanAccuracy)], ['labelled pixels', r.pixels], ...Object.entries(extra),
  ]);
  const perClass = markdownTable(['class', 'IoU', 'accuracy', 'pixels'], r.perClass.map((c) => [
    c.name, c.iou === null ? '—' : pct(c.iou), c.accuracy === null ? '—' : pct(c.accuracy), c.pixels,
  ]));
  return `# ${title}\n\n${summary}\n\n## Per class\n\n${perClass}\n\n— : the class is in neither the labels nor the predictions (IoU), or not in the labels (accuracy); means leave it out.\n`;
}
