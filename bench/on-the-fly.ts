// The integration guide's design, built only to be measured against ours: "the ML service extracts
// face features on-the-fly from stored images", no feature table. Each recognize request runs the
// guide's query on both visitor tables, then decodes, detects and embeds every stored image, one
// after another, and answers with the most similar visitor. Same engine, same models, same
// machine, same photos as the real service; served over HTTP like it, in this process.
import Fastify from 'fastify';
import pino from 'pino';
import { cosineSimilarity } from '../src/engine/embed.js';
import type { FaceEngine } from '../src/engine/engine.js';
import { DEFAULT_IMAGE_LIMITS, decodeImage, decodeImagePayload } from '../src/engine/image.js';
import { FaceRecogError } from '../src/errors.js';
import { Database } from '../src/gallery/db.js';
import { expectQueryVisitor, timeRequests } from './http.js';
import type { Latency } from './common.js';
import { visitorId, type StoredPhoto } from './inputs.js';

const DATABASE = 'guide_on_the_fly';
// The guide's tables, as the embedded PostgreSQL creates them for the service.
const TABLES = `
  CREATE TABLE visitors (visitor_id text PRIMARY KEY, base64image text);
  CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, base64image text);
`;
// The guide's two queries ("SELECT visitor_id, base64Image FROM visitors WHERE base64Image IS NOT NULL -- OR -- ... visitor_images").
const STORED_IMAGES = `
  SELECT visitor_id, base64image FROM visitors WHERE base64image IS NOT NULL
  UNION ALL
  SELECT visitor_id, base64image FROM visitor_images WHERE base64image IS NOT NULL
`;

async function mostConfidentEmbedding(engine: FaceEngine, base64: string): Promise<Float32Array | null> {
  const image = await decodeImage(decodeImagePayload(base64, DEFAULT_IMAGE_LIMITS.maxBytes));
  const [face] = await engine.analyze(image, {}, 1);
  return face?.embedding ?? null;
}

/** POST /api/v1/recognize as the guide describes it, over the visitor tables of `db`. */
async function startGuideService(engine: FaceEngine, db: Database): Promise<{ url: string; close: () => Promise<void> }> {
  const app = Fastify({ logger: false, bodyLimit: 32 * 1024 * 1024 });
  app.post<{ Body: { image: string; threshold?: number } }>('/api/v1/recognize', async (request) => {
    const threshold = request.body.threshold ?? engine.recognizer.defaultThreshold;
    const query = await mostConfidentEmbedding(engine, request.body.image);
    if (!query) return { visitor_id: null, confidence: null, matched: false };
    let best: { visitorId: string; similarity: number } | null = null;
    for (const row of await db.query<{ visitor_id: string; base64image: string }>(STORED_IMAGES)) {
      let stored: Float32Array | null;
      try {
        stored = await mostConfidentEmbedding(engine, row.base64image);
      } catch (error) {
        if (error instanceof FaceRecogError) continue; // an undecodable stored image is skipped
        throw error;
      }
      if (!stored) continue;
      const similarity = cosineSimilarity(query, stored);
      if (!best || similarity > best.similarity) best = { visitorId: row.visitor_id, similarity };
    }
    const matched = best !== null && best.similarity >= threshold;
    return { visitor_id: matched ? best!.visitorId : null, confidence: best?.similarity ?? null, matched };
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { url, close: () => app.close() };
}

export interface OnTheFlyPoint {
  visitors: number;
  latency: Latency;
}

export interface OnTheFlyPlan {
  /** Visitors stored, and requests timed at that size (0: not measured). */
  sizes: { visitors: number; requests: number }[];
}

/**
 * The guide's design at each size: a database of its own beside the service's (same PostgreSQL),
 * filled with the first `visitors` of `photos` (one image each, in `visitors`), then timed.
 */
export async function benchOnTheFly(
  engine: FaceEngine,
  serviceDb: Database,
  photos: StoredPhoto[],
  queryBody: string,
  plan: OnTheFlyPlan,
): Promise<OnTheFlyPoint[]> {
  await serviceDb.query(`DROP DATABASE IF EXISTS ${DATABASE}`);
  await serviceDb.query(`CREATE DATABASE ${DATABASE}`);
  const db = new Database(serviceDb.url.replace(/\/postgres$/, `/${DATABASE}`), pino({ level: 'warn' }));
  const guide = await startGuideService(engine, db);
  try {
    await db.query(TABLES);
    const points: OnTheFlyPoint[] = [];
    let stored = 0;
    for (const { visitors, requests } of plan.sizes) {
      const batch = photos.slice(stored, visitors);
      await db.query('INSERT INTO visitors (visitor_id, base64image) SELECT * FROM unnest($1::text[], $2::text[])', [
        batch.map((p, i) => visitorId(p, stored + i)),
        batch.map((p) => p.base64),
      ]);
      stored = visitors;
      const latency = await timeRequests(`${guide.url}/api/v1/recognize`, queryBody, requests, expectQueryVisitor, 0);
      console.log(`on-the-fly design, ${visitors} visitors: p50 ${latency.p50} ms over ${requests} requests`);
      points.push({ visitors, latency });
    }
    return points;
  } finally {
    await guide.close();
    await db.close();
  }
}
