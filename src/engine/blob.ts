// Interleaved 8-bit RGB to the planar float tensors networks take (OpenCV's dnn::blobFromImage).
import type { RgbImage } from './image.js';
import type { PixelConvention } from './models/registry.js';

/**
 * Writes `image` as one CHW plane set into `target` at `offset`, `planeWidth` x `planeHeight` per
 * plane, zeroing the right and bottom padding as OpenCV's copyMakeBorder(BORDER_CONSTANT, 0) does
 * for raw pixels (so `target` may be a reused buffer).
 */
export function writeBlob(
  target: Float32Array,
  offset: number,
  image: RgbImage,
  planeWidth: number,
  planeHeight: number,
  convention: PixelConvention,
): void {
  const planeSize = planeWidth * planeHeight;
  const planes = [0, 1, 2].map((p) => target.subarray(offset + p * planeSize, offset + (p + 1) * planeSize));
  // The planes that receive red, green and blue, with each one's gain and bias.
  const byChannel = convention.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const [red, green, blue] = byChannel.map((p) => ({
    plane: planes[p],
    gain: convention.scale / convention.std[p],
    bias: -convention.mean[p] / convention.std[p],
  }));
  const pixels = image.width * image.height;
  const identity = [red, green, blue].every((c) => c.gain === 1 && c.bias === 0);
  // One flat loop over the pixels with constant channel offsets, rows packed at the start of each
  // plane, then rows moved to their stride: V8 runs this about three times faster than a loop
  // nested per row, or one indexing channels through variables.
  if (identity) copyPixels(red.plane, green.plane, blue.plane, image.data, pixels);
  else normalisePixels(red, green, blue, image.data, pixels);
  for (const plane of planes) spreadRows(plane, image.width, image.height, planeWidth, planeHeight);
}

/**
 * The detector's case (raw 0..255) is a plain copy. Reading the interleaved bytes as 32-bit words,
 * four pixels (twelve bytes, three words) at a time, halves its cost: it runs on every request, on
 * 300,000 pixels at 640x480.
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function copyPixels(red: Float32Array, green: Float32Array, blue: Float32Array, data: Uint8Array, pixels: number): void {
  let i = 0;
  if (LITTLE_ENDIAN && data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, (pixels * 3) >> 2);
    // Little-endian words: [R0 G0 B0 R1] [G1 B1 R2 G2] [B2 R3 G3 B3].
    for (let w = 0; i + 4 <= pixels; i += 4, w += 3) {
      const a = words[w];
      const b = words[w + 1];
      const c = words[w + 2];
      red[i] = a & 255;
      green[i] = (a >>> 8) & 255;
      blue[i] = (a >>> 16) & 255;
      red[i + 1] = a >>> 24;
      green[i + 1] = b & 255;
      blue[i + 1] = (b >>> 8) & 255;
      red[i + 2] = (b >>> 16) & 255;
      green[i + 2] = b >>> 24;
      blue[i + 2] = c & 255;
      red[i + 3] = (c >>> 8) & 255;
      green[i + 3] = (c >>> 16) & 255;
      blue[i + 3] = c >>> 24;
    }
  }
  for (let src = i * 3; i < pixels; i++, src += 3) {
    red[i] = data[src];
    green[i] = data[src + 1];
    blue[i] = data[src + 2];
  }
}

interface ChannelPlane {
  plane: Float32Array;
  gain: number;
  bias: number;
}

function normalisePixels(red: ChannelPlane, green: ChannelPlane, blue: ChannelPlane, data: Uint8Array, pixels: number): void {
  const [r, g, b] = [red.plane, green.plane, blue.plane];
  for (let i = 0, src = 0; i < pixels; i++, src += 3) {
    r[i] = data[src] * red.gain + red.bias;
    g[i] = data[src + 1] * green.gain + green.bias;
    b[i] = data[src + 2] * blue.gain + blue.bias;
  }
}

/** Moves rows packed at `width` to `planeWidth` apart (last row first, so none is overwritten) and zeroes the padding. */
function spreadRows(plane: Float32Array, width: number, height: number, planeWidth: number, planeHeight: number): void {
  if (planeWidth > width) {
    for (let y = height - 1; y > 0; y--) plane.copyWithin(y * planeWidth, y * width, (y + 1) * width);
    for (let y = 0; y < height; y++) plane.fill(0, y * planeWidth + width, (y + 1) * planeWidth);
  }
  plane.fill(0, height * planeWidth, planeHeight * planeWidth);
}
