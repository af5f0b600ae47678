// The vector index against a brute-force reference: same neighbours, same similarities, through
// additions, replacements and swap-removals across block boundaries, while mutations race with
// searches, and for galleries of near-duplicates (many photos of look-alikes), where 8-bit scores
// cannot tell the best rows apart; rows their source no longer has are left out, and the search
// looks deeper for the best present ones. A failing kernel run fails its search only.
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { FaceRecogError } from '../../src/errors.js';
import { codeStride, DotKernel } from '../../src/gallery/dot-kernel.js';
import { VectorIndex } from '../../src/gallery/vector-index.js';
import { byKey, vectorsIn } from '../helpers/vectors.js';

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

/** `center` turned by a tiny random angle (components moved by up to `spread`), renormalised. */
function nearby(center: Float32Array, random: () => number, spread: number): Float32Array {
  const v = center.map((x) => x + (random() * 2 - 1) * spread);
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

/** Exactly brute force: the same similarities, bit for bit, at every rank (ties may swap keys). */
function expectExactHits(actual: { key: number; similarity: number }[], reference: Map<number, Float32Array>, query: Float32Array, k: number): void {
  const expected = bruteForce(reference, query, k);
  expect(actual.map((h) => h.similarity)).toEqual(expected.map((h) => h.similarity));
  expect(new Set(actual.map((h) => h.key)).size).toBe(actual.length);
  for (const hit of actual) expect(dot(query, reference.get(hit.key)!)).toBe(hit.similarity);
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
    const hits = await index.search(queries, 10, vectorsIn(reference));
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
    const hits = await index.search(queries, 8, vectorsIn(reference));
    queries.forEach((q, i) => expectSameHits(hits[i], reference, q, 8));
    expect(hits.slice(0, 3).map((h) => h[0].key)).toEqual([11, 9000, 19_999]);
  });

  it('returns a stored vector as its own nearest neighbour with similarity 1', async () => {
    const random = seeded(2);
    const index = await VectorIndex.create(DIM, { blockRows: 32 });
    const entries = Array.from({ length: 100 }, (_, i) => ({ key: i, vector: unitVector(random) }));
    await index.add(entries);
    const hits = await index.search([entries[77].vector, entries[3].vector], 1, vectorsIn(byKey(entries)));
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
          const [hits] = await index.search([query], 5, vectorsIn(reference));
          expectSameHits(hits, reference, query, 5);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('leaves out the rows its source no longer has, looking deeper until the k best present ones are sure', async () => {
    const random = seeded(21);
    const index = await VectorIndex.create(128, { blockRows: 4096 });
    const entries = Array.from({ length: 10_000 }, (_, key) => ({ key, vector: unitVector(random, 128) }));
    await index.add(entries);
    const query = nearby(entries[42].vector, random, 0.01);
    // Gone since they were added (deleted visitors, say): the 1, 5 and 40 best rows, and all but one.
    const ranked = bruteForce(byKey(entries), query, entries.length);
    for (const goneCount of [1, 5, 40, entries.length - 1]) {
      const present = byKey(entries);
      for (const { key } of ranked.slice(0, goneCount)) present.delete(key);
      const asked: number[] = [];
      const source = vectorsIn(present);
      const [hits] = await index.search([query], 3, async (keys) => {
        asked.push(keys.length);
        return source(keys);
      });
      expectExactHits(hits, present, query, 3);
      // The first round asks for the few rows that can be among the best, not for every row.
      expect(asked[0]).toBeLessThan(entries.length / 10);
      if (goneCount === 40) expect(asked.length).toBeGreaterThan(1);
    }
    await index.close();
  });

  it('returns fewer hits than k when it holds fewer, and none when empty', async () => {
    const index = await VectorIndex.create(DIM);
    const query = unitVector(seeded(3));
    const entries = [{ key: 1, vector: query }, { key: 2, vector: unitVector(seeded(4)) }];
    expect(await index.search([query], 5, vectorsIn(byKey(entries)))).toEqual([[]]);
    await index.add(entries);
    const [hits] = await index.search([query], 5, vectorsIn(byKey(entries)));
    expect(hits.map((h) => h.key)).toEqual([1, 2]);
  });

  it('refuses vectors of another dimension', async () => {
    const index = await VectorIndex.create(DIM);
    expect(() => index.add([{ key: 1, vector: new Float32Array(DIM + 1) }])).toThrow(/dimensions/);
    await expect(index.search([new Float32Array(3)], 1, vectorsIn(new Map()))).rejects.toThrow(/dimensions/);
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
    const searching = index.search(queries, 3, vectorsIn(reference));
    const removing = index.remove(expected.flat().map((h) => h.key));
    const hits = await searching;
    await removing;
    queries.forEach((q, i) => expectSameHits(hits[i], reference, q, 3));
    const [after] = await index.search([queries[0]], 1, vectorsIn(reference));
    expect(expected.flat().map((h) => h.key)).not.toContain(after[0].key);
  });

  it('reuses its search memory while the gallery grows one face at a time', async () => {
    const random = seeded(8);
    const index = await VectorIndex.create(DIM, { blockRows: 64 });
    const memoryBytes = () => (index as unknown as { kernel: { memory: WebAssembly.Memory } }).kernel.memory.buffer.byteLength;
    const reference = new Map<number, Float32Array>();
    let settled = 0;
    for (let i = 0; i < 600; i++) {
      reference.set(i, unitVector(random));
      await index.add([{ key: i, vector: reference.get(i)! }]);
      await index.search([unitVector(random), unitVector(random)], 3, vectorsIn(reference));
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
    // Two full blocks and a third one that grew to 1024 rows; per row: its key (the float32
    // vectors are not kept); and each block's codes (a whole number of the kernel's steps) and
    // scales reserved for all its 2048 rows in the kernel's memory.
    const rowBytes = 8;
    const codeBytes = 2048 * (codeStride(DIM) + 4);
    expect(index.allocatedBytes).toBe((2 * 2048 + 1024) * rowBytes + 3 * codeBytes);
    await index.remove(Array.from({ length: 1000 }, (_, i) => i));
    expect(index.size).toBe(4000);
    expect(index.allocatedBytes).toBe(2 * 2048 * rowBytes + 2 * codeBytes);
  });

  describe('near-duplicates', () => {
    // Clusters of faces within tiny angles of each other (spread 1e-4 moves a similarity by about
    // 1e-3 at most, the size of the 8-bit rounding), big enough that one worker's share of a block
    // holds far more members than the rows it keeps per query.
    it.each([
      { name: 'look-alikes in one block', clusters: 3, members: 400, spread: 1e-4, blockRows: 4096, k: 8 },
      { name: 'look-alikes across blocks', clusters: 4, members: 300, spread: 3e-4, blockRows: 256, k: 8 },
      { name: 'the same photo enrolled again and again', clusters: 2, members: 200, spread: 0, blockRows: 1024, k: 8 },
      { name: 'a deeper look (k = 128)', clusters: 2, members: 600, spread: 1e-4, blockRows: 2048, k: 128 },
      { name: 'tight clusters among unrelated faces', clusters: 5, members: 150, spread: 2e-5, blockRows: 1024, k: 32 },
    ])('is exact for $name', async ({ clusters, members, spread, blockRows, k }) => {
      const random = seeded(clusters * 1000 + members);
      const index = await VectorIndex.create(128, { blockRows });
      const reference = new Map<number, Float32Array>();
      const centers = Array.from({ length: clusters }, () => unitVector(random, 128));
      // Members interleaved with unrelated faces, so that each cluster spreads over every share.
      const entries: { key: number; vector: Float32Array }[] = [];
      for (let i = 0; i < members; i++) {
        for (const center of centers) entries.push({ key: entries.length, vector: nearby(center, random, spread) });
        entries.push({ key: entries.length, vector: unitVector(random, 128) });
      }
      await index.add(entries);
      for (const e of entries) reference.set(e.key, e.vector);
      // Queries: each center, a member, and faces near a center but farther than its members.
      const queries = centers.flatMap((center) => [center, entries[clusters].vector, nearby(center, random, 0.02)]);
      const hits = await index.search(queries, k, vectorsIn(reference));
      queries.forEach((q, i) => expectExactHits(hits[i], reference, q, k));
      await index.close();
    });

    it('stays exact while look-alikes are replaced and removed', async () => {
      const random = seeded(99);
      const index = await VectorIndex.create(128, { blockRows: 512 });
      const reference = new Map<number, Float32Array>();
      const center = unitVector(random, 128);
      const entries = Array.from({ length: 1500 }, (_, key) => ({ key, vector: nearby(center, random, 1e-4) }));
      await index.add(entries);
      for (const e of entries) reference.set(e.key, e.vector);
      for (let round = 0; round < 4; round++) {
        const [best] = await index.search([center], 16, vectorsIn(reference));
        expectExactHits(best, reference, center, 16);
        // The best ones leave; others are replaced by even closer look-alikes.
        await index.remove(best.slice(0, 8).map((h) => h.key));
        best.slice(0, 8).forEach((h) => reference.delete(h.key));
        const closer = best.slice(8).map((h) => ({ key: h.key, vector: nearby(center, random, 3e-5) }));
        await index.add(closer);
        for (const e of closer) reference.set(e.key, e.vector);
      }
      await index.close();
    });
  });

  it('fails only the search whose kernel run failed, and lets mutations through', async () => {
    const kernel = await DotKernel.create();
    const random = seeded(12);
    const index = await VectorIndex.create(DIM, { blockRows: 256, kernel });
    const reference = new Map<number, Float32Array>();
    const entries = Array.from({ length: 1000 }, (_, key) => ({ key, vector: unitVector(random) }));
    await index.add(entries);
    for (const e of entries) reference.set(e.key, e.vector);
    // A fault inside the kernel: the run reads codes past the end of the address space.
    const run = kernel.run.bind(kernel);
    vi.spyOn(kernel, 'run').mockImplementationOnce((jobs) => run(jobs.map((job) => ({ ...job, codes: 2 ** 32 - 64 }))));
    const query = unitVector(random);
    const failing = index.search([query], 5, vectorsIn(reference));
    // Queued behind the failing search's read lock, as the gallery sync's would be.
    const adding = index.add([{ key: 5000, vector: query }]);
    await expect(failing).rejects.toThrow(FaceRecogError);
    await adding;
    reference.set(5000, query);
    const [hits] = await index.search([query], 5, vectorsIn(reference));
    expectExactHits(hits, reference, query, 5);
    expect(hits[0].key).toBe(5000);
    await index.close();
    await kernel.stop();
  });
});
