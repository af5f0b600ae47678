// Every searchable face as one row of an in-memory float32 matrix, searched exactly: cosine
// similarity of L2-normalised vectors is their dot product, so the k best rows of
// queries x matrix^T are the k nearest faces. The matrix is cut into blocks so that growing it
// never copies more than one block, and the product runs in onnxruntime (topk-model.ts).
//
// onnxruntime-node hands the JavaScript buffers to its worker thread as they are (no copy), so a
// mutation during a search would be read half-done: mutations wait for in-flight searches, and
// searches arriving meanwhile wait for the mutation.
import ort from 'onnxruntime-node';
import { NO_SPINNING } from '../engine/models/session.js';
import { FaceRecogError } from '../errors.js';
import { topKModel } from './topk-model.js';

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
  /** Rows per block (default 65,536: 32 MiB at 128 dimensions). */
  blockRows?: number;
  /** onnxruntime intra-op threads per search; 0: one per core. */
  threads?: number;
}

const DEFAULT_BLOCK_ROWS = 65_536;
const FIRST_BLOCK_ROWS = 1_024;

class Block {
  vectors: Float32Array;
  keys: Float64Array;
  size = 0;

  constructor(
    readonly dimension: number,
    rows: number,
  ) {
    this.vectors = new Float32Array(rows * dimension);
    this.keys = new Float64Array(rows);
  }

  get capacity(): number {
    return this.keys.length;
  }

  /** Doubles the capacity, up to `max` rows; copies this block only. */
  grow(max: number): void {
    const rows = Math.min(max, this.capacity * 2);
    const vectors = new Float32Array(rows * this.dimension);
    vectors.set(this.vectors.subarray(0, this.size * this.dimension));
    const keys = new Float64Array(rows);
    keys.set(this.keys.subarray(0, this.size));
    this.vectors = vectors;
    this.keys = keys;
  }

  row(i: number): Float32Array {
    return this.vectors.subarray(i * this.dimension, (i + 1) * this.dimension);
  }
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
    const session = await ort.InferenceSession.create(topKModel(dimension), {
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

  /** Bytes held by the matrix and its keys (allocated capacity, not only used rows). */
  get allocatedBytes(): number {
    return this.blocks.reduce((sum, b) => sum + b.vectors.byteLength + b.keys.byteLength, 0);
  }

  /** Adds the entries; an entry whose key is present replaces it. Vectors must be L2-normalised. */
  add(entries: VectorEntry[]): Promise<void> {
    for (const { vector } of entries) this.checkDimension(vector);
    return this.gate.write(() => {
      for (const { key, vector } of entries) {
        const at = this.rows.get(key);
        if (at === undefined) this.append(key, vector);
        else this.block(at).row(at % this.blockRows).set(vector);
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
      const packed = new Float32Array(queries.length * this.dimension);
      queries.forEach((q, i) => packed.set(q, i * this.dimension));
      const queryTensor = new ort.Tensor('float32', packed, [queries.length, this.dimension]);
      for (const block of this.blocks) {
        if (block.size === 0) continue;
        const kBlock = Math.min(k, block.size);
        const out = await this.session.run({
          queries: queryTensor,
          block: new ort.Tensor('float32', block.vectors.subarray(0, block.size * this.dimension), [block.size, this.dimension]),
          k: new ort.Tensor('int64', BigInt64Array.of(BigInt(kBlock)), [1]),
        });
        const values = out.values.data as Float32Array;
        const indices = out.indices.data as BigInt64Array;
        hits.forEach((list, q) => {
          for (let j = 0; j < kBlock; j++) list.push({ key: block.keys[Number(indices[q * kBlock + j])], similarity: values[q * kBlock + j] });
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
    last.row(last.size).set(vector);
    last.keys[last.size] = key;
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
      hole.row(row).set(lastBlock.row(lastRow));
      hole.keys[row] = lastBlock.keys[lastRow];
      this.rows.set(hole.keys[row], at);
    }
    lastBlock.size--;
    if (lastBlock.size === 0) this.blocks.pop();
  }
}
