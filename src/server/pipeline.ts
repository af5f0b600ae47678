// From a client's image string to faces and embeddings, inside the scheduler: the decoded pixels
// exist only while the task holds its slot, so memory follows the number of running tasks, not
// the number of waiting requests.
import type { Config } from '../config.js';
import type { Face } from '../engine/detect.js';
import type { DetectRequest, FaceEngine, FaceWithEmbedding } from '../engine/engine.js';
import { chooseEnrolmentFace } from '../engine/enrol.js';
import { decodeImage, decodeImagePayload, type RgbImage } from '../engine/image.js';
import type { Detection } from '../engine/rotate.js';
import { FaceRecogError } from '../errors.js';
import type { ExtractResult, Extractor } from '../gallery/types.js';
import type { InferenceStage, ServiceMetrics } from './metrics.js';
import type { Deadline, InferenceScheduler } from './scheduler.js';

/** Per-request detection settings; unset ones take the configured defaults. */
export type DetectParams = Pick<DetectRequest, 'detectSize' | 'scoreThreshold' | 'nmsThreshold' | 'autoRotate'>;

/** Every detected face (most confident first) and the embeddings of the first `maxFaces`. */
export interface Analysis {
  faces: Face[];
  embeddings: Float32Array[];
}

// Stored images that are simply unusable; anything else (a crash, shutdown) is retried later.
const UNUSABLE_IMAGE = new Set(['invalid_image', 'image_too_large']);

export class InferencePipeline {
  readonly engine: FaceEngine;
  private readonly scheduler: InferenceScheduler;
  private readonly config: Config;
  private readonly metrics: ServiceMetrics;

  constructor(engine: FaceEngine, scheduler: InferenceScheduler, config: Config, metrics: ServiceMetrics) {
    this.engine = engine;
    this.scheduler = scheduler;
    this.config = config;
    this.metrics = metrics;
  }

  /** Faces in the image, most confident first. */
  detect(payload: string, params: DetectParams, deadline: Deadline): Promise<Face[]> {
    return this.scheduler.run(
      async () => {
        const image = await this.decode(payload, deadline);
        return (await this.detectFaces(image, params, deadline)).faces;
      },
      { deadline },
    );
  }

  /** Every face, with embeddings for the `maxFaces` most confident. */
  analyze(payload: string, params: DetectParams, maxFaces: number, deadline: Deadline): Promise<Analysis> {
    return this.scheduler.run(() => this.analyzeNow(payload, params, maxFaces, deadline), { deadline });
  }

  /** The most confident face of each image with its embedding, or null where there is none. */
  analyzePair(payloads: [string, string], deadline: Deadline): Promise<[FaceWithEmbedding | null, FaceWithEmbedding | null]> {
    return this.scheduler.run(
      async () => {
        const first = await this.analyzeNow(payloads[0], {}, 1, deadline);
        const second = await this.analyzeNow(payloads[1], {}, 1, deadline);
        return [mostConfident(first), mostConfident(second)];
      },
      { deadline },
    );
  }

  /** Times a gallery search under the same metric as the inference stages. */
  timeSearch<T>(search: () => Promise<T>): Promise<T> {
    return this.timed('gallery', 'search', search);
  }

  /** For the gallery: the face to enrol from a stored image, on the background lane. */
  readonly extractor: Extractor = (storedImage) =>
    this.scheduler.run(() => this.extractStored(storedImage), { lane: 'background' });

  /** Stored photos may be sideways (EXIF orientation lost on the way to the database): always try the turns. */
  private async extractStored(storedImage: string | Buffer): Promise<ExtractResult> {
    let image: RgbImage;
    try {
      image = await this.decode(storedImage);
    } catch (error) {
      if (error instanceof FaceRecogError && UNUSABLE_IMAGE.has(error.code)) return { ok: false, reason: 'invalid_image', message: error.message };
      throw error;
    }
    const choice = chooseEnrolmentFace(await this.detectFaces(image, { autoRotate: true }));
    if (!choice.ok) return choice;
    const { face, rotation, severalFaces } = choice;
    const [embedding] = await this.embed(image, [face]);
    return { ok: true, face: { embedding, box: face.box, score: face.score, rotation }, reason: severalFaces ? 'several_faces' : null };
  }

  private async analyzeNow(payload: string, params: DetectParams, maxFaces: number, deadline: Deadline): Promise<Analysis> {
    const image = await this.decode(payload, deadline);
    const { faces } = await this.detectFaces(image, params, deadline);
    const embeddings = await this.embed(image, faces.slice(0, maxFaces));
    deadline.check();
    return { faces, embeddings };
  }

  /** A client's base64 or data URL, or the encoded bytes themselves (a bytea column). */
  private decode(payload: string | Buffer, deadline?: Deadline): Promise<RgbImage> {
    deadline?.check();
    const { maxImageBytes, maxImagePixels } = this.config.limits;
    return this.timed('image', 'decode', () =>
      decodeImage(typeof payload === 'string' ? decodeImagePayload(payload, maxImageBytes) : payload, { maxBytes: maxImageBytes, maxPixels: maxImagePixels }),
    );
  }

  private detectFaces(image: RgbImage, params: DetectParams, deadline?: Deadline): Promise<Detection> {
    deadline?.check();
    return this.timed(this.engine.detector.manifest.name, 'detect', () => this.engine.detectWithRotation(image, params));
  }

  private embed(image: RgbImage, faces: Face[]): Promise<Float32Array[]> {
    if (faces.length === 0) return Promise.resolve([]);
    return this.timed(this.engine.recognizer.name, 'embed', () => this.engine.embedFaces(image, faces));
  }

  private async timed<T>(model: string, stage: InferenceStage, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.metrics.observeInference(model, stage, (performance.now() - started) / 1000);
    }
  }
}

function mostConfident(analysis: Analysis): FaceWithEmbedding | null {
  const face = analysis.faces[0];
  return face && analysis.embeddings[0] ? { ...face, embedding: analysis.embeddings[0] } : null;
}
