// The engine: a detector and a recognizer loaded once, shared by every caller.
// It knows images and faces, nothing of HTTP or SQL.
import { alignToTemplate } from './align.js';
import { analyzeImage, enrolImage, type AnalyzeOptions, type EnrolmentAnalysis, type ImageAnalysis, type InferenceEngine, type RecognizerInfo } from './analysis.js';
import type { DetectOptions, Face, YuNetDetector } from './detect.js';
import { FaceEmbedder } from './embed.js';
import { FaceDetector, type DetectorLoadOptions, type DetectRequest } from './face-detector.js';
import type { ImageLimits, RgbImage } from './image.js';
import { getRecognizer } from './models/registry.js';
import { createSession } from './models/session.js';
import { ensureModel } from './models/store.js';
import type { Detection } from './rotate.js';

export { DEFAULT_DETECT_SIZE, type DetectRequest } from './face-detector.js';

export interface EngineOptions extends DetectorLoadOptions {
  recognizer: string;
}

/** A detected face with its embedding. */
export interface FaceWithEmbedding extends Face {
  embedding: Float32Array;
}

/** The models in this thread (the CLI, benchmarks, tests; each inference worker holds one). */
export class FaceEngine implements InferenceEngine {
  readonly detection: FaceDetector;
  readonly embedder: FaceEmbedder;

  private constructor(detection: FaceDetector, embedder: FaceEmbedder) {
    this.detection = detection;
    this.embedder = embedder;
  }

  static async load(options: EngineOptions): Promise<FaceEngine> {
    const recognizerManifest = getRecognizer(options.recognizer);
    const [detection, recognizerSession] = await Promise.all([
      FaceDetector.load(options),
      ensureModel(recognizerManifest, options).then((path) => createSession(recognizerManifest, path, { intraOpThreads: options.intraOpThreads })),
    ]);
    return new FaceEngine(detection, new FaceEmbedder(recognizerSession, recognizerManifest));
  }

  /** YuNet itself: one pass, its blob and its raw outputs (parity tests, benchmarks). */
  get detector(): YuNetDetector {
    return this.detection.yunet;
  }

  get detectDefaults(): DetectOptions {
    return this.detection.defaults;
  }

  get detectorName(): string {
    return this.detection.yunet.manifest.name;
  }

  /** The recognizer's name, dimension and default match threshold. */
  get recognizer(): RecognizerInfo {
    const m = this.embedder.manifest;
    return { name: m.name, dimension: m.dimension, defaultThreshold: m.defaultThreshold };
  }

  /** Faces, most confident first, in the coordinates of `image`. */
  detect(image: RgbImage, request: DetectRequest = {}): Promise<Face[]> {
    return this.detection.detect(image, request);
  }

  /** Faces and the turn they were found under (see FaceDetector.detectWithRotation). */
  detectWithRotation(image: RgbImage, request: DetectRequest = {}): Promise<Detection> {
    return this.detection.detectWithRotation(image, request);
  }

  /** Embeddings of the given faces of `image`, in the same order. */
  embedFaces(image: RgbImage, faces: readonly Face[]): Promise<Float32Array[]> {
    return this.embedder.embed(faces.map((f) => alignToTemplate(image, f.landmarks)));
  }

  /** Detect, then embed the first `maxFaces` faces (all when unset). */
  async analyze(image: RgbImage, request: DetectRequest = {}, maxFaces = Infinity): Promise<FaceWithEmbedding[]> {
    const faces = (await this.detect(image, request)).slice(0, maxFaces);
    const embeddings = await this.embedFaces(image, faces);
    return faces.map((face, i) => ({ ...face, embedding: embeddings[i] }));
  }

  analyzeImage(bytes: Uint8Array, options: AnalyzeOptions): Promise<ImageAnalysis> {
    return analyzeImage(this, bytes, options);
  }

  enrolImage(bytes: Uint8Array, limits: ImageLimits): Promise<EnrolmentAnalysis> {
    return enrolImage(this, bytes, limits);
  }
}
