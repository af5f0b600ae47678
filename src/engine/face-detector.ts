// Detection as the service runs it: YuNet with the configured defaults, faces of every size by
// default (pyramid.ts), one OpenCV pass when a size is pinned, quarter turns on request. Loadable
// on its own, for callers that only detect (the CLI's detect).
import { YuNetDetector, type DetectOptions, type Face } from './detect.js';
import type { RgbImage } from './image.js';
import { getDetector } from './models/registry.js';
import { createSession } from './models/session.js';
import { ensureModel, type ModelStoreOptions } from './models/store.js';
import { detectAllSizes } from './pyramid.js';
import { QUARTER_TURNS, rotateImage, unrotateFace, type Detection } from './rotate.js';

/** The longer side of the finest detection pass (DETECT_SIZE). */
export const DEFAULT_DETECT_SIZE = 640;

export interface DetectorLoadOptions extends ModelStoreOptions {
  detector: string;
  /** Overrides of the detector's defaults (DETECT_SIZE, DETECT_SCORE, DETECT_NMS, DETECT_TOP_K). */
  detect?: Partial<DetectOptions>;
  /** Threads per inference (onnxruntime intra-op); 0 or unset: one per core. */
  intraOpThreads?: number;
}

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

export class FaceDetector {
  readonly yunet: YuNetDetector;
  readonly defaults: DetectOptions;

  constructor(yunet: YuNetDetector, defaults: DetectOptions) {
    this.yunet = yunet;
    this.defaults = defaults;
  }

  static async load(options: DetectorLoadOptions): Promise<FaceDetector> {
    const manifest = getDetector(options.detector);
    const session = await createSession(manifest, await ensureModel(manifest, options), { intraOpThreads: options.intraOpThreads });
    const defaults: DetectOptions = { detectSize: DEFAULT_DETECT_SIZE, ...manifest.defaults, ...stripUndefined(options.detect ?? {}) };
    return new FaceDetector(new YuNetDetector(session, manifest), defaults);
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
    const options = { ...this.defaults, ...stripUndefined(request) };
    if (request.detectSize !== undefined) return this.yunet.detect(image, options);
    return detectAllSizes(this.yunet, image, options);
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
