// Dot products of 8-bit codes, the inner loop of the gallery search, as a small WebAssembly
// module written here byte by byte and run by worker threads on one shared memory.
//
// Why not onnxruntime: its integer matrix product takes about 32 ms for a million 128-d rows
// and one query on 2 cores (measured): with a single query column the kernel is bound by its
// own arithmetic. This loop reads each row once with 128-bit SIMD and is bound by memory
// traffic instead: 128 MB in about 20 ms on one core, and each worker takes a share of the rows.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** Codes are stored in strides of this many bytes (one 128-bit vector). */
export const LANE_BYTES = 16;

const PAGE_BYTES = 65_536;
/** 4 GiB: the most a 32-bit WebAssembly memory addresses (about 30 million 128-d faces). */
const MAX_PAGES = 65_536;

// ---- The module ----
// scores(codes, rows, stride, queries, m, scales, out): for each of `rows` rows of `stride` int8
// codes and each of `m` queries (int8, `stride` bytes each, one after another):
// out[row * m + query] = (dot product of the codes) x scales[row], as float32. Products of two
// int8 fit in 16 bits with room for one addition (2 x 127 x 127 < 32,767), so a 128-bit vector of
// 16 codes costs two widening multiplies, one 16-bit addition and one pairwise widening addition.
//
// best(scores, rows, step, count, found, kept, first): the `count` largest of `rows` float32
// scores `step` bytes apart, best first: their row numbers (plus `first`) in found[], their scores
// in kept[], which the caller fills with -Infinity. An insertion into a short sorted list; past
// the first rows few scores beat the worst kept, so this costs one comparison per row.

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const OP = {
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  i32Load: 0x28,
  f32Load: 0x2a,
  i32Store: 0x36,
  f32Store: 0x38,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32GeU: 0x4f,
  i32LtU: 0x49,
  f32Gt: 0x5e,
  f32Ge: 0x60,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32Mul: 0x6c,
  i32Shl: 0x74,
  f32Mul: 0x94,
  f32ConvertI32S: 0xb2,
  simd: 0xfd,
} as const;
const BLOCK_VOID = 0x40;
const SIMD = {
  v128Load: 0,
  v128Const: 12,
  i32x4ExtractLane: 27,
  i32x4ExtaddPairwiseI16x8S: 126,
  i16x8Add: 142,
  i16x8ExtmulLowI8x16S: 156,
  i16x8ExtmulHighI8x16S: 157,
  i32x4Add: 174,
} as const;
/** memarg alignment exponents: 4-byte and 16-byte accesses. */
const ALIGN_4 = 2;
const ALIGN_16 = 4;

function leb(value: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    bytes.push(byte);
  } while (value !== 0);
  return bytes;
}

function vec(items: number[][]): number[] {
  return [...leb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb(body.length), ...body];
}

function name(text: string): number[] {
  const bytes = [...Buffer.from(text, 'utf8')];
  return [...leb(bytes.length), ...bytes];
}

const get = (i: number) => [OP.localGet, i];
const set = (i: number) => [OP.localSet, i];
const simd = (op: number) => [OP.simd, ...leb(op)];
const addTo = (i: number, amount: number[]) => [...get(i), ...amount, OP.i32Add, ...set(i)];
/** Small non-negative constants only (signed LEB128 of 0..63 is one byte). */
const i32 = (value: number) => [OP.i32Const, value];
/** base + index * 4 */
const element = (base: number, index: number[]) => [...get(base), ...index, ...i32(2), OP.i32Shl, OP.i32Add];

function functionBody(locals: [count: number, type: number][], code: number[]): number[] {
  const body = [...vec(locals.map(([count, type]) => [...leb(count), type])), ...code, OP.end];
  return [...leb(body.length), ...body];
}

function scoresBody(): number[] {
  const [codes, rows, stride, queries, m, scales, out] = [0, 1, 2, 3, 4, 5, 6];
  const [end, qptr, left, k] = [7, 8, 9, 10];
  const [acc, v, w] = [11, 12, 13];
  const lane = (i: number) => [...get(acc), ...simd(SIMD.i32x4ExtractLane), i];
  return functionBody(
    [
      [4, I32],
      [3, V128],
    ],
    [
      ...get(out), ...get(rows), ...get(m), OP.i32Mul, ...i32(4), OP.i32Mul, OP.i32Add, ...set(end),
      OP.block, BLOCK_VOID,
      OP.loop, BLOCK_VOID, // one row
      ...get(out), ...get(end), OP.i32GeU, OP.brIf, 1,
      ...get(queries), ...set(qptr),
      ...get(m), ...set(left),
      OP.loop, BLOCK_VOID, // one query
      ...simd(SIMD.v128Const), ...new Array(16).fill(0), ...set(acc),
      ...i32(0), ...set(k),
      OP.loop, BLOCK_VOID, // 16 codes
      ...get(codes), ...get(k), OP.i32Add, ...simd(SIMD.v128Load), ALIGN_16, 0, ...set(v),
      ...get(qptr), ...get(k), OP.i32Add, ...simd(SIMD.v128Load), ALIGN_16, 0, ...set(w),
      ...get(acc),
      ...get(v), ...get(w), ...simd(SIMD.i16x8ExtmulLowI8x16S),
      ...get(v), ...get(w), ...simd(SIMD.i16x8ExtmulHighI8x16S),
      ...simd(SIMD.i16x8Add), ...simd(SIMD.i32x4ExtaddPairwiseI16x8S), ...simd(SIMD.i32x4Add), ...set(acc),
      ...addTo(k, i32(LANE_BYTES)),
      ...get(k), ...get(stride), OP.i32LtU, OP.brIf, 0,
      OP.end,
      // out[0] = (sum of the four lanes) x scales[0]
      ...get(out),
      ...lane(0), ...lane(1), OP.i32Add, ...lane(2), ...lane(3), OP.i32Add, OP.i32Add,
      OP.f32ConvertI32S, ...get(scales), OP.f32Load, ALIGN_4, 0, OP.f32Mul,
      OP.f32Store, ALIGN_4, 0,
      ...addTo(out, i32(4)),
      ...addTo(qptr, get(stride)),
      ...get(left), ...i32(1), OP.i32Sub, ...set(left),
      ...get(left), OP.brIf, 0,
      OP.end,
      ...addTo(codes, get(stride)),
      ...addTo(scales, i32(4)),
      OP.br, 0,
      OP.end,
      OP.end,
    ],
  );
}

function bestBody(): number[] {
  const [scores, rows, step, count, found, kept, first] = [0, 1, 2, 3, 4, 5, 6];
  const [row, at] = [7, 8];
  const [score, worst] = [9, 10];
  const last = [...get(count), ...i32(1), OP.i32Sub];
  const loadKept = (index: number[]) => [...element(kept, index), OP.f32Load, ALIGN_4, 0];
  const loadFound = (index: number[]) => [...element(found, index), OP.i32Load, ALIGN_4, 0];
  const below = [...get(at), ...i32(1), OP.i32Sub];
  return functionBody(
    [
      [2, I32],
      [2, F32],
    ],
    [
      ...loadKept(last), ...set(worst),
      ...i32(0), ...set(row),
      OP.block, BLOCK_VOID,
      OP.loop, BLOCK_VOID, // one row
      ...get(row), ...get(rows), OP.i32GeU, OP.brIf, 1,
      ...get(scores), OP.f32Load, ALIGN_4, 0, ...set(score),
      ...get(score), ...get(worst), OP.f32Gt,
      OP.if, BLOCK_VOID,
      ...last, ...set(at),
      OP.block, BLOCK_VOID,
      OP.loop, BLOCK_VOID, // move worse kept scores down one place
      ...get(at), OP.i32Eqz, OP.brIf, 1,
      ...loadKept(below), ...get(score), OP.f32Ge, OP.brIf, 1,
      ...element(kept, get(at)), ...loadKept(below), OP.f32Store, ALIGN_4, 0,
      ...element(found, get(at)), ...loadFound(below), OP.i32Store, ALIGN_4, 0,
      ...below, ...set(at),
      OP.br, 0,
      OP.end,
      OP.end,
      ...element(kept, get(at)), ...get(score), OP.f32Store, ALIGN_4, 0,
      ...element(found, get(at)), ...get(row), ...get(first), OP.i32Add, OP.i32Store, ALIGN_4, 0,
      ...loadKept(last), ...set(worst),
      OP.end,
      ...addTo(scores, get(step)),
      ...addTo(row, i32(1)),
      OP.br, 0,
      OP.end,
      OP.end,
    ],
  );
}

/** The module's bytes: imports a shared memory `env.memory`, exports `scores` and `best`. */
export function kernelModule(): Uint8Array {
  const SHARED_WITH_MAX = 0x03;
  const FUNC = 0x00;
  const MEMORY = 0x02;
  const sevenInts = [0x60, ...vec(new Array(7).fill([I32])), ...vec([])];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([sevenInts])),
    ...section(2, vec([[...name('env'), ...name('memory'), MEMORY, SHARED_WITH_MAX, ...leb(1), ...leb(MAX_PAGES)]])),
    ...section(3, vec([[0], [0]])),
    ...section(7, vec([[...name('scores'), FUNC, 0], [...name('best'), FUNC, 1]])),
    ...section(10, vec([scoresBody(), bestBody()])),
  ]);
}

// ---- Workers ----

/**
 * Each worker's own buffer for scores: a share is scored this many bytes' worth of rows at a time
 * and ranked while the scores are still in cache (one pass over a share's scores per query).
 */
const SCORE_BUFFER_BYTES = 128 * 1024;

// Each message is a list of shares: score some rows, chunk by chunk, and keep each query's best.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { memory, scoresAt, scoreBytes } = workerData;
const instance = new WebAssembly.Instance(new WebAssembly.Module(workerData.module), { env: { memory } });
const { scores, best } = instance.exports;
parentPort.on('message', (shares) => {
  for (const [codes, rows, stride, queries, m, scales, count, found, kept, first] of shares) {
    new Float32Array(memory.buffer, kept, m * count).fill(-Infinity);
    const chunk = Math.max(1, Math.floor(scoreBytes / (m * 4)));
    for (let from = 0; from < rows; from += chunk) {
      const n = Math.min(chunk, rows - from);
      scores(codes + from * stride, n, stride, queries, m, scales + from * 4, scoresAt);
      for (let q = 0; q < m; q++) best(scoresAt + q * 4, n, m * 4, count, found + q * count * 4, kept + q * count * 4, first + from);
    }
  }
  parentPort.postMessage(0);
});
`;

/**
 * One block of a search: `rows` rows of codes at `codes` (`stride` bytes each, their scales at
 * `scales`) against `m` queries at `queries` (`stride` bytes each); each worker keeps its `count` best rows per query
 * at `candidates` (`candidateBytes` long), read back with `candidatesOf`.
 */
export interface SearchJob {
  codes: number;
  rows: number;
  stride: number;
  scales: number;
  queries: number;
  m: number;
  count: number;
  candidates: number;
}

type Share = [codes: number, rows: number, stride: number, queries: number, m: number, scales: number, count: number, found: number, kept: number, first: number];

/** Regions up to this size are rounded up to a power of two, larger ones to a multiple of it, so that freed regions get reused. */
const SIZE_CLASS_STEP = 1 << 20;

function sizeClass(size: number): number {
  if (size >= SIZE_CLASS_STEP) return Math.ceil(size / SIZE_CLASS_STEP) * SIZE_CLASS_STEP;
  return Math.max(LANE_BYTES, 2 ** Math.ceil(Math.log2(size)));
}

/**
 * The shared memory, a simple allocator over it, and the workers. One per process: every index
 * allocates from it, and searches run one at a time on all workers.
 */
export class DotKernel {
  private static shared: Promise<DotKernel> | undefined;
  private readonly free = new Map<number, number[]>();
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    readonly memory: WebAssembly.Memory,
    private top: number,
    private readonly workers: Worker[],
  ) {}

  /** The process's kernel, started on first use with one worker per core. */
  static get(): Promise<DotKernel> {
    DotKernel.shared ??= DotKernel.start(availableParallelism());
    return DotKernel.shared;
  }

  private static async start(threads: number): Promise<DotKernel> {
    const count = Math.max(1, threads);
    // The workers' own buffers come first in the memory.
    const initialPages = Math.ceil((count * SCORE_BUFFER_BYTES) / PAGE_BYTES);
    const memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
    const module = kernelModule();
    const workers = await Promise.all(
      Array.from({ length: count }, async (_, w) => {
        const workerData = { module, memory, scoresAt: w * SCORE_BUFFER_BYTES, scoreBytes: SCORE_BUFFER_BYTES };
        const worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
        await new Promise<void>((resolve, reject) => {
          worker.once('online', resolve);
          worker.once('error', reject);
        });
        worker.unref();
        return worker;
      }),
    );
    return new DotKernel(memory, count * SCORE_BUFFER_BYTES, workers);
  }

  /** Bytes a job's `candidates` needs: for each worker and query, `count` rows and their scores. */
  candidateBytes(m: number, count: number): number {
    return this.workers.length * m * count * 8;
  }

  /**
   * Reserves at least `size` bytes (16-byte aligned) and returns their offset; freed regions of
   * the same size class are reused. Views made earlier stay valid: a shared memory grows in place.
   */
  allocate(size: number): number {
    size = sizeClass(size);
    const reused = this.free.get(size)?.pop();
    if (reused !== undefined) return reused;
    const at = this.top;
    const needed = Math.ceil((at + size) / PAGE_BYTES) - this.memory.buffer.byteLength / PAGE_BYTES;
    if (needed > 0) this.memory.grow(needed);
    this.top += size;
    return at;
  }

  /** Hands back a region that `allocate(size)` returned. */
  release(at: number, size: number): void {
    size = sizeClass(size);
    const list = this.free.get(size) ?? [];
    list.push(at);
    this.free.set(size, list);
  }

  /** Runs the jobs, each one's rows shared out among the workers; one call at a time. */
  run(jobs: SearchJob[]): Promise<void> {
    const done = this.queue.then(() => this.runNow(jobs));
    this.queue = done.catch(() => undefined);
    return done;
  }

  /** For job `job` and query `q`: every worker's kept rows (numbered within the job) and their approximate scores; -Infinity marks an empty place. */
  candidatesOf(job: SearchJob, q: number): { rows: Int32Array; scores: Float32Array }[] {
    return this.workers.map((_, w) => {
      const { found, kept } = this.shareCandidates(job, w);
      return {
        rows: new Int32Array(this.memory.buffer, found + q * job.count * 4, job.count),
        scores: new Float32Array(this.memory.buffer, kept + q * job.count * 4, job.count),
      };
    });
  }

  private shareCandidates(job: SearchJob, w: number): { found: number; kept: number } {
    const found = job.candidates + w * job.m * job.count * 8;
    return { found, kept: found + job.m * job.count * 4 };
  }

  private async runNow(jobs: SearchJob[]): Promise<void> {
    const shares: Share[][] = this.workers.map(() => []);
    for (const job of jobs) {
      const per = Math.ceil(job.rows / this.workers.length);
      this.workers.forEach((_, w) => {
        const first = Math.min(job.rows, w * per);
        const rows = Math.min(per, job.rows - first);
        const { found, kept } = this.shareCandidates(job, w);
        shares[w].push([job.codes + first * job.stride, rows, job.stride, job.queries, job.m, job.scales + first * 4, job.count, found, kept, first]);
      });
    }
    await Promise.all(
      this.workers.map((worker, w) => {
        worker.ref();
        return new Promise<void>((resolve, reject) => {
          const fail = (error: Error) => reject(error);
          worker.once('error', fail);
          worker.once('message', () => {
            worker.off('error', fail);
            worker.unref();
            resolve();
          });
          worker.postMessage(shares[w]);
        });
      }),
    );
  }
}
