// A small real image folder graft was never tuned on: Adwaita's 512² device icons (Debian
// package adwaita-icon-theme), one class per icon, each image a seeded random crop of the icon,
// tinted and laid on a random background, then shrunk to 32². Different crops, tints and
// backgrounds separate the training images from the test ones.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Generator } from '../../src/tensor/random.js';

export const ICON_DIR = '/usr/share/icons/Adwaita/512x512/devices';
export const ICON_CLASSES = ['printer', 'phone', 'input-keyboard', 'camera-web'] as const;

/** Why the folder cannot be made here, or null when it can. */
export function iconFolderUnavailable(): string | null {
  const missing = ICON_CLASSES.filter((c) => !existsSync(join(ICON_DIR, `${c}.png`)));
  return missing.length ? `the Adwaita icons (${missing.join(', ')}) are not installed: apt-get install -y adwaita-icon-theme` : null;
}

/** root/<icon>/<i>.png, `perClass` images per class, 32×32 RGB. */
export async function makeIconFolder(root: string, perClass: number, seed = 7): Promise<void> {
  const gen = new Generator(seed);
  for (const name of ICON_CLASSES) {
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    const icon = sharp(join(ICON_DIR, `${name}.png`)).ensureAlpha();
    const { width = 512, height = 512 } = await icon.metadata();
    for (let i = 0; i < perClass; i++) {
      const side = Math.round(width * (0.6 + 0.4 * gen.uniform()));
      const left = gen.int(width - side + 1);
      const top = gen.int(height - side + 1);
      const tint = [0, 1, 2].map(() => 0.5 + 0.5 * gen.uniform());
      const background = { r: gen.int(256), g: gen.int(256), b: gen.int(256), alpha: 1 };
      const crop = await icon.clone().extract({ left, top, width: side, height: Math.min(side, height - top) })
        .linear(tint.concat(1), [0, 0, 0, 0]).resize(32, 32, { fit: 'fill' }).png().toBuffer();
      await sharp({ create: { width: 32, height: 32, channels: 4, background } }).composite([{ input: crop }]).removeAlpha().png().toFile(join(dir, `${i}.png`));
    }
  }
}
