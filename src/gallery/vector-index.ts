// Every searchable face as one row of an in-memory float32 matrix, searched exactly: cosine
// similarity of L2-normalised vectors is their dot product, so the k best rows of
// queries x matrix^T are the k nearest faces. The matrix is cut into blocks so that growing it
// never copies more than one block.
//
// A search reads every row, so at a million faces its cost is memory traffic: 512 MB of float32
// per query. Each row is therefore also kept as 8-bit codes (a quarter of the bytes), which the
// dot kernel (dot-kernel.ts) ranks on every core; the best candidates per block (at least 32) are
// then scored exactly from the float32 rows. Quantisation moves a dot product by about 1e-3, so a
// true hit would be missed only if more than that many rows of its block came within 1e-3 of it:
// the hits are those of the exact search, and every similarity returned is exact.
//
// The kernel's workers read the codes while the main thread waits, so a mutation during a search
// would be read half-done: mutations wait for in-flight searches, and searches arriving
// meanwhile wait for the mutation.
import { FaceRecogError } from '../errors.js';
import { DotKernel, LANE_BYTES, type SearchJob } from './dot-kernel.js';

export interface Hit {
  key: number;
  /** Dot product of the query and the stored vector: cosine similarity for unit vectors. */
  similarity: number;
}

export interface VectorEntry {
  key: number;
  vector: Float32Array;
}

export interface VectorIndexOptions {
  /** Rows per block (default 65,536: 40 MiB at 128 dimensions). */
  blockRows?: number;
}

const DEFAULT_BLOCK_ROWS = 65_536;
const FIRST_BLOCK_ROWS = 1_024;
/** Codes and query codes are int8 in -127..127. */
const CODE_MAX = 127;
/** Candidates scored exactly per block and query: this many times k, and at least MIN_CANDIDATES. */
const CANDIDATE_FACTOR = 4;
const MIN_CANDIDATES = 32;

class Block {
  vectors: Float32Array;
  keys: Float64Array;
  size = 0;
  /** This block's region of the kernel's memory: `maxRows` rows of codes, then their scales. */
  readonly at: number;
  readonly codes: Int8Array;
  /** Per row: the float32 component one code unit stands for. */
  readonly scales: Float32Array;

  constructor(
    private readonly kernel: DotKernel,
    readonly dimension: number,
    readonly stride: number,
    rows: number,
    readonly maxRows: number,
  ) {
    this.vectors = new Float32Array(rows * dimension);
    this.keys = new Float64Array(rows);
    this.at = kernel.allocate(this.regionBytes);
    this.codes = new Int8Array(kernel.memory.buffer, this.at, maxRows * stride);
    this.scales = new Float32Array(kernel.memory.buffer, this.scalesAt, maxRows);
  }

  get scalesAt(): number {
    return this.at + this.maxRows * this.stride;
  }

  private get regionBytes(): number {
    return this.maxRows * (this.stride + 4);
  }

  get capacity(): number {
    return this.keys.length;
  }

  get bytes(): number {
    return this.vectors.byteLength + this.keys.byteLength + this.regionBytes;
  }

  /** Doubles the capacity, up to `maxRows`; copies this block only (its codes never move). */
  grow(): void {
    const rows = Math.min(this.maxRows, this.capacity * 2);
    const vectors = new Float32Array(rows * this.dimension);
    vectors.set(this.vectors.subarray(0, this.size * this.dimension));
    const keys = new Float64Array(rows);
    keys.set(this.keys.subarray(0, this.size));
    this.vectors = vectors;
    this.keys = keys;
  }

  release(): void {
    this.kernel.release(this.at, this.regionBytes);
  }

  /** Stores `vector` in row `i`, with its codes. */
  set(i: number, vector: Float32Array, key: number): void {
    this.vectors.set(vector, i * this.dimension);
    let largest = 0;
    for (const v of vector) largest = Math.max(largest, Math.abs(v));
    const scale = largest / CODE_MAX;
    const from = i * this.stride;
    for (let d = 0; d < this.dimension; d++) this.codes[from + d] = scale > 0 ? Math.round(vector[d] / scale) : 0;
    this.scales[i] = scale;
    this.keys[i] = key;
  }

  /** Copies row `j` of `other` into row `i`. */
  copyRow(i: number, other: Block, j: number): void {
    const d = this.dimension;
    this.vectors.set(other.vectors.subarray(j * d, (j + 1) * d), i * d);
    this.codes.set(other.codes.subarray(j * this.stride, (j + 1) * this.stride), i * this.stride);
    this.scales[i] = other.scales[j];
    this.keys[i] = other.keys[j];
  }

  dot(i: number, query: Float32Array): number {
    const from = i * this.dimension;
    let sum = 0;
    for (let d = 0; d < this.dimension; d++) sum += this.vectors[from + d] * query[d];
    return sum;
  }
}

/** Each query as int8 codes, `stride` bytes apart, zero-padded; a query's own scale does not change its ranking. */
function writeQueryCodes(codes: Int8Array, stride: number, queries: Float32Array[]): void {
  codes.fill(0);
  queries.forEach((q, j) => {
    let largest = 0;
    for (const v of q) largest = Math.max(largest, Math.abs(v));
    if (largest === 0) return;
    for (let d = 0; d < q.length; d++) codes[j * stride + d] = Math.round((q[d] / largest) * CODE_MAX);
  });
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
  /** Bytes per row of codes: the dimension rounded up to whole 128-bit vectors. */
  private readonly stride: number;
  private readonly blockRows: number;
  private readonly kernel: DotKernel;
  private readonly blocks: Block[] = [];
  /** key -> global row (block * blockRows + row). */
  private readonly rows = new Map<number, number>();
  private readonly gate = new ReadWriteGate();

  private constructor(dimension: number, blockRows: number, kernel: DotKernel) {
    this.dimension = dimension;
    this.stride = Math.ceil(dimension / LANE_BYTES) * LANE_BYTES;
    this.blockRows = blockRows;
    this.kernel = kernel;
  }

  static async create(dimension: number, options: VectorIndexOptions = {}): Promise<VectorIndex> {
    return new VectorIndex(dimension, options.blockRows ?? DEFAULT_BLOCK_ROWS, await DotKernel.get());
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

  /** For each query, the k most similar entries, best first (fewer when the index holds fewer). */
  search(queries: Float32Array[], k: number): Promise<Hit[][]> {
    for (const q of queries) this.checkDimension(q);
    return this.gate.read(async () => {
      const hits: Hit[][] = queries.map(() => []);
      if (queries.length === 0 || this.size === 0 || k < 1) return hits;
      const m = queries.length;
      const blocks = this.blocks.filter((b) => b.size > 0);
      const count = (block: Block) => Math.min(block.size, Math.max(k * CANDIDATE_FACTOR, MIN_CANDIDATES));
      // Queries, then per block its candidates: a region per search, so that searches can overlap.
      const queryBytes = m * this.stride;
      const jobBytes = blocks.map((b) => this.kernel.candidateBytes(m, count(b)));
      const scratchBytes = queryBytes + jobBytes.reduce((a, b) => a + b, 0);
      const scratch = this.kernel.allocate(scratchBytes);
      try {
        writeQueryCodes(new Int8Array(this.kernel.memory.buffer, scratch, queryBytes), this.stride, queries);
        let at = scratch + queryBytes;
        const jobs: SearchJob[] = blocks.map((block, b) => {
          const job = { codes: block.at, rows: block.size, stride: this.stride, scales: block.scalesAt, queries: scratch, m, count: count(block), candidates: at };
          at += jobBytes[b];
          return job;
        });
        await this.kernel.run(jobs);
        blocks.forEach((block, b) => {
          hits.forEach((list, q) => {
            for (const { rows, scores } of this.kernel.candidatesOf(jobs[b], q)) {
              rows.forEach((row, j) => {
                if (scores[j] !== -Infinity) list.push({ key: block.keys[row], similarity: block.dot(row, queries[q]) });
              });
            }
          });
        });
      } finally {
        this.kernel.release(scratch, scratchBytes);
      }
      return hits.map((list) => list.sort((a, b) => b.similarity - a.similarity).slice(0, k));
    });
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
