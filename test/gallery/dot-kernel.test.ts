// The hand-written WebAssembly kernel against plain JavaScript: every score exact (including the
// extreme codes that would overflow a 16-bit sum of more than two products), and the kept rows
// the best ones, for row counts that do not divide among the workers, several queries, strides
// with padding, and shares with fewer rows than candidates.
import { describe, expect, it } from 'vitest';
import { DotKernel, LANE_BYTES } from '../../src/gallery/dot-kernel.js';

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('DotKernel', () => {
  it.each([
    { dimension: 128, rows: 1001, m: 1, count: 32 },
    { dimension: 128, rows: 3, m: 5, count: 3 },
    { dimension: 20, rows: 257, m: 3, count: 40 },
    { dimension: 512, rows: 64, m: 2, count: 64 },
    // More scores than a worker's buffer holds: scored and ranked chunk by chunk.
    { dimension: 16, rows: 20_000, m: 4, count: 8 },
  ])('scores int8 codes exactly and keeps the best rows ($dimension-d, $rows rows, $m queries, $count kept)', async ({ dimension, rows, m, count }) => {
    const kernel = await DotKernel.get();
    const stride = Math.ceil(dimension / LANE_BYTES) * LANE_BYTES;
    const random = seeded(dimension * 7 + rows);
    const code = () => Math.round(random() * 254) - 127;
    const sizes = { codes: rows * stride, scales: rows * 4, queries: m * stride, all: kernel.candidateBytes(m, rows), best: kernel.candidateBytes(m, count) };
    const at = Object.fromEntries(Object.entries(sizes).map(([k, size]) => [k, kernel.allocate(size)])) as Record<keyof typeof sizes, number>;
    const codes = new Int8Array(kernel.memory.buffer, at.codes, sizes.codes).fill(0);
    const queries = new Int8Array(kernel.memory.buffer, at.queries, sizes.queries).fill(0);
    const scales = new Float32Array(kernel.memory.buffer, at.scales, rows);
    for (let r = 0; r < rows; r++) {
      for (let d = 0; d < dimension; d++) codes[r * stride + d] = code();
      scales[r] = 0.5 + random();
    }
    for (let q = 0; q < m; q++) for (let d = 0; d < dimension; d++) queries[q * stride + d] = code();
    // Worst case for 16-bit partial sums: every product 127 x 127, or -127 x 127.
    for (let d = 0; d < dimension; d++) {
      codes[d] = 127;
      queries[d] = 127;
      if (rows > 1) codes[stride + d] = -127;
    }
    scales[0] = 1;
    const expected = new Float32Array(rows * m);
    for (let r = 0; r < rows; r++) {
      for (let q = 0; q < m; q++) {
        let dot = 0;
        for (let d = 0; d < stride; d++) dot += codes[r * stride + d] * queries[q * stride + d];
        expected[r * m + q] = Math.fround(dot * scales[r]);
      }
    }
    const job = (keep: number, candidates: number) => ({ codes: at.codes, rows, stride, scales: at.scales, queries: at.queries, m, count: keep, candidates });
    const kept = (j: ReturnType<typeof job>, q: number) =>
      kernel
        .candidatesOf(j, q)
        .flatMap(({ rows: found, scores }) => Array.from(found).map((row, i) => ({ row, score: scores[i] })))
        .filter((c) => c.score !== -Infinity);

    // Keeping every row: each one comes back once, with its exact score.
    const all = job(rows, at.all);
    await kernel.run([all]);
    expect(kept(all, 0).find((c) => c.row === 0)?.score).toBe(127 * 127 * dimension);
    for (let q = 0; q < m; q++) {
      const byRow = kept(all, q).sort((a, b) => a.row - b.row);
      expect(byRow.map((c) => c.row)).toEqual(Array.from({ length: rows }, (_, r) => r));
      expect(byRow.map((c) => c.score)).toEqual(Array.from({ length: rows }, (_, r) => expected[r * m + q]));
    }

    // Keeping `count`: the best scores of all rows are among them.
    const best = job(count, at.best);
    await kernel.run([best]);
    for (let q = 0; q < m; q++) {
      const candidates = kept(best, q);
      for (const c of candidates) expect(c.score).toBe(expected[c.row * m + q]);
      expect(new Set(candidates.map((c) => c.row)).size).toBe(candidates.length);
      const top = Array.from({ length: rows }, (_, r) => expected[r * m + q]).sort((a, b) => b - a).slice(0, count);
      expect(candidates.map((c) => c.score).sort((a, b) => b - a).slice(0, count)).toEqual(top);
    }
    for (const [k, size] of Object.entries(sizes)) kernel.release(at[k as keyof typeof sizes], size);
  });

  it('reuses a released region of the same size class', async () => {
    const kernel = await DotKernel.get();
    const a = kernel.allocate(4000);
    kernel.release(a, 4000);
    expect(kernel.allocate(4096)).toBe(a);
    kernel.release(a, 4096);
  });
});
