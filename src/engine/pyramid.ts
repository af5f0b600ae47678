// Faces of every size from one fixed-range detector: YuNet finds faces from about 10 px up to
// YUNET_LARGEST_FACE_PX at its input, so the finest pass (the image's longer side at DETECT_SIZE)
// covers the small ones and each coarser pass, on the pass before it shrunk PASS_STEP times,
// covers faces PASS_STEP times larger. A coarser pass runs only while a face too large for the
// passes before it can still fit in the image, and adds only faces that no finer pass found.
// Small faces the finest pass is unsure of get a second look (second-look.ts).
import { boxIoU, detectionInputSize, scaleFace, type DetectOptions, type Face, type YuNetDetector } from './detect.js';
import { resizeImage, type RgbImage } from './image.js';
import { CANDIDATE_SCORE, SMALL_FACE_PX, confirmSmallFaces } from './second-look.js';

/**
 * The largest face (box's longer side, in input pixels) YuNet 2023mar finds in every measured
 * case: crops of the 71 single-face photos of testdata faces/ scaled so that the face box is
 * 384 / 448 / 512 / 576 / 640 px found 100% / 100% / 97% / 47% / 4%, whether the face has
 * context around it or fills the frame.
 */
const YUNET_LARGEST_FACE_PX = 448;

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

/**
 * Each coarser pass sees the one before shrunk this many times (shrinkImage is written for 4). A face just too large for the
 * finer pass (YUNET_LARGEST_FACE_PX) is then 112 px, well inside YuNet's range (faces of 64 to
 * 127 px at its input: 3,400 of 3,400 found in the same crops), so no size falls between passes;
 * and the extra pass costs a sixteenth of the finest one (a 160x120 input beside 640x480), where
 * halving would cost a quarter.
 */
const PASS_STEP = 4;

type Size = { width: number; height: number };

/** The largest face box (longer side) that an upright face can have in a width x height image. */
function largestFaceIn({ width, height }: Size): number {
  return Math.min(height, FACE_BOX_ASPECT * width) * CLOSE_UP_OVERFILL;
}

function shrunk({ width, height }: Size): Size {
  return { width: Math.floor(width / PASS_STEP), height: Math.floor(height / PASS_STEP) };
}

/**
 * The input size of every pass, finest first: the image with its longer side at `finest`, then
 * shrunk while a face too large for every pass so far still fits in the image.
 */
export function passInputSizes(width: number, height: number, finest: number): Size[] {
  const sizes = [detectionInputSize(width, height, finest)];
  const largestFace = largestFaceIn(sizes[0]);
  for (let covered = YUNET_LARGEST_FACE_PX; covered < largestFace; covered *= PASS_STEP) sizes.push(shrunk(sizes[sizes.length - 1]));
  return sizes;
}

/**
 * The next pyramid level: rounded means of 4x4 pixel blocks (PASS_STEP), the incomplete edge
 * dropped. Cheaper than a resize call through libvips, which costs 1.5 ms at 640x480, mostly its
 * set-up: 0.2 ms here when rows are whole 32-bit words, 0.6 ms otherwise.
 */
export function shrinkImage(image: RgbImage): RgbImage {
  const { width, height } = shrunk(image);
  const data = new Uint8Array(width * height * 3);
  const wordRows = LITTLE_ENDIAN && image.data.byteOffset % 4 === 0 && (image.width * 3) % 4 === 0;
  (wordRows ? shrinkWords : shrinkBytes)(image, data, width, height);
  return { data, width, height };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const BLOCK_AREA = PASS_STEP * PASS_STEP;
const HALF_BLOCK = BLOCK_AREA / 2;
const EVEN_BYTES = 0x00ff00ff;

/**
 * A block row of four RGB pixels is three little-endian words [R0 G0 B0 R1] [G1 B1 R2 G2]
 * [B2 R3 G3 B3]. The four rows of a block are summed two bytes per word at a time (even bytes,
 * then odd ones: 16-bit lanes, at most 4 x 255), then each channel's four lanes are added.
 */
function shrinkWords(image: RgbImage, out: Uint8Array, width: number, height: number): void {
  const words = new Uint32Array(image.data.buffer, image.data.byteOffset, image.data.byteLength >> 2);
  const row = (image.width * 3) >> 2;
  for (let y = 0, o = 0; y < height; y++) {
    for (let x = 0, w = y * PASS_STEP * row; x < width; x++, w += 3, o += 3) {
      const a = w;
      const b = w + row;
      const c = w + 2 * row;
      const d = w + 3 * row;
      const e0 = (words[a] & EVEN_BYTES) + (words[b] & EVEN_BYTES) + (words[c] & EVEN_BYTES) + (words[d] & EVEN_BYTES);
      const o0 = ((words[a] >>> 8) & EVEN_BYTES) + ((words[b] >>> 8) & EVEN_BYTES) + ((words[c] >>> 8) & EVEN_BYTES) + ((words[d] >>> 8) & EVEN_BYTES);
      const e1 = (words[a + 1] & EVEN_BYTES) + (words[b + 1] & EVEN_BYTES) + (words[c + 1] & EVEN_BYTES) + (words[d + 1] & EVEN_BYTES);
      const o1 = ((words[a + 1] >>> 8) & EVEN_BYTES) + ((words[b + 1] >>> 8) & EVEN_BYTES) + ((words[c + 1] >>> 8) & EVEN_BYTES) + ((words[d + 1] >>> 8) & EVEN_BYTES);
      const e2 = (words[a + 2] & EVEN_BYTES) + (words[b + 2] & EVEN_BYTES) + (words[c + 2] & EVEN_BYTES) + (words[d + 2] & EVEN_BYTES);
      const o2 = ((words[a + 2] >>> 8) & EVEN_BYTES) + ((words[b + 2] >>> 8) & EVEN_BYTES) + ((words[c + 2] >>> 8) & EVEN_BYTES) + ((words[d + 2] >>> 8) & EVEN_BYTES);
      out[o] = ((e0 & 0xffff) + (o0 >>> 16) + (e1 >>> 16) + (o2 & 0xffff) + HALF_BLOCK) / BLOCK_AREA;
      out[o + 1] = ((o0 & 0xffff) + (e1 & 0xffff) + (o1 >>> 16) + (e2 >>> 16) + HALF_BLOCK) / BLOCK_AREA;
      out[o + 2] = ((e0 >>> 16) + (o1 & 0xffff) + (e2 & 0xffff) + (o2 >>> 16) + HALF_BLOCK) / BLOCK_AREA;
    }
  }
}

/** Any row layout: the four rows of a block summed per byte, then each pixel's four columns. */
function shrinkBytes(image: RgbImage, out: Uint8Array, width: number, height: number): void {
  const source = image.data;
  const row = image.width * 3;
  const used = width * PASS_STEP * 3;
  const columns = new Uint16Array(used);
  for (let y = 0, o = 0; y < height; y++) {
    const top = y * PASS_STEP * row;
    for (let i = 0; i < used; i++) columns[i] = source[top + i] + source[top + row + i] + source[top + 2 * row + i] + source[top + 3 * row + i];
    for (let i = 0; i < used; i += 12, o += 3) {
      out[o] = (columns[i] + columns[i + 3] + columns[i + 6] + columns[i + 9] + HALF_BLOCK) / BLOCK_AREA;
      out[o + 1] = (columns[i + 1] + columns[i + 4] + columns[i + 7] + columns[i + 10] + HALF_BLOCK) / BLOCK_AREA;
      out[o + 2] = (columns[i + 2] + columns[i + 5] + columns[i + 8] + columns[i + 11] + HALF_BLOCK) / BLOCK_AREA;
    }
  }
}

/**
 * Non-maximum suppression across passes, in the image's own coordinates: every face of the finest
 * pass is kept as that pass found it (so the default finds at least what the single pass finds,
 * with the same boxes and landmarks), and a later pass's face is added only when it overlaps no
 * face kept so far by more than `nmsThreshold`. Most confident first, at most `topK`.
 */
export function mergePasses([finest, ...later]: readonly Face[][], nmsThreshold: number, topK: number): Face[] {
  const kept = [...finest];
  for (const face of later.flat()) {
    if (kept.every((k) => boxIoU(k.box, face.box) <= nmsThreshold)) kept.push(face);
  }
  kept.sort((a, b) => b.score - a.score);
  return topK > 0 ? kept.slice(0, topK) : kept;
}

/**
 * Faces of every size in `image`, most confident first, in its own pixel coordinates: the finest
 * pass (exactly YuNetDetector.detect at options.detectSize), the coarser passes (each on the last
 * input shrunk), then the finest pass's small, unsure candidates that a second look confirms.
 */
export async function detectAllSizes(detector: YuNetDetector, image: RgbImage, options: DetectOptions): Promise<Face[]> {
  const sizes = passInputSizes(image.width, image.height, options.detectSize);
  const passes: Face[][] = [];
  let candidates: Face[] = [];
  let input = await resizeImage(image, sizes[0].width, sizes[0].height);
  for (let pass = 0; pass < sizes.length; pass++) {
    if (pass > 0) input = shrinkImage(input);
    const shrink = PASS_STEP ** pass;
    const sx = (shrink * image.width) / sizes[0].width;
    const sy = (shrink * image.height) / sizes[0].height;
    const result = await detector.run(input);
    passes.push(result.faces(options).map((f) => scaleFace(f, sx, sy)));
    if (pass === 0) candidates = smallCandidates(result.faces({ ...options, scoreThreshold: CANDIDATE_SCORE }), options.scoreThreshold).map((f) => scaleFace(f, sx, sy));
  }
  passes.push(await confirmSmallFaces(detector, image, candidates, options));
  return mergePasses(passes, options.nmsThreshold, options.topK);
}

/** Detections at a lower score than `scoreThreshold` whose box is small at the pass's input. */
function smallCandidates(faces: Face[], scoreThreshold: number): Face[] {
  return faces.filter((f) => f.score < scoreThreshold && Math.max(f.box[2], f.box[3]) <= SMALL_FACE_PX);
}
