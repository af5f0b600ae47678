// The vectors of a VectorIndex's entries, kept beside it as the gallery keeps them in its feature
// cache: what a search asks for to score its candidates exactly (tests and benchmarks).
import type { VectorSource } from '../../src/gallery/vector-index.js';

/** A VectorSource over `vectors`: a key is present while it is in the map. */
export function vectorsIn(vectors: Map<number, Float32Array>): VectorSource {
  return async (keys) => new Map(keys.flatMap((key) => (vectors.has(key) ? [[key, vectors.get(key)!] as const] : [])));
}

/** The vectors of these entries, by key. */
export function byKey(entries: { key: number; vector: Float32Array }[]): Map<number, Float32Array> {
  return new Map(entries.map((e) => [e.key, e.vector]));
}

/** A VectorSource over `vectors`, each one's key its position: every key is present. */
export function vectorsAt(vectors: Float32Array[]): VectorSource {
  return async (keys) => new Map(keys.map((key) => [key, vectors[key]] as const));
}
