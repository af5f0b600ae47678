// From a client's image string to faces and embeddings, inside the scheduler: the encoded bytes
// are made when the task starts and handed to the engine (moved to an inference worker, which
// decodes them), so the pixels exist only while the task holds its slot and memory follows the
// number of running tasks, not the number of waiting requests.
import type { Config } from '../config.js';
import type { AnalysisStage, EnrolmentAnalysis, InferenceEngine, StageSeconds } from '../engine/analysis.js';
import type { Face } from '../engine/detect.js';
import type { DetectRequest, FaceWithEmbedding } from '../engine/engine.js';
import { decodeImagePayload, type ImageLimits } from '../engine/image.js';
import { FaceRecogError } from '../errors.js';
import type { ExtractResult, Extractor } from '../gallery/types.js';
import type { ServiceMetrics } from './metrics.js';
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
  readonly engine: InferenceEngine;
  private readonly scheduler: InferenceScheduler;
  private readonly config: Config;
  private readonly metrics: ServiceMetrics;

  constructor(engine: InferenceEngine, scheduler: InferenceScheduler, config: Config, metrics: ServiceMetrics) {
    this.engine = engine;
    this.scheduler = scheduler;
    this.config = config;
    this.metrics = metrics;
  }

  /** Faces in the image, most confident first. */
  async detect(payload: string, params: DetectParams, deadline: Deadline): Promise<Face[]> {
    return (await this.scheduler.run(() => this.analyzeNow(payload, params, 0, deadline), { deadline })).faces;
  }

  /** Every face, with embeddings for the `maxFaces` most confident. */
  analyze(payload: string, params: DetectParams, maxFaces: number, deadline: Deadline): Promise<Analysis> {
    return this.scheduler.run(() => this.analyzeNow(payload, params, maxFaces, deadline), { deadline });
  }

  /** The most confident face of each image with its embedding, or null where there is none; both images at once. */
  analyzePair(payloads: [string, string], deadline: Deadline): Promise<[FaceWithEmbedding | null, FaceWithEmbedding | null]> {
    return this.scheduler.run(
      async () => {
        const [first, second] = await Promise.all(payloads.map((payload) => this.analyzeNow(payload, {}, 1, deadline)));
        return [mostConfident(first), mostConfident(second)];
      },
      { deadline },
    );
  }

  /** Times a gallery search under the same metric as the inference stages. */
  async timeSearch<T>(search: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await search();
    } finally {
      this.metrics.observeInference('gallery', 'search', (performance.now() - started) / 1000);
    }
  }

  /** For the gallery: the face to enrol from a stored image, on the background lane. */
  readonly extractor: Extractor = (storedImage) =>
    this.scheduler.run(() => this.extractStored(storedImage), { lane: 'background' });

  private async extractStored(storedImage: string | Buffer): Promise<ExtractResult> {
    let enrolment: EnrolmentAnalysis;
    try {
      // The gallery keeps its Buffer (a bytea value): the engine is given a copy it may move.
      const bytes = typeof storedImage === 'string' ? this.bytesOf(storedImage) : new Uint8Array(storedImage);
      enrolment = await this.engine.enrolImage(bytes, this.imageLimits());
    } catch (error) {
      if (error instanceof FaceRecogError && UNUSABLE_IMAGE.has(error.code)) return { ok: false, reason: 'invalid_image', message: error.message };
      throw error;
    }
    this.observe(enrolment.seconds);
    const { choice, embedding } = enrolment;
    if (!choice.ok) return choice;
    const { face, rotation, severalFaces } = choice;
    return { ok: true, face: { embedding: embedding!, box: face.box, score: face.score, rotation }, reason: severalFaces ? 'several_faces' : null };
  }

  private async analyzeNow(payload: string, params: DetectParams, maxFaces: number, deadline: Deadline): Promise<Analysis> {
    deadline.check();
    const analysis = await this.engine.analyzeImage(this.bytesOf(payload), {
      request: params,
      maxFaces,
      limits: this.imageLimits(),
      expiresAt: deadline.expiresAt,
    });
    this.observe(analysis.seconds);
    deadline.check();
    return { faces: analysis.faces, embeddings: analysis.embeddings };
  }

  /** A client's base64 or data URL as the encoded bytes. */
  private bytesOf(payload: string): Uint8Array {
    return decodeImagePayload(payload, this.config.limits.maxImageBytes);
  }

  private imageLimits(): ImageLimits {
    return { maxBytes: this.config.limits.maxImageBytes, maxPixels: this.config.limits.maxImagePixels };
  }

  private observe(seconds: StageSeconds): void {
    const model: Record<AnalysisStage, string> = { decode: 'image', detect: this.engine.detectorName, embed: this.engine.recognizer.name };
    for (const [stage, s] of Object.entries(seconds) as [AnalysisStage, number][]) this.metrics.observeInference(model[stage], stage, s);
  }
}

function mostConfident(analysis: Analysis): FaceWithEmbedding | null {
  const face = analysis.faces[0];
  return face && analysis.embeddings[0] ? { ...face, embedding: analysis.embeddings[0] } : null;
}
