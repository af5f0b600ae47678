// A second look at small faces the finest pass was unsure of. YuNet scores small faces low: at the
// 640 pass, faces composited into canvases with a box 16 / 20 / 24 / 32 / 40 px tall were found at
// DETECT_SCORE 0.9 in 0% / 1% / 59% / 90% / 94% of 71 cases, although most of them were candidates
// at a lower score. Cropped with their surroundings and enlarged so that the face is 64 px, the
// same candidates reach 0.9: with the look, 89% / 96% / 100% are found (16 / 20 / 24 px, in
// 1920x1080 canvases; 86% at 16 px in 640x480 ones). On the 101 photos of faces/, multi/ and
// noface/ the 25 such candidates confirmed nothing, so the look adds no face that is not there;
// in the video frames it found a pianist's 25x36 px face that the single pass misses.
import { boxIoU, type Face, type Landmarks, type PostProcessOptions, type YuNetDetector } from './detect.js';
import { cropResizeImage, type RgbImage } from './image.js';

/** Finest-pass detections scoring at least this (and under DETECT_SCORE) are candidates. */
export const CANDIDATE_SCORE = 0.3;

/** Only candidates this small (box's longer side at the finest pass's input) get a second look. */
export const SMALL_FACE_PX = 48;

/** The look crops this many times the candidate's box around its centre, for the context YuNet needs... */
const CONTEXT = 4;

/** ...and scales the crop to this side: the face at 64 px, where YuNet found every measured face. */
const LOOK_INPUT_PX = 256;

/** At most this many looks per image, most confident candidates first: the cost stays bounded on crowds. */
const MAX_LOOKS = 16;

/** The look's face must overlap its candidate this much to confirm it. */
const SAME_FACE_IOU = 0.3;

/** The candidate's surroundings, in whole pixels inside the image. */
function lookRegion(image: RgbImage, candidate: Face): [number, number, number, number] | null {
  const [x, y, w, h] = candidate.box;
  const half = (CONTEXT * Math.max(w, h)) / 2;
  const left = Math.max(0, Math.floor(x + w / 2 - half));
  const top = Math.max(0, Math.floor(y + h / 2 - half));
  const right = Math.min(image.width, Math.ceil(x + w / 2 + half));
  const bottom = Math.min(image.height, Math.ceil(y + h / 2 + half));
  return right > left && bottom > top ? [left, top, right - left, bottom - top] : null;
}

/** A face found in a crop at (left, top) enlarged by 1/sx, 1/sy, in the image's coordinates. */
function inImage(face: Face, left: number, top: number, sx: number, sy: number): Face {
  const [x, y, w, h] = face.box;
  return {
    box: [left + x * sx, top + y * sy, w * sx, h * sy],
    landmarks: face.landmarks.map(([px, py]) => [left + px * sx, top + py * sy]) as Landmarks,
    score: face.score,
  };
}

/** The candidate confirmed by a closer look (a face at DETECT_SCORE, in image coordinates), or null. */
async function look(detector: YuNetDetector, image: RgbImage, candidate: Face, options: PostProcessOptions): Promise<Face | null> {
  const region = lookRegion(image, candidate);
  if (!region) return null;
  const [left, top, regionWidth, regionHeight] = region;
  const scale = LOOK_INPUT_PX / (CONTEXT * Math.max(candidate.box[2], candidate.box[3]));
  const width = Math.max(1, Math.round(regionWidth * scale));
  const height = Math.max(1, Math.round(regionHeight * scale));
  const input = await cropResizeImage(image, region, width, height);
  const sx = regionWidth / width;
  const sy = regionHeight / height;
  const faces = (await detector.detectInput(input, options)).map((f) => inImage(f, left, top, sx, sy));
  return faces.find((f) => boxIoU(f.box, candidate.box) > SAME_FACE_IOU) ?? null;
}

/**
 * The faces among `candidates` (in image coordinates, already small and below the score
 * threshold) that a closer look confirms, the most confident candidates first.
 */
export async function confirmSmallFaces(detector: YuNetDetector, image: RgbImage, candidates: Face[], options: PostProcessOptions): Promise<Face[]> {
  const confirmed: Face[] = [];
  for (const candidate of [...candidates].sort((a, b) => b.score - a.score).slice(0, MAX_LOOKS)) {
    const face = await look(detector, image, candidate, options);
    if (face) confirmed.push(face);
  }
  return confirmed;
}
