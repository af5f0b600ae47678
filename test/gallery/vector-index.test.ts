// The vector index against a brute-force reference: same neighbours, same similarities, through
// additions, replacements and swap-removals across block boundaries, and while mutations race
// with searches.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VectorIndex } from '../../src/gallery/vector-index.js';

const DIM = 16;

function unitVector(random: () => number, dim = DIM): Float32Array {
  const v = new Float32Array(dim);
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    v[i] = random() * 2 - 1;
    norm += v[i] * v[i];
  }
  return v.map((x) => x / Math.sqrt(norm));
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/** The k best keys of `reference` for `query`, by brute force. */
function bruteForce(reference: Map<number, Float32Array>, query: Float32Array, k: number): { key: number; similarity: number }[] {
  return [...reference]
    .map(([key, v]) => ({ key, similarity: dot(query, v) }))
    .sort((a, b) => b.similarity - a.similarity)
    .slice(0, k);
}

/**
 * Same similarities at every rank as brute force, and each hit a distinct stored key whose own
 * similarity is the one reported (so equal similarities may come in either order, also at the cut).
 */
function expectSameHits(actual: { key: number; similarity: number }[], reference: Map<number, Float32Array>, query: Float32Array, k: number): void {
  const expected = bruteForce(reference, query, k);
  expect(actual.length).toBe(expected.length);
  expect(new Set(actual.map((h) => h.key)).size).toBe(actual.length);
  actual.forEach((hit, i) => {
    expect(hit.similarity).toBeCloseTo(expected[i].similarity, 5);
    expect(reference.has(hit.key)).toBe(true);
    expect(dot(query, reference.get(hit.key)!)).toBeCloseTo(hit.similarity, 5);
  });
}

describe('VectorIndex', () => {
  it('finds the same neighbours as brute force across several blocks', async () => {
    const random = seeded(1);
    const index = await VectorIndex.create(DIM, { blockRows: 64 });
    const reference = new Map<number, Float32Array>();
    const entries = Array.from({ length: 300 }, (_, i) => ({ key: 1000 + i, vector: unitVector(random) }));
    await index.add(entries);
    for (const e of entries) reference.set(e.key, e.vector);
    expect(index.size).toBe(300);
    const queries = Array.from({ length: 5 }, () => unitVector(random));
    const hits = await index.search(queries, 10);
    queries.forEach((q, i) => expectSameHits(hits[i], reference, q, 10));
  });

  it('ranks 128-d faces like brute force when a block holds far more rows than candidates', async () => {
    const random = seeded(7);
    const index = await VectorIndex.create(128, { blockRows: 8192 });
    const reference = new Map<number, Float32Array>();
    const entries = Array.from({ length: 20_000 }, (_, i) => ({ key: i, vector: unitVector(random, 128) }));
    await index.add(entries);
    for (const e of entries) reference.set(e.key, e.vector);
    // Queries near stored faces, as real ones are, and random ones.
    const near = [11, 9000, 19_999].map((key) => {
      const noisy = entries[key].vector.map((v) => v + (random() - 0.5) * 0.05);
      const norm = Math.hypot(...noisy);
      return noisy.map((v) => v / norm);
    });
    const queries = [...near, unitVector(random, 128), unitVector(random, 128)];
    const hits = await index.search(queries, 8);
    queries.forEach((q, i) => expectSameHits(hits[i], reference, q, 8));
    expect(hits.slice(0, 3).map((h) => h[0].key)).toEqual([11, 9000, 19_999]);
  });

  it('returns a stored vector as its own nearest neighbour with similarity 1', async () => {
    const random = seeded(2);
    const index = await VectorIndex.create(DIM, { blockRows: 32 });
    const entries = Array.from({ length: 100 }, (_, i) => ({ key: i, vector: unitVector(random) }));
    await index.add(entries);
    const hits = await index.search([entries[77].vector, entries[3].vector], 1);
    expect(hits.map((h) => h[0].key)).toEqual([77, 3]);
    expect(hits[0][0].similarity).toBeCloseTo(1, 5);
  });

  it('keeps brute-force agreement through random additions, replacements and removals', async () => {
    const index = await VectorIndex.create(DIM, { blockRows: 8 });
    const reference = new Map<number, Float32Array>();
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('add' as const), key: fc.integer({ min: 0, max: 60 }), seed: fc.integer() }),
            fc.record({ op: fc.constant('remove' as const), key: fc.integer({ min: 0, max: 60 }), seed: fc.integer() }),
          ),
          { maxLength: 40 },
        ),
        fc.integer(),
        async (ops, querySeed) => {
          for (const { op, key, seed } of ops) {
            if (op === 'add') {
              const vector = unitVector(seeded(seed));
              await index.add([{ key, vector }]);
              reference.set(key, vector);
            } else {
              await index.remove([key]);
              reference.delete(key);
            }
          }
          expect(index.size).toBe(reference.size);
          const query = unitVector(seeded(querySeed));
          const [hits] = await index.search([query], 5);
          expectSameHits(hits, reference, query, 5);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('returns fewer hits than k when it holds fewer, and none when empty', async () => {
    const index = await VectorIndex.create(DIM);
    const query = unitVector(seeded(3));
    expect(await index.search([query], 5)).toEqual([[]]);
    await index.add([{ key: 1, vector: query }, { key: 2, vector: unitVector(seeded(4)) }]);
    const [hits] = await index.search([query], 5);
    expect(hits.map((h) => h.key)).toEqual([1, 2]);
  });

  it('refuses vectors of another dimension', async () => {
    const index = await VectorIndex.create(DIM);
    expect(() => index.add([{ key: 1, vector: new Float32Array(DIM + 1) }])).toThrow(/dimensions/);
    expect(() => index.search([new Float32Array(3)], 1)).toThrow(/dimensions/);
  });

  it('lets a search finish on the data it started with while removals wait', async () => {
    const random = seeded(5);
    const index = await VectorIndex.create(DIM, { blockRows: 4096 });
    const reference = new Map<number, Float32Array>();
    const entries = Array.from({ length: 50_000 }, (_, i) => ({ key: i, vector: unitVector(random) }));
    await index.add(entries);
    for (const e of entries) reference.set(e.key, e.vector);
    const queries = Array.from({ length: 8 }, () => unitVector(random));
    const expected = queries.map((q) => bruteForce(reference, q, 3));
    // Removing the best hits (swap-remove moves other rows into their places) while the search
    // runs on the kernel's workers must not change what the search sees.
    const searching = index.search(queries, 3);
    const removing = index.remove(expected.flat().map((h) => h.key));
    const hits = await searching;
    await removing;
    queries.forEach((q, i) => expectSameHits(hits[i], reference, q, 3));
    const [after] = await index.search([queries[0]], 1);
    expect(expected.flat().map((h) => h.key)).not.toContain(after[0].key);
  });

  it('reuses its search memory while the gallery grows one face at a time', async () => {
    const random = seeded(8);
    const index = await VectorIndex.create(DIM, { blockRows: 64 });
    const memoryBytes = () => (index as unknown as { kernel: { memory: WebAssembly.Memory } }).kernel.memory.buffer.byteLength;
    let settled = 0;
    for (let i = 0; i < 600; i++) {
      await index.add([{ key: i, vector: unitVector(random) }]);
      await index.search([unitVector(random), unitVector(random)], 3);
      if (i === 300) settled = memoryBytes();
    }
    // From 300 to 600 faces: five more 64-row blocks (5 x 2 KiB of codes and scales) take at most
    // one more 64 KiB page; every search's scratch comes back to the same few size classes (a
    // region left behind per search would add 300 of them).
    expect(memoryBytes() - settled).toBeLessThanOrEqual(65_536);
    await index.close();
  });

  it('grows and shrinks block by block', async () => {
    const index = await VectorIndex.create(DIM, { blockRows: 2048 });
    const random = seeded(6);
    await index.add(Array.from({ length: 5000 }, (_, i) => ({ key: i, vector: unitVector(random) })));
    // Two full blocks and a third one that grew to 1024 rows; per row: float32 vector and key;
    // and each block's 8-bit codes and scales reserved for all its 2048 rows in the kernel's memory.
    const rowBytes = DIM * 4 + 8;
    const codeBytes = 2048 * (DIM + 4);
    expect(index.allocatedBytes).toBe((2 * 2048 + 1024) * rowBytes + 3 * codeBytes);
    await index.remove(Array.from({ length: 1000 }, (_, i) => i));
    expect(index.size).toBe(4000);
    expect(index.allocatedBytes).toBe(2 * 2048 * rowBytes + 2 * codeBytes);
  });
});
