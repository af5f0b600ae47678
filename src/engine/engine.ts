// The engine: a detector and a recognizer loaded once, shared by every caller.
// It knows images and faces, nothing of HTTP or SQL.
import { alignToTemplate } from './align.js';
import { YuNetDetector, type DetectOptions, type Face } from './detect.js';
import { FaceEmbedder } from './embed.js';
import type { RgbImage } from './image.js';
import { getDetector, getRecognizer } from './models/registry.js';
import { createSession } from './models/session.js';
import { ensureModel, type ModelStoreOptions } from './models/store.js';
import { detectAllSizes } from './pyramid.js';
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
  /** When no upright face is confidently found, also search the image turned by 90, 180 and 270 degrees. */
  autoRotate?: boolean;
}

/**
 * An upright face this confident ends the search for a better orientation. Over testdata faces/,
 * the best face of each upright photo scores 0.921 to 0.959; turned copies of those photos show a
 * face (the upside-down one, in 6 of 77 photos turned 180 degrees, never at 90 or 270) at 0.906 to
 * 0.913 only. Below this score the turns are tried too, and the most confident orientation wins.
 */
const CONFIDENTLY_UPRIGHT = 0.92;

function topScore({ faces }: Detection): number {
  return faces.length > 0 ? Math.max(...faces.map((f) => f.score)) : 0;
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
   * Faces and the turn they were found under: upright, or (with `autoRotate`, when no upright face
   * is confidently one) the orientation, upright included, whose best face is the most confident.
   * Coordinates always refer to `image` as given.
   */
  async detectWithRotation(image: RgbImage, request: DetectRequest = {}): Promise<Detection> {
    let best: Detection = { faces: await this.detectUpright(image, request), rotation: 0 };
    if (!request.autoRotate || topScore(best) >= CONFIDENTLY_UPRIGHT) return best;
    for (const rotation of QUARTER_TURNS) {
      const faces = await this.detectUpright(await rotateImage(image, rotation), request);
      const turned = { faces: faces.map((f) => unrotateFace(f, rotation, image.width, image.height)), rotation };
      if (topScore(turned) > topScore(best)) best = turned;
    }
    return best;
  }

  private async detectUpright(image: RgbImage, request: DetectRequest): Promise<Face[]> {
    const options = { ...this.detectDefaults, ...stripUndefined(request) };
    if (request.detectSize !== undefined) return this.detector.detect(image, options);
    return detectAllSizes(this.detector, image, options);
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
