// Synthetic faces for benchmarks: random unit vectors written straight into the feature cache,
// as if extracted from images that do not exist. The gallery loads them at start and confirms
// them against the cache instead of a visitor table.
import type { Database } from './db.js';
import { insertSynthetic } from './feature-cache.js';

const ROWS_PER_INSERT = 5_000;

export interface SynthOptions {
  model: string;
  dimension: number;
  count: number;
  onProgress?: (done: number) => void;
}

/** Uniform on the unit sphere: normalised standard normal coordinates (Box-Muller). */
export function randomUnitVector(dimension: number): Float32Array {
  const v = new Float32Array(dimension);
  let norm = 0;
  for (let i = 0; i < dimension; i += 2) {
    const u1 = 1 - Math.random(); // (0, 1]: log() stays finite
    const u2 = Math.random();
    const r = Math.sqrt(-2 * Math.log(u1));
    v[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < dimension) v[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  for (let i = 0; i < dimension; i++) v[i] /= norm;
  return v;
}

async function syntheticCount(db: Database, model: string): Promise<number> {
  const [row] = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM ${db.schema.features} WHERE source_table = 'synthetic' AND model = $1`,
    [model],
  );
  return Number(row.n);
}

/** Adds `count` synthetic faces for `model` (visitor ids synthetic-<n>, one face each); returns the model's synthetic total. */
export async function addSyntheticFaces(db: Database, options: SynthOptions): Promise<number> {
  const first = await syntheticCount(db, options.model);
  for (let done = 0; done < options.count; ) {
    const rows = Math.min(ROWS_PER_INSERT, options.count - done);
    const ids = Array.from({ length: rows }, (_, i) => `synthetic-${first + done + i}`);
    await insertSynthetic(db, options.model, ids, ids.map(() => randomUnitVector(options.dimension)));
    done += rows;
    options.onProgress?.(done);
  }
  return first + options.count;
}
