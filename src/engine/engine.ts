// The engine: a detector and a recognizer loaded once, shared by every caller.
// It knows images and faces, nothing of HTTP or SQL.
import { alignToTemplate } from './align.js';
import { YuNetDetector, type DetectOptions, type Face } from './detect.js';
import { FaceEmbedder } from './embed.js';
import type { RgbImage } from './image.js';
import { getDetector, getRecognizer } from './models/registry.js';
import { createSession } from './models/session.js';
import { ensureModel, type ModelStoreOptions } from './models/store.js';

export interface EngineOptions extends ModelStoreOptions {
  detector: string;
  recognizer: string;
  /** Overrides of the detector's defaults (DETECT_SIZE, DETECT_SCORE, DETECT_NMS, DETECT_TOP_K). */
  detect?: Partial<DetectOptions>;
  /** Threads per inference (onnxruntime intra-op); 0 or unset: one per core. */
  intraOpThreads?: number;
}

export const DEFAULT_DETECT_SIZE = 640;

/** A detected face with its embedding. */
export interface FaceWithEmbedding extends Face {
  embedding: Float32Array;
}

export class FaceEngine {
  readonly detector: YuNetDetector;
  readonly embedder: FaceEmbedder;
  readonly detectDefaults: DetectOptions;

  private constructor(detector: YuNetDetector, embedder: FaceEmbedder, detectDefaults: DetectOptions) {
    this.detector = detector;
    this.embedder = embedder;
    this.detectDefaults = detectDefaults;
  }

  static async load(options: EngineOptions): Promise<FaceEngine> {
    const detectorManifest = getDetector(options.detector);
    const recognizerManifest = getRecognizer(options.recognizer);
    const sessionOptions = { intraOpThreads: options.intraOpThreads };
    const [detectorSession, recognizerSession] = await Promise.all([
      ensureModel(detectorManifest, options).then((path) => createSession(detectorManifest, path, sessionOptions)),
      ensureModel(recognizerManifest, options).then((path) => createSession(recognizerManifest, path, sessionOptions)),
    ]);
    const detectDefaults: DetectOptions = {
      detectSize: DEFAULT_DETECT_SIZE,
      ...detectorManifest.defaults,
      ...stripUndefined(options.detect ?? {}),
    };
    return new FaceEngine(
      new YuNetDetector(detectorSession, detectorManifest),
      new FaceEmbedder(recognizerSession, recognizerManifest),
      detectDefaults,
    );
  }

  /** The recognizer's name, dimension and default match threshold. */
  get recognizer(): { name: string; dimension: number; defaultThreshold: number } {
    const m = this.embedder.manifest;
    return { name: m.name, dimension: m.dimension, defaultThreshold: m.defaultThreshold };
  }

  /** Faces, most confident first. */
  detect(image: RgbImage, options: Partial<DetectOptions> = {}): Promise<Face[]> {
    return this.detector.detect(image, { ...this.detectDefaults, ...stripUndefined(options) });
  }

  /** Embeddings of the given faces of `image`, in the same order. */
  embedFaces(image: RgbImage, faces: readonly Face[]): Promise<Float32Array[]> {
    return this.embedder.embed(faces.map((f) => alignToTemplate(image, f.landmarks)));
  }

  /** Detect, then embed the first `maxFaces` faces (all when unset). */
  async analyze(image: RgbImage, options: Partial<DetectOptions> = {}, maxFaces = Infinity): Promise<FaceWithEmbedding[]> {
    const faces = (await this.detect(image, options)).slice(0, maxFaces);
    const embeddings = await this.embedFaces(image, faces);
    return faces.map((face, i) => ({ ...face, embedding: embeddings[i] }));
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
