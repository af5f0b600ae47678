// Every searchable face as one row of an in-memory float32 matrix, searched exactly: cosine
// similarity of L2-normalised vectors is their dot product, so the k best rows of
// queries x matrix^T are the k nearest faces. The matrix is cut into blocks so that growing it
// never copies more than one block.
//
// A search reads every row, so at a million faces its cost is memory traffic: 512 MB of float32
// per query. Each row is therefore also kept as 8-bit codes (a quarter of the bytes), which
// onnxruntime ranks (topk-model.ts); the best candidates per block (at least 32) are then scored
// exactly from the float32 rows. Quantisation moves a dot product by about 1e-3, so a true hit
// would be missed only if more than that many rows of its block came within 1e-3 of it: the hits
// are those of the exact search, and every similarity returned is exact.
//
// onnxruntime-node hands the JavaScript buffers to its worker thread as they are (no copy), so a
// mutation during a search would be read half-done: mutations wait for in-flight searches, and
// searches arriving meanwhile wait for the mutation.
import ort from 'onnxruntime-node';
import { NO_SPINNING } from '../engine/models/session.js';
import { FaceRecogError } from '../errors.js';
import { quantizedTopKModel } from './topk-model.js';

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
  /** onnxruntime intra-op threads per search; 0: one per core. */
  threads?: number;
}

const DEFAULT_BLOCK_ROWS = 65_536;
const FIRST_BLOCK_ROWS = 1_024;
/** Codes are int8 + 128 (uint8), one scale per row. */
const CODE_ZERO = 128;
const CODE_MAX = 127;
// Query codes stay within 7 bits: the AVX2 kernel adds two code x query products in 16 bits
// (255 x 63 x 2 < 32,767), so larger query codes could saturate.
const QUERY_CODE_MAX = 63;
/** Candidates scored exactly per block and query: this many times k, and at least MIN_CANDIDATES. */
const CANDIDATE_FACTOR = 4;
const MIN_CANDIDATES = 32;

class Block {
  vectors: Float32Array;
  codes: Uint8Array;
  /** Per row: the float32 component one code unit stands for. */
  scales: Float32Array;
  keys: Float64Array;
  size = 0;

  constructor(
    readonly dimension: number,
    rows: number,
  ) {
    this.vectors = new Float32Array(rows * dimension);
    this.codes = new Uint8Array(rows * dimension);
    this.scales = new Float32Array(rows);
    this.keys = new Float64Array(rows);
  }

  get capacity(): number {
    return this.keys.length;
  }

  get bytes(): number {
    return this.vectors.byteLength + this.codes.byteLength + this.scales.byteLength + this.keys.byteLength;
  }

  /** Doubles the capacity, up to `max` rows; copies this block only. */
  grow(max: number): void {
    const rows = Math.min(max, this.capacity * 2);
    const used = this.size * this.dimension;
    const vectors = new Float32Array(rows * this.dimension);
    vectors.set(this.vectors.subarray(0, used));
    const codes = new Uint8Array(rows * this.dimension);
    codes.set(this.codes.subarray(0, used));
    const scales = new Float32Array(rows);
    scales.set(this.scales.subarray(0, this.size));
    const keys = new Float64Array(rows);
    keys.set(this.keys.subarray(0, this.size));
    this.vectors = vectors;
    this.codes = codes;
    this.scales = scales;
    this.keys = keys;
  }

  /** Stores `vector` in row `i`, with its codes. */
  set(i: number, vector: Float32Array, key: number): void {
    const from = i * this.dimension;
    this.vectors.set(vector, from);
    let largest = 0;
    for (const v of vector) largest = Math.max(largest, Math.abs(v));
    const scale = largest / CODE_MAX;
    for (let d = 0; d < this.dimension; d++) this.codes[from + d] = scale > 0 ? Math.round(vector[d] / scale) + CODE_ZERO : CODE_ZERO;
    this.scales[i] = scale;
    this.keys[i] = key;
  }

  /** Copies row `j` of `other` into row `i`. */
  copyRow(i: number, other: Block, j: number): void {
    const d = this.dimension;
    this.vectors.set(other.vectors.subarray(j * d, (j + 1) * d), i * d);
    this.codes.set(other.codes.subarray(j * d, (j + 1) * d), i * d);
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

/** Queries as int8 codes, one query per column ([dimension, m]); each query's own scale does not change its ranking. */
function queryCodes(queries: Float32Array[], dimension: number): Int8Array {
  const codes = new Int8Array(dimension * queries.length);
  queries.forEach((q, column) => {
    let largest = 0;
    for (const v of q) largest = Math.max(largest, Math.abs(v));
    if (largest === 0) return;
    for (let d = 0; d < dimension; d++) codes[d * queries.length + column] = Math.round((q[d] / largest) * QUERY_CODE_MAX);
  });
  return codes;
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
  private readonly blockRows: number;
  private readonly session: ort.InferenceSession;
  private readonly blocks: Block[] = [];
  /** key -> global row (block * blockRows + row). */
  private readonly rows = new Map<number, number>();
  private readonly gate = new ReadWriteGate();

  private constructor(dimension: number, blockRows: number, session: ort.InferenceSession) {
    this.dimension = dimension;
    this.blockRows = blockRows;
    this.session = session;
  }

  static async create(dimension: number, options: VectorIndexOptions = {}): Promise<VectorIndex> {
    const session = await ort.InferenceSession.create(quantizedTopKModel(dimension), {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      intraOpNumThreads: options.threads ?? 0,
      interOpNumThreads: 1,
      logSeverityLevel: 3,
      extra: NO_SPINNING,
    });
    return new VectorIndex(dimension, options.blockRows ?? DEFAULT_BLOCK_ROWS, session);
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
      const queryTensor = new ort.Tensor('int8', queryCodes(queries, this.dimension), [this.dimension, m]);
      const zero = new ort.Tensor('uint8', Uint8Array.of(CODE_ZERO), []);
      for (const block of this.blocks) {
        if (block.size === 0) continue;
        const candidates = Math.min(block.size, Math.max(k * CANDIDATE_FACTOR, MIN_CANDIDATES));
        const out = await this.session.run({
          codes: new ort.Tensor('uint8', block.codes.subarray(0, block.size * this.dimension), [block.size, this.dimension]),
          queries: queryTensor,
          zero,
          scales: new ort.Tensor('float32', block.scales.subarray(0, block.size), [block.size, 1]),
          k: new ort.Tensor('int64', BigInt64Array.of(BigInt(candidates)), [1]),
        });
        const indices = out.indices.data as BigInt64Array;
        hits.forEach((list, q) => {
          for (let j = 0; j < candidates; j++) {
            const row = Number(indices[j * m + q]);
            list.push({ key: block.keys[row], similarity: block.dot(row, queries[q]) });
          }
        });
      }
      return hits.map((list) => list.sort((a, b) => b.similarity - a.similarity).slice(0, k));
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
      last = new Block(this.dimension, Math.min(FIRST_BLOCK_ROWS, this.blockRows));
      this.blocks.push(last);
    } else if (last.size === last.capacity) {
      last.grow(this.blockRows);
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
    if (lastBlock.size === 0) this.blocks.pop();
  }
}
