// Every searchable face as one row of codes in memory, searched exactly: cosine similarity of
// L2-normalised vectors is their dot product, so the k best rows of queries x matrix^T are the
// k nearest faces. The rows are cut into blocks so that growing them never copies more than one
// block.
//
// A search reads every row, so at a million faces its cost is memory traffic. Each row is
// therefore kept as 7-bit codes (128 bytes at 128 dimensions), which the kernel (dot-kernel.ts,
// kernel/search.wat) scores against all the queries of a search in one pass on every core,
// keeping per block, worker and query the best few rows. The float32 vectors are not kept here
// (512 MB at a million faces): a search asks its caller for those of the few rows that can
// still be among the k best (the gallery reads them from the feature cache, in the same round
// trip that confirms the rows still exist), and scores them exactly:
//
// Exactness. For a row x and a query q with codes x' and q', the kernel's score s(x) is the dot
// product of x' and q' (up to float32 rounding), and |x.q - s(x)| <= |x - x'| |q| + |x'| |q - q'|
// (Cauchy-Schwarz). Each block keeps the largest |x - x'| and |x'| of its rows, so every row of
// block b has x.q within E_b of s(x). Let L be the k-th largest s(x) - E_b among the rows the
// kernel kept: k rows have x.q >= L, so a row can be among the k best only if s(x) >= L - E_b.
// Every kept row with that score is scored exactly; where a worker left rows out of a block
// with its worst kept score still at or above L - E_b, the block is scanned again keeping every
// row above L - E_b. Rows the caller no longer has (gone since) are left out, so fewer than k
// of the rows scored may reach L; a row never scored is below L, so the scored rows at or above
// L are the best present ones, and while they are fewer than k the search looks deeper (k times
// DEEPER) until they are not, or every row was scored. Hence, for each query, the hits are the k
// present rows of greatest similarity, the similarity computed from the float32 vectors in
// double precision exactly as a brute-force scan computes it (rows of equal similarity may come
// in either order), whatever the data: near-duplicates only make the second scan, and the exact
// scoring, longer.
//
// The kernel's workers read the codes while the main thread waits, so a mutation during a search
// would be read half-done: mutations wait for in-flight searches, and searches arriving
// meanwhile wait for the mutation. A search whose kernel run fails (or exceeds its time limit)
// rejects and lets them go.
import { FaceRecogError } from '../errors.js';
import {
  codeStride,
  DotKernel,
  QUERY_CODE_MAX,
  ROW_CODE_MAX,
  ROW_CODE_OFFSET,
  TILE_ROWS,
  type SearchJob,
  type ShareCandidates,
} from './dot-kernel.js';
import { timeLeft, type TimeLimit } from './time-limit.js';

export interface Hit {
  key: number;
  /** Dot product of the query and the stored vector: cosine similarity for unit vectors. */
  similarity: number;
}

export interface VectorEntry {
  key: number;
  vector: Float32Array;
}

/**
 * The float32 vectors of these keys, as they were added, for the keys still present: a key left
 * out of the answer is gone (its row deleted since, say) and is not a hit.
 */
export type VectorSource = (keys: number[]) => Promise<Map<number, Float32Array>>;

export interface VectorIndexOptions {
  /** Rows per block (default 65,536: 9 MB of codes, scales and keys at 128 dimensions). */
  blockRows?: number;
  /** The process's kernel unless given. */
  kernel?: DotKernel;
}

const DEFAULT_BLOCK_ROWS = 65_536;
const FIRST_BLOCK_ROWS = 1_024;
/** While fewer than k present rows are sure to be the best, the search is run again for this many times more. */
const DEEPER = 4;
/** Rows each worker keeps per block and query in the first scan: this many times k, and at least MIN_CANDIDATES. */
const CANDIDATE_FACTOR = 2;
const MIN_CANDIDATES = 32;
/**
 * Added to every error bound: covers the kernel's float32 rounding of a score (at most 2^-24 of
 * it, under 1e-7 for unit vectors) and the double rounding of the bounds themselves, with room.
 */
const ROUNDING_SLACK = 1e-6;

class Block {
  keys: Float64Array;
  size = 0;
  /** This block's region of the kernel's memory: `maxRows` rows (whole tiles) of codes, then their scales. */
  readonly at: number;
  readonly codes: Uint8Array;
  /** Per row: the float32 component one code unit stands for. */
  readonly scales: Float32Array;
  /** The largest |x - x'| and |x'| (x' the row its codes stand for) of any row ever stored here. */
  errorBound = 0;
  normBound = 0;
  private readonly regionRows: number;

  constructor(
    private readonly kernel: DotKernel,
    readonly dimension: number,
    readonly stride: number,
    rows: number,
    readonly maxRows: number,
  ) {
    this.keys = new Float64Array(rows);
    this.regionRows = Math.ceil(maxRows / TILE_ROWS) * TILE_ROWS;
    this.at = kernel.allocate(this.regionBytes);
    this.codes = new Uint8Array(kernel.memory.buffer, this.at, this.regionRows * stride);
    this.scales = new Float32Array(kernel.memory.buffer, this.scalesAt, this.regionRows);
  }

  get scalesAt(): number {
    return this.at + this.regionRows * this.stride;
  }

  private get regionBytes(): number {
    return this.regionRows * (this.stride + 4);
  }

  get capacity(): number {
    return this.keys.length;
  }

  get bytes(): number {
    return this.keys.byteLength + this.regionBytes;
  }

  /** Doubles the capacity, up to `maxRows`; copies this block only (its codes never move). */
  grow(): void {
    const keys = new Float64Array(Math.min(this.maxRows, this.capacity * 2));
    keys.set(this.keys.subarray(0, this.size));
    this.keys = keys;
  }

  release(): void {
    this.kernel.release(this.at, this.regionBytes);
  }

  /** Stores the codes of `vector` in row `i`. */
  set(i: number, vector: Float32Array, key: number): void {
    let largest = 0;
    for (const v of vector) largest = Math.max(largest, Math.abs(v));
    const scale = Math.fround(largest / ROW_CODE_MAX);
    const from = i * this.stride;
    let errorSquared = 0;
    let normSquared = 0;
    for (let d = 0; d < this.stride; d++) {
      const code = scale > 0 && d < this.dimension ? Math.round(vector[d] / scale) : 0;
      this.codes[from + d] = code + ROW_CODE_OFFSET;
      if (d >= this.dimension) continue;
      errorSquared += (vector[d] - code * scale) ** 2;
      normSquared += (code * scale) ** 2;
    }
    this.scales[i] = scale;
    this.keys[i] = key;
    this.errorBound = Math.max(this.errorBound, Math.sqrt(errorSquared));
    this.normBound = Math.max(this.normBound, Math.sqrt(normSquared));
  }

  /** Copies row `j` of `other` into row `i`. */
  copyRow(i: number, other: Block, j: number): void {
    this.codes.set(other.codes.subarray(j * this.stride, (j + 1) * this.stride), i * this.stride);
    this.scales[i] = other.scales[j];
    this.keys[i] = other.keys[j];
    this.errorBound = Math.max(this.errorBound, other.errorBound);
    this.normBound = Math.max(this.normBound, other.normBound);
  }
}

/** The exact similarity: in double precision, component by component, as a brute-force scan computes it. */
function dot(vector: Float32Array, query: Float32Array): number {
  let sum = 0;
  for (let d = 0; d < vector.length; d++) sum += vector[d] * query[d];
  return sum;
}

/**
 * A search's queries in the kernel's memory: each as int8 codes, `stride` bytes apart and
 * zero-padded, then ROW_CODE_OFFSET x the sum of each one's codes. Keeps per query what the error
 * bound needs.
 */
class QueryBatch {
  readonly count: number;
  readonly at: number;
  readonly bytes: number;
  /** Per query: the component one code unit stands for, |q| and |q - q'|. */
  readonly scales: number[] = [];
  readonly norms: number[] = [];
  readonly errors: number[] = [];

  constructor(
    private readonly kernel: DotKernel,
    private readonly stride: number,
    queries: Float32Array[],
  ) {
    this.count = queries.length;
    this.bytes = this.count * (stride + 4);
    this.at = kernel.allocate(this.bytes);
    const codes = new Int8Array(kernel.memory.buffer, this.at, this.count * stride).fill(0);
    const offsets = new Int32Array(kernel.memory.buffer, this.offsetsAt, this.count).fill(0);
    queries.forEach((q, j) => {
      let largest = 0;
      for (const v of q) largest = Math.max(largest, Math.abs(v));
      // A zero query's codes are zero whatever the scale.
      const scale = largest > 0 ? largest / QUERY_CODE_MAX : 1;
      let sum = 0;
      let normSquared = 0;
      let errorSquared = 0;
      for (let d = 0; d < q.length; d++) {
        const code = Math.round(q[d] / scale);
        codes[j * stride + d] = code;
        sum += code;
        normSquared += q[d] ** 2;
        errorSquared += (q[d] - code * scale) ** 2;
      }
      offsets[j] = ROW_CODE_OFFSET * sum;
      this.scales.push(scale);
      this.norms.push(Math.sqrt(normSquared));
      this.errors.push(Math.sqrt(errorSquared));
    });
  }

  get offsetsAt(): number {
    return this.at + this.count * this.stride;
  }

  /** How far query q's similarity to any row of `block` can be from its kernel score (in similarity units). */
  errorBound(block: Block, q: number): number {
    return block.errorBound * this.norms[q] + block.normBound * this.errors[q] + ROUNDING_SLACK;
  }

  release(): void {
    this.kernel.release(this.at, this.bytes);
  }
}

/** A float32 no greater than `x` (the kernel compares scores with its floors in float32). */
function float32AtMost(x: number): number {
  const f = Math.fround(x);
  // One float32 step below x is at most |x| 2^-23 away: rounding x - |x| 2^-23 stays under x.
  return f <= x ? f : Math.fround(x - Math.abs(x) * 2 ** -23);
}

/** Many concurrent readers, or one synchronous writer once the readers have finished. */
class ReadWriteGate {
  private readers = 0;
  private writersWaiting = 0;
  private wakeReaders: (() => void)[] = [];
  private wakeWriters: (() => void)[] = [];

  async read<T>(work: () => Promise<T>): Promise<T> {
    while (this.writersWaiting > 0) await new Promise<void>((resolve) => this.wakeReaders.push(resolve));
    this.readers++;
    try {
      return await work();
    } finally {
      this.readers--;
      if (this.readers === 0) this.release(this.wakeWriters.splice(0));
    }
  }

  async write<T>(work: () => T): Promise<T> {
    if (this.readers > 0) {
      this.writersWaiting++;
      await new Promise<void>((resolve) => this.wakeWriters.push(resolve));
      this.writersWaiting--;
    }
    try {
      return work();
    } finally {
      if (this.writersWaiting === 0) this.release(this.wakeReaders.splice(0));
    }
  }

  private release(waiting: (() => void)[]): void {
    for (const wake of waiting) wake();
  }
}

export class VectorIndex {
  readonly dimension: number;
  /** Bytes per row of codes (codeStride). */
  private readonly stride: number;
  private readonly blockRows: number;
  private readonly kernel: DotKernel;
  private readonly blocks: Block[] = [];
  /** key -> global row (block * blockRows + row). */
  private readonly rows = new Map<number, number>();
  private readonly gate = new ReadWriteGate();

  private constructor(dimension: number, blockRows: number, kernel: DotKernel) {
    this.dimension = dimension;
    this.stride = codeStride(dimension);
    this.blockRows = blockRows;
    this.kernel = kernel;
  }

  static async create(dimension: number, options: VectorIndexOptions = {}): Promise<VectorIndex> {
    return new VectorIndex(dimension, options.blockRows ?? DEFAULT_BLOCK_ROWS, options.kernel ?? (await DotKernel.get()));
  }

  get size(): number {
    return this.rows.size;
  }

  has(key: number): boolean {
    return this.rows.has(key);
  }

  /** Bytes held by the matrix, its codes and its keys (allocated capacity, not only used rows). */
  get allocatedBytes(): number {
    return this.blocks.reduce((sum, b) => sum + b.bytes, 0);
  }

  /** Adds the entries; an entry whose key is present replaces it. Vectors must be L2-normalised. */
  add(entries: VectorEntry[]): Promise<void> {
    for (const { vector } of entries) this.checkDimension(vector);
    return this.gate.write(() => {
      for (const { key, vector } of entries) {
        const at = this.rows.get(key);
        if (at === undefined) this.append(key, vector);
        else this.block(at).set(at % this.blockRows, vector, key);
      }
    });
  }

  /** Removes the keys present (O(1) each: the last row moves into the hole). */
  remove(keys: Iterable<number>): Promise<void> {
    return this.gate.write(() => {
      for (const key of keys) this.removeOne(key);
    });
  }

  /**
   * For each query, the k most similar entries that `vectorsOf` still has, best first (fewer
   * when there are fewer). With a `limit`, each kernel run gets the time left of it, and none
   * starts once it has passed. The index is read under its gate, `vectorsOf` called outside it.
   */
  async search(queries: Float32Array[], k: number, vectorsOf: VectorSource, limit?: TimeLimit): Promise<Hit[][]> {
    for (const q of queries) this.checkDimension(q);
    const hits: Hit[][] = queries.map(() => []);
    let open = k < 1 ? [] : queries.map((_, q) => q);
    for (let depth = k; open.length > 0; depth *= DEEPER) {
      const round = await this.gate.read(async () => (this.size === 0 ? null : { candidates: await this.candidates(queries, depth, limit), everyRow: depth >= this.size }));
      if (!round) break;
      const vectors = await vectorsOf([...new Set(open.flatMap((q) => round.candidates[q].keys))]);
      open = open.filter((q) => {
        const { keys, lowest } = round.candidates[q];
        hits[q] = keys
          .flatMap((key) => {
            const vector = vectors.get(key);
            return vector ? [{ key, similarity: dot(vector, queries[q]) }] : [];
          })
          .filter((hit) => hit.similarity >= lowest)
          .sort((a, b) => b.similarity - a.similarity)
          .slice(0, k);
        return hits[q].length < k && !round.everyRow;
      });
    }
    return hits;
  }

  /**
   * Per query, the keys of every row that can be among its `depth` best, and the similarity
   * `lowest` that `depth` rows are sure to reach (every other row is below it).
   */
  private async candidates(queries: Float32Array[], depth: number, limit: TimeLimit | undefined): Promise<{ keys: number[]; lowest: number }[]> {
    const blocks = this.blocks.filter((b) => b.size > 0);
    const batch = new QueryBatch(this.kernel, this.stride, queries);
    try {
      const places = Math.max(depth * CANDIDATE_FACTOR, MIN_CANDIDATES);
      const kept = await this.scan(blocks, batch, places, () => new Float32Array(batch.count).fill(-Infinity), limit);
      const bounds = queries.map((_, q) => this.floors(blocks, batch, kept, q, depth));
      // Blocks where a worker left out rows that may be among the best, for some query: scanned
      // again, keeping every row above its floor (for those queries only).
      const again = blocks.flatMap((_, b) => {
        const short = queries.map((_, q) => kept[b][q].some((s) => s.dropped && s.worst >= bounds[q].floors[b]));
        return short.includes(true) ? [{ b, short }] : [];
      });
      const rescanned = await this.scan(
        again.map(({ b }) => blocks[b]),
        batch,
        this.kernel.rowsPerShare(Math.max(0, ...again.map(({ b }) => blocks[b].size))),
        (i) => Float32Array.from({ length: batch.count }, (_, q) => (again[i].short[q] ? float32AtMost(bounds[q].floors[again[i].b]) : Infinity)),
        limit,
      );
      again.forEach(({ b, short }, i) => short.forEach((isShort, q) => isShort && (kept[b][q] = rescanned[i][q])));
      return bounds.map(({ lowest, floors }, q) => ({ keys: this.keysAbove(blocks, kept, floors, q), lowest }));
    } finally {
      batch.release();
    }
  }

  /**
   * Runs the kernel over `blocks` for every query of `batch`, each worker keeping `places` rows
   * per block and query above `floorsOf(block)`; returns them per block, query and worker.
   */
  private async scan(
    blocks: Block[],
    batch: QueryBatch,
    places: number,
    floorsOf: (b: number) => Float32Array,
    limit: TimeLimit | undefined,
  ): Promise<ShareCandidates[][][]> {
    if (blocks.length === 0) return [];
    const timeoutMs = limit && timeLeft(limit, 'searching the gallery');
    const bytes = this.kernel.candidateBytes(batch.count, places);
    const region = this.kernel.allocate(bytes * blocks.length);
    try {
      const jobs: SearchJob[] = blocks.map((block, b) => ({
        codes: block.at,
        rows: block.size,
        stride: this.stride,
        scales: block.scalesAt,
        queryCodes: batch.at,
        queries: batch.count,
        offsets: batch.offsetsAt,
        floors: floorsOf(b),
        places,
        candidates: region + b * bytes,
      }));
      await this.kernel.run(jobs, { timeoutMs });
      return jobs.map((job) =>
        Array.from({ length: batch.count }, (_, q) =>
          this.kernel.candidatesOf(job, q).map((c) => ({ ...c, rows: c.rows.slice(), scores: c.scores.slice() })),
        ),
      );
    } finally {
      this.kernel.release(region, bytes * blocks.length);
    }
  }

  /**
   * The similarity `lowest` that k rows are sure to reach for query q, and per block the kernel
   * score a row needs to possibly reach it (in kernel units).
   */
  private floors(blocks: Block[], batch: QueryBatch, kept: ShareCandidates[][][], q: number, k: number): { lowest: number; floors: number[] } {
    const scale = batch.scales[q];
    const bounds = blocks.map((block) => batch.errorBound(block, q));
    const lows = new Float64Array(kept.reduce((n, shares) => n + shares[q].reduce((m, s) => m + s.scores.length, 0), 0));
    let at = 0;
    kept.forEach((shares, b) => {
      for (const { scores } of shares[q]) for (const score of scores) lows[at++] = score * scale - bounds[b];
    });
    const lowest = lows.length < k ? -Infinity : lows.sort()[lows.length - k];
    return { lowest, floors: bounds.map((bound) => (lowest - bound) / scale) };
  }

  /** The keys of the kept rows at or above their block's floor, for query q. */
  private keysAbove(blocks: Block[], kept: ShareCandidates[][][], floors: number[], q: number): number[] {
    const keys: number[] = [];
    blocks.forEach((block, b) => {
      for (const { rows, scores } of kept[b][q]) {
        for (let i = 0; i < rows.length; i++) if (scores[i] >= floors[b]) keys.push(block.keys[rows[i]]);
      }
    });
    return keys;
  }

  /** Empties the index and hands its memory back to the kernel. */
  close(): Promise<void> {
    return this.gate.write(() => {
      for (const block of this.blocks.splice(0)) block.release();
      this.rows.clear();
    });
  }

  private checkDimension(vector: Float32Array): void {
    if (vector.length !== this.dimension) {
      throw new FaceRecogError('internal', `embedding has ${vector.length} dimensions; the gallery holds ${this.dimension}`);
    }
  }

  private block(at: number): Block {
    return this.blocks[Math.floor(at / this.blockRows)];
  }

  private append(key: number, vector: Float32Array): void {
    let last = this.blocks[this.blocks.length - 1];
    if (!last || last.size === this.blockRows) {
      last = new Block(this.kernel, this.dimension, this.stride, Math.min(FIRST_BLOCK_ROWS, this.blockRows), this.blockRows);
      this.blocks.push(last);
    } else if (last.size === last.capacity) {
      last.grow();
    }
    last.set(last.size, vector, key);
    this.rows.set(key, (this.blocks.length - 1) * this.blockRows + last.size);
    last.size++;
  }

  private removeOne(key: number): void {
    const at = this.rows.get(key);
    if (at === undefined) return;
    this.rows.delete(key);
    const lastBlock = this.blocks[this.blocks.length - 1];
    const lastRow = lastBlock.size - 1;
    const lastAt = (this.blocks.length - 1) * this.blockRows + lastRow;
    if (at !== lastAt) {
      const hole = this.block(at);
      const row = at % this.blockRows;
      hole.copyRow(row, lastBlock, lastRow);
      this.rows.set(hole.keys[row], at);
    }
    lastBlock.size--;
    if (lastBlock.size === 0) this.blocks.pop()!.release();
  }
}
