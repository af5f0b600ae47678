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
  // Output plane p takes source channel order[p]; one pass over the pixels fills all three planes.
  const order = convention.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const gain = [0, 1, 2].map((p) => convention.scale / convention.std[p]);
  const bias = [0, 1, 2].map((p) => -convention.mean[p] / convention.std[p]);
  const [c0, c1, c2] = order;
  const [g0, g1, g2] = gain;
  const [b0, b1, b2] = bias;
  for (let y = 0; y < height; y++) {
    let src = y * width * 3;
    let dst = offset + y * planeWidth;
    const rowEnd = dst + width;
    for (; dst < rowEnd; dst++, src += 3) {
      target[dst] = data[src + c0] * g0 + b0;
      target[dst + planeSize] = data[src + c1] * g1 + b1;
      target[dst + 2 * planeSize] = data[src + c2] * g2 + b2;
    }
  }
}
