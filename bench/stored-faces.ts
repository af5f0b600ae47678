// A gallery of any size without extracting a million photos: rows in the real visitor_images
// table, each with its feature-cache row already written (a random unit vector, as if extracted),
// in one transaction per chunk. The service finds them as it finds any stored image (its listing
// matches every row version to a cached row, so nothing is extracted), loads them, and confirms
// matches against the real rows. Nothing in the service knows these rows are a benchmark's.
import { createHash } from 'node:crypto';
import type { Database } from '../src/gallery/db.js';
import { FeatureCache, type NewFeature } from '../src/gallery/feature-cache.js';

/** Rows per INSERT (and per cache write). */
const ROWS_PER_CHUNK = 5_000;
/** Visitor ids of the stored faces: `<prefix><n>`. */
export const STORED_FACE_PREFIX = 'stored-face-';

export interface StoredFaces {
  model: string;
  dimension: number;
  /** How many to add, numbered from `first`. */
  count: number;
  first: number;
  onProgress?: (done: number) => void;
}

/** Uniform on the unit sphere: normalised standard normal coordinates (Box-Muller). */
export function randomUnitVector(dimension: number): Float32Array {
  const v = new Float32Array(dimension);
  for (let i = 0; i < dimension; i += 2) {
    const u1 = 1 - Math.random(); // (0, 1]: log() stays finite
    const u2 = Math.random();
    const r = Math.sqrt(-2 * Math.log(u1));
    v[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < dimension) v[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  const norm = Math.hypot(...v);
  for (let i = 0; i < dimension; i++) v[i] /= norm;
  return v;
}

/**
 * Adds `count` rows to visitor_images(visitor_id, base64image) with their cached faces. The
 * stored value is a short text, not an image: it is never read, since its row version is cached.
 */
export async function storeFaces(db: Database, options: StoredFaces): Promise<void> {
  const cache = new FeatureCache(db, options.model);
  for (let done = 0; done < options.count; ) {
    const rows = Math.min(ROWS_PER_CHUNK, options.count - done);
    const ids = Array.from({ length: rows }, (_, i) => `${STORED_FACE_PREFIX}${options.first + done + i}`);
    await db.transaction(async (tx) => {
      const inserted = await tx.query<{ ctid: string; xmin: string; visitor_id: string; image: string }>(
        `INSERT INTO visitor_images (visitor_id, base64image) SELECT v, 'face of ' || v FROM unnest($1::text[]) AS u(v)
         RETURNING ctid::text AS ctid, xmin::text AS xmin, visitor_id, base64image AS image`,
        [ids],
      );
      const features: NewFeature[] = inserted.map((r) => ({
        row: { table: 'visitor_images', ctid: r.ctid, xmin: Number(r.xmin), visitorId: r.visitor_id },
        digest: createHash('sha256').update(r.image, 'utf8').digest(),
        outcome: { status: 'ok', embedding: randomUnitVector(options.dimension), box: [0, 0, 1, 1], score: 1, rotation: 0, reason: null },
      }));
      await cache.save(tx, features);
    });
    done += rows;
    options.onProgress?.(done);
  }
}
