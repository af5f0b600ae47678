// YuNet face detection with OpenCV FaceDetectorYN's exact pre- and post-processing
// (objdetect/src/face_detect.cpp): BGR 0..255 NCHW padded right/bottom to a multiple of 32,
// score = sqrt(clamp(cls) * clamp(obj)), per-anchor box and landmark decode, then dnn::NMSBoxes.
import ort from 'onnxruntime-node';
import { writeBlob } from './blob.js';
import { resizeImage, type RgbImage } from './image.js';
import type { DetectorManifest } from './models/registry.js';

export type Point = [number, number];

/** Landmark order: right eye, left eye, nose tip, right mouth corner, left mouth corner (subject's right = image left). */
export type Landmarks = [Point, Point, Point, Point, Point];

export interface Face {
  /** [x, y, width, height] in pixels of the image as displayed. */
  box: [number, number, number, number];
  landmarks: Landmarks;
  /** Detector confidence, 0..1. */
  score: number;
}

export interface DetectOptions {
  /** The image is scaled so that its longer side has this many pixels before detection. */
  detectSize: number;
  scoreThreshold: number;
  nmsThreshold: number;
  topK: number;
}

export type PostProcessOptions = Pick<DetectOptions, 'scoreThreshold' | 'nmsThreshold' | 'topK'>;

/** YuNet's twelve outputs by name (cls_8, obj_8, bbox_8, kps_8, ... for each stride). */
export type YuNetOutputs = Record<string, Float32Array>;

const LANDMARKS = 5;
const f32 = Math.fround;

export function paddedSize(size: number, divisor: number): number {
  return Math.ceil(size / divisor) * divisor;
}

/** The size an image is scaled to so that its longer side is `detectSize`. */
export function detectionInputSize(width: number, height: number, detectSize: number): { width: number; height: number } {
  const scale = detectSize / Math.max(width, height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** Every anchor whose score reaches `scoreThreshold`, in input-blob pixels, in OpenCV's order. */
export function decodeYuNet(
  outputs: YuNetOutputs,
  padWidth: number,
  padHeight: number,
  strides: readonly number[],
  scoreThreshold: number,
): Face[] {
  const faces: Face[] = [];
  for (const stride of strides) {
    const cols = padWidth / stride;
    const rows = padHeight / stride;
    const cls = outputs[`cls_${stride}`];
    const obj = outputs[`obj_${stride}`];
    const bbox = outputs[`bbox_${stride}`];
    const kps = outputs[`kps_${stride}`];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const idx = r * cols + c;
        const clsScore = Math.min(Math.max(cls[idx], 0), 1);
        const objScore = Math.min(Math.max(obj[idx], 0), 1);
        const score = f32(Math.sqrt(f32(clsScore * objScore)));
        if (score < scoreThreshold) continue;
        // float32 arithmetic as in OpenCV, so that NMS truncates the same integers.
        const cx = f32(f32(c + bbox[idx * 4]) * stride);
        const cy = f32(f32(r + bbox[idx * 4 + 1]) * stride);
        const w = f32(f32(Math.exp(bbox[idx * 4 + 2])) * stride);
        const h = f32(f32(Math.exp(bbox[idx * 4 + 3])) * stride);
        const landmarks = [] as unknown as Landmarks;
        for (let n = 0; n < LANDMARKS; n++) {
          landmarks.push([f32(f32(kps[idx * 10 + 2 * n] + c) * stride), f32(f32(kps[idx * 10 + 2 * n + 1] + r) * stride)]);
        }
        faces.push({ box: [f32(cx - w / 2), f32(cy - h / 2), w, h], landmarks, score });
      }
    }
  }
  return faces;
}

/** Intersection over union of two [x, y, w, h] boxes. */
export function boxIoU(a: Face['box'], b: Face['box']): number {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  const intersection = w > 0 && h > 0 ? w * h : 0;
  const union = a[2] * a[3] + b[2] * b[3] - intersection;
  return union > 0 ? intersection / union : 1;
}

type IntRect = [number, number, number, number];

/** OpenCV's rectOverlap on Rect2i: intersection over union of integer rectangles. */
function intRectIoU(a: IntRect, b: IntRect): number {
  const areaA = a[2] * a[3];
  const areaB = b[2] * b[3];
  if (areaA + areaB <= 0) return 1;
  const x1 = Math.max(a[0], b[0]);
  const y1 = Math.max(a[1], b[1]);
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - x1;
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - y1;
  const intersection = w > 0 && h > 0 ? w * h : 0;
  return intersection / (areaA + areaB - intersection);
}

/**
 * Greedy non-maximum suppression as dnn::NMSBoxes does it for FaceDetectorYN: boxes truncated to
 * integers, candidates above `scoreThreshold` sorted by score (stable), the first `topK` kept,
 * and a box dropped when its IoU with a kept one exceeds `nmsThreshold`. Returns kept indexes.
 */
export function nmsBoxes(faces: Face[], scoreThreshold: number, nmsThreshold: number, topK: number): number[] {
  const rects = faces.map((f) => f.box.map(Math.trunc) as IntRect);
  let order = faces.map((_, i) => i).filter((i) => faces[i].score > scoreThreshold);
  order.sort((i, j) => faces[j].score - faces[i].score);
  if (topK > 0 && topK < order.length) order = order.slice(0, topK);
  const kept: number[] = [];
  for (const i of order) {
    if (kept.every((k) => intRectIoU(rects[i], rects[k]) <= nmsThreshold)) kept.push(i);
  }
  return kept;
}

/** FaceDetectorYN::postProcess: decode, then NMS when there is more than one candidate. */
export function postProcessYuNet(
  outputs: YuNetOutputs,
  padWidth: number,
  padHeight: number,
  strides: readonly number[],
  options: PostProcessOptions,
): Face[] {
  const candidates = decodeYuNet(outputs, padWidth, padHeight, strides, options.scoreThreshold);
  if (candidates.length <= 1) return candidates;
  return nmsBoxes(candidates, options.scoreThreshold, options.nmsThreshold, options.topK).map((i) => candidates[i]);
}

/** `face` with its coordinates multiplied by sx horizontally and sy vertically. */
export function scaleFace(face: Face, sx: number, sy: number): Face {
  const [x, y, w, h] = face.box;
  return {
    box: [x * sx, y * sy, w * sx, h * sy],
    landmarks: face.landmarks.map(([px, py]) => [px * sx, py * sy]) as Landmarks,
    score: face.score,
  };
}

// Input buffers kept for reuse: a 640x480 blob is 3.7 MB, and allocating a fresh one per call
// costs a zero-fill and page faults on top of the copy. Enough for the passes of two calls at once.
const SPARE_BLOBS = 4;

export class YuNetDetector {
  readonly manifest: DetectorManifest;
  private readonly session: ort.InferenceSession;
  private readonly spareBlobs: Float32Array[] = [];

  constructor(session: ort.InferenceSession, manifest: DetectorManifest) {
    this.session = session;
    this.manifest = manifest;
  }

  /** The network input for an image already at detection size: BGR 0..255, zero-padded. */
  makeBlob(image: RgbImage, buffer?: Float32Array): ort.Tensor {
    const padW = paddedSize(image.width, this.manifest.divisor);
    const padH = paddedSize(image.height, this.manifest.divisor);
    const data = buffer?.length === 3 * padW * padH ? buffer : new Float32Array(3 * padW * padH);
    writeBlob(data, 0, image, padW, padH, this.manifest.input);
    return new ort.Tensor('float32', data, [1, 3, padH, padW]);
  }

  /** One forward pass; outputs keyed by name. */
  async forward(blob: ort.Tensor): Promise<YuNetOutputs> {
    const results = await this.session.run({ [this.session.inputNames[0]]: blob });
    const outputs: YuNetOutputs = {};
    for (const [name, tensor] of Object.entries(results)) outputs[name] = tensor.data as Float32Array;
    return outputs;
  }

  /** Faces in `image`, most confident first, in the image's own pixel coordinates. */
  async detect(image: RgbImage, options: DetectOptions): Promise<Face[]> {
    const size = detectionInputSize(image.width, image.height, options.detectSize);
    const faces = await this.detectInput(await resizeImage(image, size.width, size.height), options);
    const sx = image.width / size.width;
    const sy = image.height / size.height;
    return faces.map((f) => scaleFace(f, sx, sy)).sort((a, b) => b.score - a.score);
  }

  /** Faces in an image already at detection size, in its pixels, in OpenCV's order. */
  async detectInput(input: RgbImage, options: PostProcessOptions): Promise<Face[]> {
    return (await this.run(input)).faces(options);
  }

  /** One forward pass on an image already at detection size; its faces at any post-processing options. */
  async run(input: RgbImage): Promise<{ faces: (options: PostProcessOptions) => Face[] }> {
    const blob = this.makeBlob(input, this.takeSpareBlob(input));
    const [, , padH, padW] = blob.dims;
    let outputs: YuNetOutputs;
    try {
      outputs = await this.forward(blob);
    } finally {
      this.spareBlobs.push(blob.data as Float32Array);
      if (this.spareBlobs.length > SPARE_BLOBS) this.spareBlobs.shift();
    }
    return { faces: (options) => postProcessYuNet(outputs, padW, padH, this.manifest.strides, options) };
  }

  /** A kept buffer of the size `input`'s blob needs, if there is one. */
  private takeSpareBlob(input: RgbImage): Float32Array | undefined {
    const length = 3 * paddedSize(input.width, this.manifest.divisor) * paddedSize(input.height, this.manifest.divisor);
    const i = this.spareBlobs.findIndex((b) => b.length === length);
    return i < 0 ? undefined : this.spareBlobs.splice(i, 1)[0];
  }
}
