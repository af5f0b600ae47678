// Interleaved 8-bit RGB to the planar float tensors networks take (OpenCV's dnn::blobFromImage).
import type { RgbImage } from './image.js';
import type { PixelConvention } from './models/registry.js';

/**
 * Writes `image` as one CHW plane set into `target` at `offset`, `planeWidth` x `planeHeight`
 * per plane. Pixels beyond the image (right/bottom padding) stay as they are in `target` (zero
 * in a fresh array), which is what OpenCV's copyMakeBorder(BORDER_CONSTANT, 0) gives for raw pixels.
 */
export function writeBlob(
  target: Float32Array,
  offset: number,
  image: RgbImage,
  planeWidth: number,
  planeHeight: number,
  convention: PixelConvention,
): void {
  const { data, width, height } = image;
  const planeSize = planeWidth * planeHeight;
  // Plane p takes source channel sourceChannel[p].
  const sourceChannel = convention.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let p = 0; p < 3; p++) {
    const channel = sourceChannel[p];
    const gain = convention.scale / convention.std[p];
    const bias = -convention.mean[p] / convention.std[p];
    const plane = offset + p * planeSize;
    for (let y = 0; y < height; y++) {
      let src = y * width * 3 + channel;
      let dst = plane + y * planeWidth;
      for (let x = 0; x < width; x++, src += 3, dst++) target[dst] = data[src] * gain + bias;
    }
  }
}
