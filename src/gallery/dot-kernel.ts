// The host side of the gallery search kernel (kernel/search.wat): compiles it, shares one
// WebAssembly memory among one worker thread per core, hands each run's rows out among them, and
// keeps them working: a run that fails or hangs rejects on its own, and the next run gets a fresh
// worker, so one fault never breaks later searches.
//
// Why compile the text at start (wabt, about 20 ms once per process) rather than ship a .wasm:
// the .wat is then the only source, nothing generated can drift from it, and a maintainer edits
// it and runs the tests. The build copies it into dist/ next to this module.
//
// Why relaxed SIMD: its 16-bit dot product of 8-bit codes is one instruction per 16 codes
// (PMADDUBSW on x64), which lets eight queries share one pass over the codes at a few times the
// cost of one. Node 22 and later have it; where it is missing (Node 20) or gives other sums than
// the plain arithmetic, the same kernel runs with each such product spelled in plain SIMD (slower).
//
// Why time two forms at start: the fastest way to add up dot products depends on the CPU, and
// V8's code for each cannot be asked for. The .wat widens two 16-bit products at once, 1.33-1.39x
// faster for eight queries on x64 without AVX-VNNI (2026-12-06); a 32-bit dot product added to
// its sum is one instruction with AVX-VNNI or on ARM with dot product. Both are exact, so the
// choice only decides speed; timing them (with the second compile, 50-80 ms once per process)
// also leaves the chosen one optimised by V8 before the first search.
//
// Why a native form beside them: V8 uses neither AVX-512 nor its VNNI, with which one instruction
// multiplies and adds 64 codes; where the optional package @face-recog/dot-native was built at
// install (a C compiler) and the CPU has AVX-512 VNNI, its kernel (packages/dot-native) is
// checked and timed at start like the WebAssembly forms, on the same memory and candidates.
// Eight queries over a million faces took 1.55x less time with it (AMD EPYC, 2026-12-07), one the same.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import initWabt from 'wabt';
import { FaceRecogError } from '../errors.js';

/** One 128-bit vector: regions of the shared memory are aligned to it. */
export const LANE_BYTES = 16;
/** The kernel reads two vectors of a row per step. */
const STEP_BYTES = 2 * LANE_BYTES;
/** Bytes per row of codes (and per query) for `dimension` components: whole steps of the kernel. */
export function codeStride(dimension: number): number {
  return Math.ceil(dimension / STEP_BYTES) * STEP_BYTES;
}
/** The kernel scores rows four at a time: regions of codes and scales hold whole tiles. */
export const TILE_ROWS = 4;
/** A stored component's code c is in -ROW_CODE_MAX..ROW_CODE_MAX and kept as c + ROW_CODE_OFFSET (0..127). */
export const ROW_CODE_MAX = 63;
export const ROW_CODE_OFFSET = 64;
/**
 * A query component's code is in -QUERY_CODE_MAX..QUERY_CODE_MAX: 7 bits, so that the kernel can
 * add four products in 16 bits (4 x 127 x 63 < 32,767); the error bounds take the coarser query
 * codes into account (vector-index.ts).
 */
export const QUERY_CODE_MAX = 63;

const PAGE_BYTES = 65_536;
/**
 * 4 GiB: the most a 32-bit WebAssembly memory addresses (about 30 million 128-d faces). V8
 * reserves address space for it (10 GiB with its guard pages, whatever the maximum) but commits
 * only the pages in use; one memory serves the whole process.
 */
const MAX_PAGES = 65_536;
/** A run that has not finished after this long is abandoned and its workers replaced (a million faces take about 10 ms). */
const RUN_TIMEOUT_MS = 10_000;
/**
 * Runs of at most this many row scores (rows x queries) are scored on the calling thread, where
 * they take at most about 0.2 ms. Handing a run to the workers and back costs 0.05 ms when they
 * are busy, but in the service they sleep between requests, and waking them cost more than
 * scoring the whole run here: the search stage of a 100-face gallery went from 0.8 to 0.25 ms.
 */
const IN_THREAD_SCORES = 65_536;

const KERNEL_SOURCE = new URL('./kernel/search.wat', import.meta.url);
const WASM_FEATURES = { simd: true, threads: true, relaxed_simd: true };

/**
 * How the kernel computes its dot products; every form gives the same scores and candidates, and
 * which one is fastest depends on the CPU:
 * - `relaxed`, search.wat as written: 16-bit relaxed dot products, two added before one widening
 *   (x64 without AVX-VNNI: two PMADDUBSW, an add and one PMADDWD per 32 codes);
 * - `relaxed-add`: each vector's 32-bit relaxed dot product added to its sum, one instruction
 *   with AVX-VNNI (VPDPBUSD) or an ARM CPU's dot product (SDOT), three multiplies without;
 * - `plain`: plain SIMD, where relaxed SIMD is missing or inexact (Node 20);
 * - `native`: packages/dot-native, 64 codes per VPDPBUSD, where it was built and the CPU has AVX-512 VNNI.
 */
export type KernelForm = 'relaxed' | 'relaxed-add' | 'plain' | 'native';
/** The forms timed at start when more than one runs exactly, in the order a tie between them is settled. */
const TIMED_FORMS = ['relaxed', 'relaxed-add', 'native'] as const satisfies KernelForm[];

const NATIVE_PACKAGE = '@face-recog/dot-native';
const requireHere = createRequire(import.meta.url);

/** What the native package exports where it loads (its index.js gives null otherwise). */
interface NativeKernel {
  search(memory: Uint8Array, ...share: Share): void;
}

/** A form's code: a compiled search.wat, or the path of the native kernel's package (for the workers to load). */
type KernelCode = { module: WebAssembly.Module } | { nativePath: string };

/** The native kernel's package, or null where it is not installed, was not built, or this CPU lacks AVX-512 VNNI. */
function nativePath(): string | null {
  try {
    const path = requireHere.resolve(NATIVE_PACKAGE);
    return requireHere(path) ? path : null;
  } catch {
    return null;
  }
}

/** search.wat's dot products: (query codes, row codes), operands always local.get. */
const RELAXED_DOT = /\(i16x8\.relaxed_dot_i8x16_i7x16_s (\(local\.get \$\w+\)) (\(local\.get \$\w+\))\)/g;
/**
 * The same in plain SIMD: a product of two codes fits in 16 bits and so does the sum of two. Its
 * lanes hold other pairs of products than relaxed SIMD's, which the kernel only ever adds up.
 */
const PLAIN_DOT = '(i16x8.add (i16x8.extmul_low_i8x16_s $1 $2) (i16x8.extmul_high_i8x16_s $1 $2))';
/** search.wat's step: sum + widen(dot(query a, row a) + dot(query b, row b)). */
const STEP = new RegExp(
  String.raw`\(i32x4\.add (\(local\.get \$\w+\)) \(i32x4\.dot_i16x8_s \(i16x8\.add ` +
    String.raw`\(i16x8\.relaxed_dot_i8x16_i7x16_s (\(local\.get \$\w+\)) (\(local\.get \$\w+\))\) ` +
    String.raw`\(i16x8\.relaxed_dot_i8x16_i7x16_s (\(local\.get \$\w+\)) (\(local\.get \$\w+\))\)\) \(local\.get \$ones\)\)\)`,
  'g',
);
/** The same step as two 32-bit dot products, each added to the sum. */
const STEP_ADD = '(i32x4.relaxed_dot_i8x16_i7x16_add_s $4 $5 (i32x4.relaxed_dot_i8x16_i7x16_add_s $2 $3 $1))';

function kernelText(form: KernelForm): string {
  const text = readFileSync(KERNEL_SOURCE, 'utf8');
  if (form === 'relaxed') return text;
  const derived = form === 'plain' ? text.replace(RELAXED_DOT, PLAIN_DOT) : text.replace(STEP, STEP_ADD);
  const left = form === 'plain' ? /\(\w+\.relaxed_/ : /\(i16x8\.relaxed_/;
  if (left.test(derived)) throw new FaceRecogError('internal', `search.wat has a relaxed-SIMD instruction that has no ${form} form here`);
  return derived;
}

/** The kernel's bytes in `form`, or null when this Node.js cannot run that form exactly. */
function assemble(wabt: Awaited<ReturnType<typeof initWabt>>, form: KernelForm): WebAssembly.Module | null {
  const parsed = wabt.parseWat(KERNEL_SOURCE.pathname, kernelText(form), WASM_FEATURES);
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    // wabt's own check names the line of a mistake; its typings omit the features argument.
    (parsed as unknown as { validate(features: typeof WASM_FEATURES): void }).validate(WASM_FEATURES);
    bytes = new Uint8Array(parsed.toBinary({}).buffer);
  } finally {
    parsed.destroy();
  }
  if (!WebAssembly.validate(bytes)) return null;
  const module = new WebAssembly.Module(bytes);
  return scoresExactly({ module }) ? module : null;
}

/** The code of `form`, or null when it cannot run here exactly. */
function codeOf(wabt: Awaited<ReturnType<typeof initWabt>>, form: KernelForm): KernelCode | null {
  if (form === 'native') {
    const path = nativePath();
    return path && scoresExactly({ nativePath: path }) ? { nativePath: path } : null;
  }
  const module = assemble(wabt, form);
  return module ? { module } : null;
}

/** A compiled form of the kernel; `timesMs`: what choosing it measured, per form (none when there was no choice). */
interface CompiledKernel {
  code: KernelCode;
  form: KernelForm;
  timesMs: Partial<Record<KernelForm, number>>;
}

/** Compiled once per process and form asked for ('fastest': none asked for). */
const compiled = new Map<KernelForm | 'fastest', Promise<CompiledKernel>>();

/** The form asked for, or the fastest of the timed forms that run here exactly, or else the plain one. */
function compileKernel(wanted?: KernelForm): Promise<CompiledKernel> {
  const key = wanted ?? 'fastest';
  if (!compiled.has(key)) compiled.set(key, compileNow(wanted));
  return compiled.get(key)!;
}

async function compileNow(wanted?: KernelForm): Promise<CompiledKernel> {
  const wabt = await initWabt();
  const unavailable = () =>
    new FaceRecogError(
      'internal',
      wanted === 'native'
        ? `the native search kernel is not here: ${NATIVE_PACKAGE} was not built at install, or this CPU lacks AVX-512 VNNI`
        : `this Node.js (${process.version}) cannot run the search kernel${wanted ? ` in its ${wanted} form` : ''}`,
    );
  if (wanted) {
    const code = codeOf(wabt, wanted);
    if (!code) throw unavailable();
    return { code, form: wanted, timesMs: {} };
  }
  const exact = TIMED_FORMS.flatMap((form) => {
    const code = codeOf(wabt, form);
    return code ? [{ form, code }] : [];
  });
  if (exact.length === 0) {
    const code = codeOf(wabt, 'plain');
    if (!code) throw unavailable();
    return { code, form: 'plain', timesMs: {} };
  }
  if (exact.length === 1) return { ...exact[0], timesMs: {} };
  const timesMs = timeForms(exact);
  const form = fastestForm(timesMs);
  return { code: exact.find((e) => e.form === form)!.code, form, timesMs };
}

/** The timing that chooses a form: eight queries (arithmetic, where the forms differ) over 2 MB of codes, in rounds. */
const TIMING = { rows: 16_384, queries: 8, rounds: 24 };

/**
 * Each form's median time (ms) to score TIMING's rows, the forms taken in turn, over the later
 * half of the rounds: V8 first runs a function as its baseline compiler made it and optimises it
 * once it has run a while (after about 7 rounds here), and the optimised code is what searches
 * run; the chosen module is then optimised before the first search. 30-60 ms, once per process.
 */
function timeForms(forms: { form: KernelForm; code: KernelCode }[]): Partial<Record<KernelForm, number>> {
  const { rows, queries, rounds } = TIMING;
  const job = scratchJob(rows, queries, codeStride(128), 1);
  const { codes, query } = job;
  for (let i = 0; i < codes.length; i++) codes[i] = (i * 131 + (i >> 7)) & 127;
  job.scales.fill(1 / 4096);
  for (let i = 0; i < query.length; i++) query[i] = ((i * 53) % (2 * QUERY_CODE_MAX + 1)) - QUERY_CODE_MAX;
  const searches = forms.map(({ code }) => searchOver(code, job.memory));
  const times = forms.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++) {
    searches.forEach((search, f) => {
      job.reset();
      const started = performance.now();
      search(...job.share);
      if (round >= rounds / 2) times[f].push(performance.now() - started);
    });
  }
  return Object.fromEntries(forms.map(({ form }, f) => [form, middle(times[f])]));
}

function middle(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The timed form of least time; a tie goes to the one first in TIMED_FORMS. */
export function fastestForm(timesMs: Partial<Record<KernelForm, number>>): KernelForm {
  const timed = TIMED_FORMS.filter((form) => timesMs[form] !== undefined);
  if (timed.length === 0) throw new FaceRecogError('internal', 'no kernel form was timed');
  return timed.reduce((best, form) => (timesMs[form]! < timesMs[best]! ? form : best));
}

/** Rows of the check at start: five tiles of the WebAssembly forms, a group of 16 and four more of the native one. */
const CHECK_ROWS = 20;

/**
 * Whether `code` scores a known case exactly: CHECK_ROWS rows against three queries, with the
 * extreme codes. Runs in this thread on a memory of its own, at start.
 */
function scoresExactly(code: KernelCode): boolean {
  // Three queries: a pair and one alone, the WebAssembly kernel's two paths. Rows of 96 codes:
  // three of its steps, and for the native kernel one step of 64 codes and one of 32.
  const [rows, queries, stride] = [CHECK_ROWS, 3, 3 * STEP_BYTES];
  const job = scratchJob(rows, queries, stride, rows);
  const { codes, query, offsets } = job;
  codes.set(Array.from(codes, (_, i) => (i * 37) % 128));
  codes.set([127, 0, 127, 0], 0);
  job.scales.fill(1);
  query.set(Array.from(query, (_, i) => ((i * 53) % (2 * QUERY_CODE_MAX + 1)) - QUERY_CODE_MAX));
  query.set([QUERY_CODE_MAX, -QUERY_CODE_MAX, -QUERY_CODE_MAX, QUERY_CODE_MAX], 0);
  // The largest sums a step adds in 16 bits: a row of 127s against a query of QUERY_CODE_MAXs.
  codes.fill(127, 3 * stride, 4 * stride);
  codes.fill(127, 18 * stride, 19 * stride);
  query.fill(QUERY_CODE_MAX, 2 * stride, 3 * stride);
  for (let q = 0; q < queries; q++) offsets[q] = ROW_CODE_OFFSET * query.subarray(q * stride, (q + 1) * stride).reduce((a, b) => a + b, 0);
  job.reset();
  searchOver(code, job.memory)(...job.share);
  return Array.from({ length: queries }, (_, q) => q).every((q) => {
    const { used, kept, found } = job.candidates(q);
    const expected = (row: number) => codes.subarray(row * stride, (row + 1) * stride).reduce((sum, c, d) => sum + (c - ROW_CODE_OFFSET) * query[q * stride + d], 0);
    return used[0] === rows && Array.from(found).every((row, i) => kept[i] === expected(row)) && new Set(found).size === rows;
  });
}

/** The kernel's `search` in `code`, over `memory`. */
function searchOver(code: KernelCode, memory: WebAssembly.Memory): (...share: Share) => void {
  if ('module' in code) return (new WebAssembly.Instance(code.module, { env: { memory } }).exports as unknown as { search: (...share: Share) => void }).search;
  const native = requireHere(code.nativePath) as NativeKernel;
  return (...share) => native.search(new Uint8Array(memory.buffer), ...share);
}

/**
 * A memory of its own, for the checks at start on this thread: `rows` rows of codes (`stride`
 * bytes each) and their scales, `queries` queries with their offsets, and `places` candidates per
 * query; `share` scores them all.
 */
function scratchJob(rows: number, queries: number, stride: number, places: number) {
  const at = { codes: 0, scales: rows * stride, queryCodes: rows * (stride + 4), offsets: 0, state: 0 };
  at.offsets = at.queryCodes + queries * stride;
  at.state = at.offsets + queries * 4;
  const pages = Math.ceil((at.state + queries * (8 + places * 8)) / PAGE_BYTES);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const { buffer } = memory;
  const candidates = (q: number) => candidateState(buffer, at.state, queries, places, q);
  return {
    memory,
    codes: new Uint8Array(buffer, at.codes, rows * stride),
    scales: new Float32Array(buffer, at.scales, rows),
    query: new Int8Array(buffer, at.queryCodes, queries * stride),
    offsets: new Int32Array(buffer, at.offsets, queries),
    candidates,
    /** Empties every query's candidates, with no floor. */
    reset(): void {
      for (let q = 0; q < queries; q++) {
        candidates(q).worst[0] = -Infinity;
        candidates(q).used[0] = 0;
      }
    },
    share: [at.codes, rows, stride, at.scales, at.queryCodes, queries, at.offsets, at.state, places, 0] as Share,
  };
}

/** The layout kernel/search.wat keeps candidates in, at `at`: worst[queries], used[queries], then per query kept[places] and found[places]. */
function candidateState(buffer: ArrayBufferLike, at: number, queries: number, places: number, q: number) {
  const kept = at + queries * 8 + q * places * 8;
  return {
    worst: new Float32Array(buffer, at + q * 4, 1),
    used: new Int32Array(buffer, at + (queries + q) * 4, 1),
    kept: new Float32Array(buffer, kept, places),
    found: new Int32Array(buffer, kept + places * 4, places),
  };
}

// Each message is a run: a list of shares, each the arguments of one call of `search`. Only
// dynamic import(): the eval'd source is CommonJS or a module depending on the options the
// worker inherits (`--input-type=module`, say), and import() works in both.
const WORKER_SOURCE = `
Promise.all([import('node:worker_threads'), import('node:module')]).then(([{ parentPort, workerData }, { createRequire }]) => {
  const { code, memory } = workerData;
  const native = code.module ? null : createRequire(code.nativePath)(code.nativePath);
  const search = native ? (...share) => native.search(new Uint8Array(memory.buffer), ...share) : new WebAssembly.Instance(code.module, { env: { memory } }).exports.search;
  parentPort.on('message', ({ id, shares }) => {
    try {
      for (const share of shares) search(...share);
      parentPort.postMessage({ id });
    } catch (error) {
      parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
    }
  });
});
`;

/**
 * One block of a search: `rows` rows of codes at `codes` (`stride` bytes each, their scales at
 * `scales`) against `queries` queries at `queryCodes`, with
 * ROW_CODE_OFFSET x the sum of each one's codes at `offsets` (int32). Each worker keeps, per
 * query, its `places` best rows scoring above `floors[q]` at `candidates` (`candidateBytes` long).
 */
export interface SearchJob {
  codes: number;
  rows: number;
  stride: number;
  scales: number;
  queryCodes: number;
  queries: number;
  offsets: number;
  floors: ArrayLike<number>;
  places: number;
  candidates: number;
}

/** One worker's candidates for one query: rows numbered within the job, approximate scores, in no order. */
export interface ShareCandidates {
  rows: Int32Array;
  scores: Float32Array;
  /** Rows of this share that scored above the floor were left out; each of them scored at most `worst`. */
  dropped: boolean;
  worst: number;
}

/** The arguments of the kernel's `search`, in its order. */
type Share = [codes: number, rows: number, stride: number, scales: number, queryCodes: number, queries: number, offsets: number, state: number, places: number, first: number];

/** The rows of a job that worker `w` of `workers` scores: whole tiles, the last share possibly shorter. */
function shareRows(rows: number, workers: number, w: number): { first: number; count: number } {
  const per = Math.ceil(rows / workers / TILE_ROWS) * TILE_ROWS;
  const first = Math.min(rows, w * per);
  return { first, count: Math.min(per, rows - first) };
}

/** A run in progress on one worker; settled once, by its answer, its worker's end or its time limit. */
interface Run {
  worker: Worker;
  id: number;
  settle: (error?: Error) => void;
}

/** One worker thread and the run it is working on. A worker that died or hung is replaced when the next run starts. */
class KernelWorker {
  private worker: Worker | undefined;
  private current: Run | undefined;

  constructor(private readonly workerData: { code: KernelCode; memory: WebAssembly.Memory }) {}

  run(id: number, shares: Share[], timeoutMs: number): Promise<void> {
    const worker = this.worker ?? this.start();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        void this.abandon(worker, new FaceRecogError('timeout', `the gallery search did not finish within ${timeoutMs} ms; its worker was replaced`));
      }, timeoutMs);
      const run: Run = {
        worker,
        id,
        settle: (error) => {
          if (this.current !== run) return;
          clearTimeout(timer);
          this.current = undefined;
          if (error) reject(error);
          else resolve();
        },
      };
      this.current = run;
      worker.postMessage({ id, shares });
    });
  }

  /** Ends the worker (e.g. at shutdown); a run in progress rejects. */
  async stop(): Promise<void> {
    if (this.worker) await this.abandon(this.worker, new FaceRecogError('internal', 'the search kernel was stopped'));
  }

  private start(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: this.workerData });
    let crash: Error | undefined;
    worker.on('message', ({ id, error }: { id: number; error?: string }) => {
      if (this.current?.worker !== worker || this.current.id !== id) return;
      this.current.settle(error === undefined ? undefined : new FaceRecogError('internal', `the search kernel failed: ${error}`));
    });
    worker.on('error', (error) => {
      crash = error;
    });
    worker.on('exit', (code) => {
      // A worker ended here was abandoned already, with its reason.
      if (this.worker !== worker) return;
      void this.abandon(worker, new FaceRecogError('internal', `a search kernel worker stopped: ${crash?.message ?? `exit code ${code}`}`));
    });
    // The workers never keep the process alive: a run in progress does, through its timer. After
    // the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /**
   * Replaces `worker` at the next run and fails its run once it has ended: until then it could
   * still write into the run's candidates, which the caller frees when the run settles.
   */
  private async abandon(worker: Worker, error: Error): Promise<void> {
    if (this.worker === worker) this.worker = undefined;
    const run = this.current?.worker === worker ? this.current : undefined;
    await worker.terminate();
    run?.settle(error);
  }
}

/** Regions up to this size are rounded up to a power of two, larger ones to a multiple of it, so that freed regions get reused. */
const SIZE_CLASS_STEP = 1 << 20;

function sizeClass(size: number): number {
  if (size >= SIZE_CLASS_STEP) return Math.ceil(size / SIZE_CLASS_STEP) * SIZE_CLASS_STEP;
  return Math.max(LANE_BYTES, 2 ** Math.ceil(Math.log2(size)));
}

export interface DotKernelOptions {
  threads?: number;
  /** Runs of at most this many row scores run on the calling thread (IN_THREAD_SCORES unless given; 0: always on the workers). */
  inThreadScores?: number;
  /** The fastest exact form on this CPU unless given (compileKernel). */
  form?: KernelForm;
}

/**
 * The shared memory, a simple allocator over it, and the workers. One per process: every index
 * allocates from it, and runs go one at a time, each on all workers.
 */
export class DotKernel {
  private static shared: Promise<DotKernel> | undefined;
  private readonly free = new Map<number, number[]>();
  private queue: Promise<void> = Promise.resolve();
  private top = 0;
  private runs = 0;

  private constructor(
    readonly memory: WebAssembly.Memory,
    readonly form: KernelForm,
    /** Each timed form's time at start, when there was a choice (ms to score 16,384 rows against eight queries on one thread). */
    readonly formTimesMs: Partial<Record<KernelForm, number>>,
    private readonly workers: KernelWorker[],
    /** The kernel's `search` on this thread, over the same memory. */
    private readonly searchHere: (...share: Share) => void,
    private readonly inThreadScores: number,
  ) {}

  /** The process's kernel, started on first use with one worker per core. */
  static get(): Promise<DotKernel> {
    DotKernel.shared ??= DotKernel.create();
    return DotKernel.shared;
  }

  /** A kernel of its own (tests; the process shares `get()`'s). */
  static async create(options: DotKernelOptions = {}): Promise<DotKernel> {
    const { code, form, timesMs } = await compileKernel(options.form);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    const threads = Math.max(1, options.threads ?? availableParallelism());
    const workers = Array.from({ length: threads }, () => new KernelWorker({ code, memory }));
    return new DotKernel(memory, form, timesMs, workers, searchOver(code, memory), options.inThreadScores ?? IN_THREAD_SCORES);
  }

  /** Bytes a job's `candidates` needs: for each worker and query, its state and `places` rows and scores. */
  candidateBytes(queries: number, places: number): number {
    return this.workers.length * this.shareStateBytes(queries, places);
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

  /**
   * Runs the jobs, each one's rows shared out among the workers; one run at a time. Rejects with
   * a FaceRecogError if a worker fails, dies or takes longer than `timeoutMs` (RUN_TIMEOUT_MS
   * unless given); the candidates are then not to be read, and the next run starts on healthy
   * workers.
   */
  run(jobs: SearchJob[], options: { timeoutMs?: number } = {}): Promise<void> {
    const done = this.queue.then(() => this.runNow(jobs, options.timeoutMs ?? RUN_TIMEOUT_MS));
    this.queue = done.catch(() => undefined);
    return done;
  }

  /** Ends the workers (they are started again by the next run). */
  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
  }

  /** The most rows any worker scores of a job of `rows` rows: enough places to keep all of them. */
  rowsPerShare(rows: number): number {
    return shareRows(rows, this.workers.length, 0).count;
  }

  /** For job `job` and query `q`: each worker's candidates. */
  candidatesOf(job: SearchJob, q: number): ShareCandidates[] {
    return this.workers.map((_, w) => {
      const { worst, used, kept, found } = candidateState(this.memory.buffer, this.shareStateAt(job, w), job.queries, job.places, q);
      const count = used[0];
      return {
        rows: found.subarray(0, count),
        scores: kept.subarray(0, count),
        dropped: count === job.places && shareRows(job.rows, this.workers.length, w).count > count,
        worst: worst[0],
      };
    });
  }

  private shareStateBytes(queries: number, places: number): number {
    return queries * 8 + queries * places * 8;
  }

  private shareStateAt(job: SearchJob, w: number): number {
    return job.candidates + w * this.shareStateBytes(job.queries, job.places);
  }

  private async runNow(jobs: SearchJob[], timeoutMs: number): Promise<void> {
    const shares: Share[][] = this.workers.map(() => []);
    for (const job of jobs) {
      this.workers.forEach((_, w) => {
        const at = this.shareStateAt(job, w);
        new Float32Array(this.memory.buffer, at, job.queries).set(job.floors);
        new Int32Array(this.memory.buffer, at + job.queries * 4, job.queries).fill(0);
        const { first, count } = shareRows(job.rows, this.workers.length, w);
        if (count === 0) return;
        shares[w].push([job.codes + first * job.stride, count, job.stride, job.scales + first * 4, job.queryCodes, job.queries, job.offsets, at, job.places, first]);
      });
    }
    if (jobs.reduce((sum, job) => sum + job.rows * job.queries, 0) <= this.inThreadScores) return this.runHere(shares);
    const id = ++this.runs;
    const results = await Promise.allSettled(
      this.workers.map((worker, w) => (shares[w].length > 0 ? worker.run(id, shares[w], timeoutMs) : Promise.resolve())),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Every worker's shares, scored here one after another: each still writes its own worker's candidates. */
  private runHere(shares: Share[][]): void {
    try {
      for (const share of shares.flat()) this.searchHere(...share);
    } catch (error) {
      throw new FaceRecogError('internal', `the search kernel failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
