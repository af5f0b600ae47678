// writeBlob against the plain definition: out[plane][y][x] = (pixel * scale - mean) / std, zero padding.
import { describe, expect, it } from 'vitest';
import { writeBlob } from '../../src/engine/blob.js';
import type { PixelConvention } from '../../src/engine/models/registry.js';

function reference(data: Uint8Array, width: number, height: number, padW: number, padH: number, c: PixelConvention): Float32Array {
  const out = new Float32Array(3 * padW * padH);
  const order = c.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let p = 0; p < 3; p++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) out[p * padW * padH + y * padW + x] = (data[(y * width + x) * 3 + order[p]] * c.scale - c.mean[p]) / c.std[p];
  return out;
}

const RAW_BGR: PixelConvention = { channelOrder: 'bgr', scale: 1, mean: [0, 0, 0], std: [1, 1, 1] };
const IMAGENET_RGB: PixelConvention = { channelOrder: 'rgb', scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

describe('writeBlob', () => {
  for (const [width, height, padW, padH] of [
    [7, 5, 7, 5],
    [13, 9, 32, 32],
    [640, 360, 640, 384],
  ]) {
    for (const convention of [RAW_BGR, IMAGENET_RGB]) {
      for (const byteOffset of [0, 1]) {
        it(`${width}x${height} into ${padW}x${padH}, ${convention.channelOrder}, source at byte offset ${byteOffset}`, () => {
          const backing = new Uint8Array(width * height * 3 + byteOffset).map((_, i) => (i * 7919) % 256);
          const data = backing.subarray(byteOffset);
          // A reused buffer full of leftovers: the padding must come back zero.
          const target = new Float32Array(3 * padW * padH + 5).fill(42);
          writeBlob(target, 5, { data, width, height }, padW, padH, convention);
          const expected = reference(data, width, height, padW, padH, convention);
          let maxDiff = 0;
          expected.forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - target[5 + i]))));
          expect(maxDiff).toBeLessThan(1e-5);
          expect([...target.subarray(0, 5)]).toEqual([42, 42, 42, 42, 42]);
        });
      }
    }
  }
});
