// The real service app in this process on a free port: real engine (YuNet + MobileFaceNet from the
// shared test models) and a gallery of visitors enrolled from real photos. The PostgreSQL gallery is
// exercised end to end by the browser tests; here the subject is the client.
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../../../src/config.js';
import { cosineSimilarity } from '../../../../src/engine/embed.js';
import type { ImagePage } from '../../../../src/gallery/images.js';
import type { Gallery, GalleryStatus, Match } from '../../../../src/gallery/types.js';
import { createLogger } from '../../../../src/server/logging.js';
import { createService } from '../../../../src/server/service.js';
import { MODELS_DIR, loadTestImage, testEngine } from '../../../../test/helpers/fixtures.js';

/** Visitors enrolled from photos: the best image per visitor wins, as in the real gallery. */
export class PhotoGallery implements Gallery {
  private readonly entries: { visitorId: string; embedding: Float32Array }[] = [];

  async enroll(visitorId: string, photo: string): Promise<void> {
    const engine = await testEngine();
    const [face] = await engine.analyze(await loadTestImage(photo), {}, 1);
    if (!face) throw new Error(`no face in ${photo}`);
    this.entries.push({ visitorId, embedding: face.embedding });
  }

  async search(queries: Float32Array[]): Promise<(Match | null)[]> {
    return queries.map((query) => {
      let best: Match | null = null;
      for (const { visitorId, embedding } of this.entries) {
        const similarity = cosineSimilarity(query, embedding);
        if (!best || similarity > best.similarity) best = { visitorId, similarity };
      }
      return best;
    });
  }

  status(): GalleryStatus {
    return {
      database: 'up',
      syncing: false,
      faces: this.entries.length,
      visitors: new Set(this.entries.map((e) => e.visitorId)).size,
      failed: 0,
      model: 'mobilefacenet',
      lastSyncAt: new Date().toISOString(),
      error: null,
      problems: [],
    };
  }

  async images(): Promise<ImagePage> {
    return { images: [], next: null };
  }

  async close(): Promise<void> {}
}

export interface RunningService {
  url: string;
  port: number;
  app: FastifyInstance;
  close(): Promise<void>;
}

export interface ServiceOptions {
  env?: Record<string, string>;
  gallery?: Gallery;
  /** Serve with the models still "loading" (every inference route answers 503 not_ready). */
  loading?: boolean;
  port?: number;
}

export async function startService(options: ServiceOptions = {}): Promise<RunningService> {
  const config = loadConfig({
    RECOGNIZER: 'mobilefacenet',
    MODELS_DIR,
    MODELS_OFFLINE: '1',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: String(options.port ?? 0),
    ...options.env,
  });
  const service = await createService(config, { logger: createLogger(config.logLevel) });
  service.useGallery(options.gallery ?? new PhotoGallery());
  if (!options.loading) service.useEngine(await testEngine());
  const { port } = new URL(await service.listen());
  return { url: `http://127.0.0.1:${port}`, port: Number(port), app: service.app, close: () => service.close() };
}
