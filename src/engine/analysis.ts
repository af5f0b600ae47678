// What the service asks of the engine, one encoded image at a time: decode, detect, embed, each
// stage timed. The same functions run in process (FaceEngine) and in an inference worker
// (worker-pool.ts), where the decoded pixels are made and dropped without ever leaving the thread.
import { deadlinePassed } from '../errors.js';
import type { Face } from './detect.js';
import type { FaceEngine } from './engine.js';
import { chooseEnrolmentFace, type EnrolmentChoice } from './enrol.js';
import type { DetectRequest } from './face-detector.js';
import { decodeImage, type ImageLimits } from './image.js';
import type { Rotation } from './rotate.js';

/** The recognizer's name, dimension and default match threshold. */
export interface RecognizerInfo {
  name: string;
  dimension: number;
  defaultThreshold: number;
}

export type AnalysisStage = 'decode' | 'detect' | 'embed';

/** Seconds spent in each stage that ran. */
export type StageSeconds = Partial<Record<AnalysisStage, number>>;

export interface AnalyzeOptions {
  request: DetectRequest;
  /** Faces embedded, the most confident first (0: detection only). */
  maxFaces: number;
  limits: ImageLimits;
  /** Date.now() after which the work stops between stages with `timeout`. */
  expiresAt?: number;
}

/** Every face found (most confident first), the turn it was found under, the first `maxFaces` embeddings. */
export interface ImageAnalysis {
  faces: Face[];
  rotation: Rotation;
  embeddings: Float32Array[];
  seconds: StageSeconds;
}

/** The face to enrol from a stored image (quarter turns always tried), with its embedding when there is one. */
export interface EnrolmentAnalysis {
  choice: EnrolmentChoice;
  embedding: Float32Array | null;
  seconds: StageSeconds;
}

/** What runs the analyses: the engine in this thread, or a pool of workers each holding one. */
export interface InferenceEngine {
  readonly detectorName: string;
  readonly recognizer: RecognizerInfo;
  /**
   * Faces and embeddings of one encoded image (JPEG, PNG, WebP). `bytes` may be moved to another
   * thread: the caller must not use them afterwards.
   */
  analyzeImage(bytes: Uint8Array, options: AnalyzeOptions): Promise<ImageAnalysis>;
  /** The enrolment of one stored image; `bytes` may be moved as for analyzeImage. */
  enrolImage(bytes: Uint8Array, limits: ImageLimits): Promise<EnrolmentAnalysis>;
}

class Stopwatch {
  readonly seconds: StageSeconds = {};

  constructor(private readonly expiresAt = Infinity) {}

  async time<T>(stage: AnalysisStage, work: () => Promise<T>): Promise<T> {
    if (Date.now() >= this.expiresAt) throw deadlinePassed();
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.seconds[stage] = (performance.now() - started) / 1000;
    }
  }
}

export async function analyzeImage(engine: FaceEngine, bytes: Uint8Array, options: AnalyzeOptions): Promise<ImageAnalysis> {
  const clock = new Stopwatch(options.expiresAt);
  const image = await clock.time('decode', () => decodeImage(bytes, options.limits));
  const { faces, rotation } = await clock.time('detect', () => engine.detectWithRotation(image, options.request));
  const embedded = faces.slice(0, options.maxFaces);
  const embeddings = embedded.length > 0 ? await clock.time('embed', () => engine.embedFaces(image, embedded)) : [];
  return { faces, rotation, embeddings, seconds: clock.seconds };
}

/** Stored photos may be sideways (EXIF orientation lost on the way to the database): the turns are always tried. */
export async function enrolImage(engine: FaceEngine, bytes: Uint8Array, limits: ImageLimits): Promise<EnrolmentAnalysis> {
  const clock = new Stopwatch();
  const image = await clock.time('decode', () => decodeImage(bytes, limits));
  const choice = chooseEnrolmentFace(await clock.time('detect', () => engine.detectWithRotation(image, { autoRotate: true })));
  if (!choice.ok) return { choice, embedding: null, seconds: clock.seconds };
  const [embedding] = await clock.time('embed', () => engine.embedFaces(image, [choice.face]));
  return { choice, embedding, seconds: clock.seconds };
}
