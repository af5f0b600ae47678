// The engine: a detector and a recognizer loaded once, shared by every caller.
// It knows images and faces, nothing of HTTP or SQL.
import { alignToTemplate } from './align.js';
import { YuNetDetector, type DetectOptions, type Face } from './detect.js';
import { FaceEmbedder } from './embed.js';
import type { RgbImage } from './image.js';
import { getDetector, getRecognizer } from './models/registry.js';
import { createSession } from './models/session.js';
import { ensureModel, type ModelStoreOptions } from './models/store.js';
import { mergePasses, passSizes } from './pyramid.js';
import { QUARTER_TURNS, rotateImage, unrotateFace, type Detection } from './rotate.js';

export interface EngineOptions extends ModelStoreOptions {
  detector: string;
  recognizer: string;
  /** Overrides of the detector's defaults (DETECT_SIZE, DETECT_SCORE, DETECT_NMS, DETECT_TOP_K). */
  detect?: Partial<DetectOptions>;
  /** Threads per inference (onnxruntime intra-op); 0 or unset: one per core. */
  intraOpThreads?: number;
}

/** The longer side of the finest detection pass (DETECT_SIZE). */
export const DEFAULT_DETECT_SIZE = 640;

/** What a caller may ask of detection; unset fields take the engine's defaults. */
export interface DetectRequest extends Partial<DetectOptions> {
  /**
   * Set: exactly one pass with the longer side scaled to it, as OpenCV's FaceDetectorYN with that
   * input size (parity mode). Unset: faces of every size, from passes at DETECT_SIZE and below.
   */
  detectSize?: number;
  /** When no upright face is found, also search the image turned by 90, 180 and 270 degrees. */
  autoRotate?: boolean;
}

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

  /** Faces, most confident first, in the coordinates of `image`. */
  async detect(image: RgbImage, request: DetectRequest = {}): Promise<Face[]> {
    return (await this.detectWithRotation(image, request)).faces;
  }

  /**
   * Faces and the turn they were found under: upright, or (with `autoRotate`, when there is no
   * upright face) the quarter turn whose best face is the most confident. Coordinates always refer
   * to `image` as given.
   */
  async detectWithRotation(image: RgbImage, request: DetectRequest = {}): Promise<Detection> {
    const upright = await this.detectUpright(image, request);
    if (upright.length > 0 || !request.autoRotate) return { faces: upright, rotation: 0 };
    let best: Detection = { faces: upright, rotation: 0 };
    for (const rotation of QUARTER_TURNS) {
      const faces = await this.detectUpright(await rotateImage(image, rotation), request);
      if (faces.length > 0 && (best.faces.length === 0 || faces[0].score > best.faces[0].score)) {
        best = { faces: faces.map((f) => unrotateFace(f, rotation, image.width, image.height)), rotation };
      }
    }
    return best;
  }

  private async detectUpright(image: RgbImage, request: DetectRequest): Promise<Face[]> {
    const options = { ...this.detectDefaults, ...stripUndefined(request) };
    if (request.detectSize !== undefined) return this.detector.detect(image, options);
    const passes: Face[][] = [];
    for (const detectSize of passSizes(image.width, image.height, options.detectSize)) {
      passes.push(await this.detector.detect(image, { ...options, detectSize }));
    }
    return mergePasses(passes, options.nmsThreshold, options.topK);
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
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
