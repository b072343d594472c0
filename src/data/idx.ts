// The IDX format (MNIST, Fashion-MNIST): big-endian magic (0x0000 + dtype code + rank), the
// dimension sizes as big-endian uint32, then the raw elements. Gzipped files are inflated.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

export class IdxFormatError extends Error {
  override name = 'IdxFormatError';
}

/** Reads an IDX file of unsigned bytes (.gz or plain). */
export function readIdx(path: string): IdxArray {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new IdxFormatError(`cannot read IDX file ${path}: ${(e as Error).message}`);
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) throw new IdxFormatError(`${path} is not an IDX file (bad magic number)`);
  const code = bytes[2];
  const rank = bytes[3]!;
  if (code !== 0x08) throw new IdxFormatError(`${path}: IDX element type 0x${code?.toString(16)} is not supported (only unsigned bytes, 0x08)`);
  const shape: number[] = [];
  for (let i = 0; i < rank; i++) shape.push(bytes.readUInt32BE(4 + 4 * i));
  const offset = 4 + 4 * rank;
  const count = shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== offset + count) throw new IdxFormatError(`${path}: header promises ${count} elements but the file holds ${bytes.length - offset} (truncated or corrupt)`);
  return { shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset + offset, count) };
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** Fashion-MNIST from Debian's dataset-fashion-mnist (or `dir`): images (N, 28, 28) uint8 and labels (N). */
export function loadFashionMnist(split: 'train' | 'test', dir = FASHION_MNIST_DIR): { images: IdxArray; labels: Uint8Array } {
  const prefix = split === 'train' ? 'train' : 't10k';
  const find = (name: string) => `${dir}/${prefix}-${name}-ubyte.gz`;
  let images: IdxArray;
  let labels: IdxArray;
  try {
    images = readIdx(find('images-idx3'));
    labels = readIdx(find('labels-idx1'));
  } catch (e) {
    throw new IdxFormatError(`${(e as Error).message}\nFashion-MNIST is expected in ${dir}; on Debian/Ubuntu install it with: apt-get install -y dataset-fashion-mnist`);
  }
  if (images.shape[0] !== labels.shape[0]) throw new IdxFormatError(`Fashion-MNIST ${split}: ${images.shape[0]} images but ${labels.shape[0]} labels`);
  return { images, labels: labels.data };
}
