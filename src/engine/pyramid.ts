// Faces of every size from one fixed-range detector: YuNet finds faces from about 10 px up to
// YUNET_LARGEST_FACE_PX at its input, so the finest pass (the image's longer side at DETECT_SIZE)
// covers the small ones and each coarser pass, at half the size of the one before, doubles the
// largest face covered. A coarser pass runs only while a face too large for the passes before it
// can still fit in the image, and adds only faces that no finer pass found.
import type { Face } from './detect.js';
import { detectionInputSize } from './detect.js';

/**
 * The largest face (box's longer side, in input pixels) YuNet 2023mar finds in every measured
 * case: crops of the 71 single-face photos of testdata faces/ scaled so that the face box is
 * 384 / 448 / 512 / 576 / 640 px found 100% / 100% / 97% / 47% / 4%, whether the face has
 * context around it or fills the frame.
 */
export const YUNET_LARGEST_FACE_PX = 448;

/**
 * How much taller than wide YuNet's face boxes are: 1.22 to 1.60 (median 1.38) over faces/.
 * A face whose width fills the image can have a box this many times the image's width.
 */
const FACE_BOX_ASPECT = 1.6;

/**
 * Close-ups cut at forehead and chin (the face larger than the frame) are still found, with a box
 * up to 1.17 times the frame's side (faces/ crops with the face 1.1 to 1.5 times the crop).
 */
const CLOSE_UP_OVERFILL = 1.2;

/** Each coarser pass halves the image's longer side. */
const PASS_SCALE_STEP = 2;

/** The largest face box (longer side) that an upright face can have in a width x height image. */
export function largestFaceIn(width: number, height: number): number {
  return Math.min(height, FACE_BOX_ASPECT * width) * CLOSE_UP_OVERFILL;
}

/**
 * The longer side of each pass, finest first: `finest` itself, then halves while a face too large
 * for every pass so far still fits in the image at the finest pass's scale.
 */
export function passSizes(width: number, height: number, finest: number): number[] {
  const input = detectionInputSize(width, height, finest);
  const largestFace = largestFaceIn(input.width, input.height);
  const sizes = [finest];
  for (let covered = YUNET_LARGEST_FACE_PX; covered < largestFace; covered *= PASS_SCALE_STEP) {
    sizes.push(Math.round(sizes[sizes.length - 1] / PASS_SCALE_STEP));
  }
  return sizes;
}

function boxIoU(a: Face['box'], b: Face['box']): number {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  const intersection = w > 0 && h > 0 ? w * h : 0;
  const union = a[2] * a[3] + b[2] * b[3] - intersection;
  return union > 0 ? intersection / union : 1;
}

/**
 * Non-maximum suppression across passes, in the image's own coordinates: every face of the finest
 * pass is kept as that pass found it (so the default finds at least what the single pass finds,
 * with the same boxes and landmarks), and a coarser pass's face is added only when it overlaps no
 * face already kept by more than `nmsThreshold`. Most confident first, at most `topK`.
 */
export function mergePasses(passes: readonly Face[][], nmsThreshold: number, topK: number): Face[] {
  const kept: Face[] = [];
  for (const faces of passes) {
    const before = kept.length;
    for (const face of faces) {
      if (kept.slice(0, before).every((k) => boxIoU(k.box, face.box) <= nmsThreshold)) kept.push(face);
    }
  }
  kept.sort((a, b) => b.score - a.score);
  return topK > 0 ? kept.slice(0, topK) : kept;
}
