// Indexed-colour PNG files (colour type 3, 8 bits per index): what segmentation masks are written
// as, a palette entry per class. Written by hand because an encoder that quantises colours
// (libvips' palette PNG) may merge or reorder entries, and a mask's bytes must be its indices.
import { crc32, deflateSync, inflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit indexed PNG of width × height indices (row-major) with `palette` (RGB triples, up to 256 entries). */
export function encodeIndexedPng(indices: Uint8Array, width: number, height: number, palette: readonly (readonly [number, number, number])[]): Buffer {
  if (indices.length !== width * height) throw new RangeError(`encodeIndexedPng: ${indices.length} indices for ${width}×${height}`);
  if (palette.length === 0 || palette.length > 256) throw new RangeError(`encodeIndexedPng: a palette has 1 to 256 entries; got ${palette.length}`);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 3; // indexed colour
  const plte = Buffer.from(palette.flatMap(([r, g, b]) => [r, g, b]));
  const rows = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    rows[y * (width + 1)] = 0; // filter: none
    rows.set(indices.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('PLTE', plte), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

/**
 * The Pascal VOC colour map (the palette of VOC's SegmentationClass PNGs): entry i spreads the
 * bits of i over the high bits of R, G and B. Entry 255 is VOC's ignore colour (224, 224, 192).
 */
export function vocPalette(): [number, number, number][] {
  return Array.from({ length: 256 }, (_, i) => {
    let r = 0, g = 0, b = 0;
    let c = i;
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    return [r, g, b];
  });
}

/**
 * The indices of an 8-bit, non-interlaced indexed PNG (what encodeIndexedPng and VOC's
 * SegmentationClass files are), or null when the file is another kind of PNG. Throws on a damaged
 * file with the reason.
 */
export function decodeIndexedPng(file: Buffer): { indices: Uint8Array; width: number; height: number } | null {
  if (file.length < 8 || !file.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG file');
  let pos = 8;
  let width = 0, height = 0;
  const idat: Buffer[] = [];
  while (pos + 8 <= file.length) {
    const len = file.readUInt32BE(pos);
    const type = file.toString('ascii', pos + 4, pos + 8);
    const data = file.subarray(pos + 8, pos + 8 + len);
    if (data.length !== len) throw new Error(`truncated ${type} chunk`);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[9] !== 3 || data[12] !== 0) return null;
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    pos += 12 + len;
  }
  if (!width || !height) throw new Error('no IHDR chunk');
  const raw = inflateSync(Buffer.concat(idat));
  if (raw.length < (width + 1) * height) throw new Error(`image data holds ${raw.length} bytes for ${width}×${height}`);
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (width + 1)]!;
    const row = raw.subarray(y * (width + 1) + 1, (y + 1) * (width + 1));
    for (let x = 0; x < width; x++) {
      const a = x > 0 ? out[y * width + x - 1]! : 0;
      const b = y > 0 ? out[(y - 1) * width + x]! : 0;
      const c = x > 0 && y > 0 ? out[(y - 1) * width + x - 1]! : 0;
      let v = row[x]!;
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`unknown row filter ${filter}`);
      out[y * width + x] = v & 0xff;
    }
  }
  return { indices: out, width, height };
}
