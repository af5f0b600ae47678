// Five-point face alignment onto the ArcFace 112x112 template, as OpenCV FaceRecognizerSF::alignCrop
// does it: a least-squares similarity transform (Umeyama) from the detected landmarks to the
// template, then warpAffine with INTER_LINEAR and a black constant border.
import type { Landmarks } from './detect.js';
import type { RgbImage } from './image.js';

export const ALIGNED_SIZE = 112;

/** ArcFace reference landmarks for a 112x112 crop, in the detector's landmark order. */
export const ARCFACE_TEMPLATE: Landmarks = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

// The template's mean, rounded to four decimals as OpenCV hard-codes it; kept for parity.
const TEMPLATE_MEAN: [number, number] = [56.0262, 71.9008];

/** Row-major 2x3 affine matrix [a, b, c, d, e, f]: x' = a x + b y + c, y' = d x + e y + f. */
export type Affine = [number, number, number, number, number, number];

/**
 * The similarity transform (rotation, uniform scale, translation) that maps `src` onto the
 * template with least squared error. In 2-D, Umeyama's SVD solution reduces to a closed form:
 * with A the dst/src cross-covariance, rotation angle atan2(A10 - A01, A00 + A11) and scale
 * |(A00 + A11, A10 - A01)| / var(src). This equals OpenCV's SVD route whenever the landmarks are
 * not collinear (rank 2), reflection case included.
 */
export function similarityTransform(src: Landmarks, dst: Landmarks = ARCFACE_TEMPLATE): Affine {
  const n = src.length;
  const srcMean = [0, 0];
  for (const [x, y] of src) {
    srcMean[0] += x / n;
    srcMean[1] += y / n;
  }
  const dstMean = dst === ARCFACE_TEMPLATE ? TEMPLATE_MEAN : meanOf(dst);
  let a00 = 0;
  let a01 = 0;
  let a10 = 0;
  let a11 = 0;
  let srcVariance = 0;
  for (let i = 0; i < n; i++) {
    const sx = src[i][0] - srcMean[0];
    const sy = src[i][1] - srcMean[1];
    const dx = dst[i][0] - dstMean[0];
    const dy = dst[i][1] - dstMean[1];
    a00 += (dx * sx) / n;
    a01 += (dx * sy) / n;
    a10 += (dy * sx) / n;
    a11 += (dy * sy) / n;
    srcVariance += (sx * sx + sy * sy) / n;
  }
  // scale * cos(angle) and scale * sin(angle)
  const p = (a00 + a11) / srcVariance;
  const q = (a10 - a01) / srcVariance;
  return [p, -q, dstMean[0] - (p * srcMean[0] - q * srcMean[1]), q, p, dstMean[1] - (q * srcMean[0] + p * srcMean[1])];
}

function meanOf(points: Landmarks): [number, number] {
  const sum = points.reduce((acc, [x, y]) => [acc[0] + x, acc[1] + y], [0, 0]);
  return [sum[0] / points.length, sum[1] / points.length];
}

/** cv::invertAffineTransform. */
export function invertAffine([a, b, c, d, e, f]: Affine): Affine {
  const det = a * e - b * d;
  const inv = det !== 0 ? 1 / det : 0;
  const a11 = e * inv;
  const a22 = a * inv;
  const a12 = -b * inv;
  const a21 = -d * inv;
  return [a11, a12, -a11 * c - a12 * f, a21, a22, -a21 * c - a22 * f];
}

/** saturate_cast<int>(double): round half to even, as lrint does in the default FP mode. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// OpenCV's fixed-point bilinear warp: source coordinates carry INTER_BITS fractional bits
// (1/32 pixel), computed through AB_BITS of precision; weights are products of 5-bit fractions.
const INTER_BITS = 5;
const INTER_TAB_SIZE = 1 << INTER_BITS;
const AB_BITS = 10;
const AB_SCALE = 1 << AB_BITS;
const ROUND_DELTA = AB_SCALE / INTER_TAB_SIZE / 2;
const WEIGHT_BITS = 2 * INTER_BITS;
const WEIGHT_ROUND = 1 << (WEIGHT_BITS - 1);

/**
 * cv::warpAffine(src, dst, M, size, INTER_LINEAR, BORDER_CONSTANT, 0) for 3-channel 8-bit images,
 * bit for bit: same coordinate quantisation, same integer weights, same rounding.
 */
export function warpAffine(image: RgbImage, forward: Affine, width: number, height: number): RgbImage {
  const m = invertAffine(forward);
  const out = new Uint8Array(width * height * 3);
  const { data, width: srcW, height: srcH } = image;
  const adelta = new Int32Array(width);
  const bdelta = new Int32Array(width);
  for (let x = 0; x < width; x++) {
    adelta[x] = roundHalfEven(m[0] * x * AB_SCALE);
    bdelta[x] = roundHalfEven(m[3] * x * AB_SCALE);
  }
  // Neighbours outside the image read as 0 (BORDER_CONSTANT).
  const pixel = (sx: number, sy: number, ch: number): number =>
    sx >= 0 && sy >= 0 && sx < srcW && sy < srcH ? data[(sy * srcW + sx) * 3 + ch] : 0;
  const rowStride = srcW * 3;
  for (let y = 0; y < height; y++) {
    const x0 = roundHalfEven((m[1] * y + m[2]) * AB_SCALE) + ROUND_DELTA;
    const y0 = roundHalfEven((m[4] * y + m[5]) * AB_SCALE) + ROUND_DELTA;
    for (let x = 0; x < width; x++) {
      const X = (x0 + adelta[x]) >> (AB_BITS - INTER_BITS);
      const Y = (y0 + bdelta[x]) >> (AB_BITS - INTER_BITS);
      const sx = X >> INTER_BITS;
      const sy = Y >> INTER_BITS;
      const fx = X & (INTER_TAB_SIZE - 1);
      const fy = Y & (INTER_TAB_SIZE - 1);
      const w00 = (INTER_TAB_SIZE - fx) * (INTER_TAB_SIZE - fy);
      const w01 = fx * (INTER_TAB_SIZE - fy);
      const w10 = (INTER_TAB_SIZE - fx) * fy;
      const w11 = fx * fy;
      const o = (y * width + x) * 3;
      if (sx >= 0 && sy >= 0 && sx + 1 < srcW && sy + 1 < srcH) {
        const p00 = sy * rowStride + sx * 3;
        const p10 = p00 + rowStride;
        for (let ch = 0; ch < 3; ch++) {
          const sum = w00 * data[p00 + ch] + w01 * data[p00 + 3 + ch] + w10 * data[p10 + ch] + w11 * data[p10 + 3 + ch];
          out[o + ch] = (sum + WEIGHT_ROUND) >> WEIGHT_BITS;
        }
        continue;
      }
      for (let ch = 0; ch < 3; ch++) {
        const sum =
          w00 * pixel(sx, sy, ch) + w01 * pixel(sx + 1, sy, ch) + w10 * pixel(sx, sy + 1, ch) + w11 * pixel(sx + 1, sy + 1, ch);
        out[o + ch] = (sum + WEIGHT_ROUND) >> WEIGHT_BITS;
      }
    }
  }
  return { data: out, width, height };
}

/** The 112x112 face crop the recognizers were trained on. */
export function alignToTemplate(image: RgbImage, landmarks: Landmarks): RgbImage {
  return warpAffine(image, similarityTransform(landmarks), ALIGNED_SIZE, ALIGNED_SIZE);
}
