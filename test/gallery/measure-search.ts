// Not a test: measures the gallery's search time and memory per face at scale.
//   node --expose-gc --import tsx test/gallery/measure-search.ts [faces=1000000] [dimension=128]
// Prints search milliseconds (1 and 8 queries, median of 20 runs) and bytes per face for the
// vector index alone and for the whole in-memory catalog (index + per-face bookkeeping).
import { Catalog } from '../../src/gallery/catalog.js';
import type { CachedFeature } from '../../src/gallery/feature-cache.js';
import { VectorIndex } from '../../src/gallery/vector-index.js';

const faces = Number(process.argv[2] ?? 1_000_000);
const dimension = Number(process.argv[3] ?? 128);
const gc = (globalThis as { gc?: () => void }).gc;

function heapBytes(): number {
  gc?.();
  const { heapUsed, arrayBuffers, external } = process.memoryUsage();
  return heapUsed + Math.max(arrayBuffers, external);
}

function unitVector(dim: number): Float32Array {
  const v = new Float32Array(dim);
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    v[i] = Math.random() * 2 - 1;
    norm += v[i] * v[i];
  }
  norm = Math.sqrt(norm);
  for (let i = 0; i < dim; i++) v[i] /= norm;
  return v;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function timeSearch(catalog: Catalog, queries: number): Promise<number> {
  const q = Array.from({ length: queries }, () => unitVector(dimension));
  await catalog.nearest(q, 8);
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const started = performance.now();
    await catalog.nearest(q, 8);
    times.push(performance.now() - started);
  }
  return median(times);
}

/** Faces as the sync would hold them: from a visitor table row, several per visitor. */
function feature(id: number): CachedFeature {
  const visitorId = `visitor-${Math.floor(id / 3)}`;
  return {
    id,
    visitorId,
    source: { table: 'visitor_images', ctid: `(${Math.floor(id / 40)},${(id % 40) + 1})`, xmin: 1000 + id, visitorId },
    embedding: unitVector(dimension),
  };
}

const base = heapBytes();
const catalog = new Catalog(await VectorIndex.create(dimension));
const PAGE = 20_000;
for (let start = 0; start < faces; start += PAGE) {
  await catalog.add(Array.from({ length: Math.min(PAGE, faces - start) }, (_, i) => feature(start + i)));
}
const total = heapBytes() - base;
const one = await timeSearch(catalog, 1);
const eight = await timeSearch(catalog, 8);
const indexBytes = catalog.index.allocatedBytes;
console.log(
  JSON.stringify(
    {
      faces: catalog.faces,
      dimension,
      searchMs: { oneQuery: Math.round(one * 10) / 10, eightQueries: Math.round(eight * 10) / 10 },
      bytesPerFace: {
        vectorIndex: Math.round(indexBytes / faces),
        catalogTotal: Math.round(total / faces),
        gcExposed: gc !== undefined,
      },
    },
    null,
    2,
  ),
);
