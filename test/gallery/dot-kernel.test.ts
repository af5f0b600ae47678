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
  ])('scores int8 codes exactly and keeps the best rows ($dimension-d, $rows rows, $m queries, $count kept)', async ({ dimension, rows, m, count }) => {
    const kernel = await DotKernel.get();
    const stride = Math.ceil(dimension / LANE_BYTES) * LANE_BYTES;
    const random = seeded(dimension * 7 + rows);
    const code = () => Math.round(random() * 254) - 127;
    const sizes = { codes: rows * stride, scales: rows * 4, queries: m * stride, out: rows * m * 4, candidates: kernel.candidateBytes(m, count) };
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

    const job = { codes: at.codes, rows, stride, scales: at.scales, queries: at.queries, m, out: at.out, count, candidates: at.candidates };
    await kernel.run([job]);

    const expected = new Float32Array(rows * m);
    for (let r = 0; r < rows; r++) {
      for (let q = 0; q < m; q++) {
        let dot = 0;
        for (let d = 0; d < stride; d++) dot += codes[r * stride + d] * queries[q * stride + d];
        expected[r * m + q] = Math.fround(dot * scales[r]);
      }
    }
    const scores = new Float32Array(kernel.memory.buffer, at.out, rows * m);
    expect(scores[0]).toBe(127 * 127 * dimension);
    expect(Array.from(scores)).toEqual(Array.from(expected));

    for (let q = 0; q < m; q++) {
      const kept = kernel.candidatesOf(job, q).flatMap(({ rows: found, scores: s }) => Array.from(found).map((row, j) => ({ row, score: s[j] })).filter((c) => c.score !== -Infinity));
      for (const c of kept) expect(c.score).toBe(expected[c.row * m + q]);
      expect(new Set(kept.map((c) => c.row)).size).toBe(kept.length);
      const best = Array.from({ length: rows }, (_, r) => expected[r * m + q]).sort((a, b) => b - a).slice(0, count);
      expect(kept.map((c) => c.score).sort((a, b) => b - a).slice(0, count)).toEqual(best);
    }
    for (const [k, size] of Object.entries(sizes)) kernel.release(at[k as keyof typeof sizes], size);
  });

  it('reuses a released region of the same size', async () => {
    const kernel = await DotKernel.get();
    const a = kernel.allocate(4096);
    kernel.release(a, 4096);
    expect(kernel.allocate(4096)).toBe(a);
    kernel.release(a, 4096);
  });
});
