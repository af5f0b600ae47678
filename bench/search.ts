// The gallery search in-process: the vector index at 100 to 1,000,000 faces, for one query and for
// eight (the faces of one image), set against the machine's memory bandwidth and, with
// --baseline REF, against the index of that git revision in the same process (the runs alternate,
// so that the machine's drift falls on both alike).
//   tsx bench/search.ts [--baseline main] [--faces 100,10000,100000,1000000] [--runs 30]
// Writes bench/results/search.json and prints it.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import initWabt from 'wabt';
import { DotKernel } from '../src/gallery/dot-kernel.js';
import { VectorIndex, type VectorSource } from '../src/gallery/vector-index.js';
import { vectorsAt } from '../test/helpers/vectors.js';
import { latencyOf, machine, median, REPO_ROOT, round2, timeInterleaved, writeResult, type Latency } from './common.js';

const DIMENSION = 128;
/** The gallery asks for the best face that is still there (src/gallery/index.ts). */
const K = 1;
const FACES_PER_IMAGE = 8;
/** Added to stored faces to make queries: about the distance between two photos of one person. */
const QUERY_NOISE = 0.05;
const PAGE = 20_000;
const BANDWIDTH_BYTES = 128 << 20;

const option = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? undefined : process.argv[at + 1];
};
const sizes = (option('faces') ?? '100,10000,100000,1000000').split(',').map(Number);
const runs = Number(option('runs') ?? 30);
const baseline = option('baseline');

interface SearchIndex {
  add(entries: { key: number; vector: Float32Array }[]): Promise<void>;
  search(queries: Float32Array[], k: number, vectorsOf: VectorSource): Promise<{ key: number; similarity: number }[][]>;
  close(): Promise<void>;
  readonly allocatedBytes: number;
}
type IndexClass = { create(dimension: number): Promise<SearchIndex> };

/**
 * The vector index of git revision `ref`, unpacked under node_modules/.cache (where its imports
 * resolve as the repository's do, and the type check does not look).
 */
async function indexAt(ref: string): Promise<{ commit: string; VectorIndex: IndexClass }> {
  const commit = execFileSync('git', ['rev-parse', '--short', ref], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  const dir = join(REPO_ROOT, 'node_modules', '.cache', 'face-recog-bench', `search-${commit}`);
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', `git archive ${commit} src | tar -x -C "${dir}"`], { cwd: REPO_ROOT });
  const module = (await import(join(dir, 'src', 'gallery', 'vector-index.ts'))) as { VectorIndex: IndexClass };
  return { commit, VectorIndex: module.VectorIndex };
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function normalised(v: Float32Array): Float32Array {
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

function unitVector(random: () => number): Float32Array {
  return normalised(Float32Array.from({ length: DIMENSION }, () => random() * 2 - 1));
}

async function fill(index: SearchIndex, vectors: Float32Array[]): Promise<void> {
  for (let start = 0; start < vectors.length; start += PAGE) {
    await index.add(vectors.slice(start, start + PAGE).map((vector, i) => ({ key: start + i, vector })));
  }
}

// ---- Memory bandwidth: a streaming read of 128 MB with 128-bit loads, in WebAssembly workers ----

const STREAM_WAT = `(module
  (import "env" "memory" (memory 1 65536 shared))
  (func (export "stream") (param $at i32) (param $bytes i32) (result i32)
    (local $end i32) (local $a v128) (local $b v128) (local $c v128) (local $d v128)
    (local.set $end (i32.add (local.get $at) (local.get $bytes)))
    (loop $read
      (local.set $a (i32x4.add (local.get $a) (v128.load offset=0 (local.get $at))))
      (local.set $b (i32x4.add (local.get $b) (v128.load offset=16 (local.get $at))))
      (local.set $c (i32x4.add (local.get $c) (v128.load offset=32 (local.get $at))))
      (local.set $d (i32x4.add (local.get $d) (v128.load offset=48 (local.get $at))))
      (local.set $at (i32.add (local.get $at) (i32.const 64)))
      (br_if $read (i32.lt_u (local.get $at) (local.get $end))))
    (i32x4.extract_lane 0 (i32x4.add (i32x4.add (local.get $a) (local.get $b)) (i32x4.add (local.get $c) (local.get $d))))))`;

const STREAM_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { stream } = new WebAssembly.Instance(workerData.module, { env: { memory: workerData.memory } }).exports;
parentPort.on('message', ([at, bytes]) => { stream(at, bytes); parentPort.postMessage(0); });
`;

/** GB/s read by 1 and by every core's worker (median of `runs` passes over the same 128 MB). */
async function memoryBandwidth(): Promise<Record<string, number>> {
  const wabt = await initWabt();
  const parsed = wabt.parseWat('stream.wat', STREAM_WAT, { simd: true, threads: true });
  const module = new WebAssembly.Module(new Uint8Array(parsed.toBinary({}).buffer));
  parsed.destroy();
  const memory = new WebAssembly.Memory({ initial: BANDWIDTH_BYTES / 65_536, maximum: 65_536, shared: true });
  // Touch every page: untouched pages all map to one zero page, which reads from cache.
  new Uint8Array(memory.buffer).fill(1);
  const threads = availableParallelism();
  const workers = Array.from({ length: threads }, () => new Worker(STREAM_WORKER, { eval: true, workerData: { module, memory } }));
  const pass = (count: number) =>
    Promise.all(
      workers.slice(0, count).map(
        (worker, w) =>
          new Promise((resolve) => {
            worker.once('message', resolve);
            worker.postMessage([(w * BANDWIDTH_BYTES) / count, BANDWIDTH_BYTES / count]);
          }),
      ),
    );
  const counts = [...new Set([1, threads])];
  const times = await timeInterleaved(runs, Object.fromEntries(counts.map((c) => [`threads_${c}`, () => pass(c)])));
  await Promise.all(workers.map((w) => w.terminate()));
  return Object.fromEntries(Object.entries(times).map(([name, ms]) => [name, round2(BANDWIDTH_BYTES / 1e6 / median(ms))]));
}

// ---- Search ----

interface SizeResult {
  faces: number;
  search_ms: Record<string, Latency>;
  /** baseline / new, medians. */
  speedup?: Record<string, number>;
  /** 8 queries / 1 query, medians. */
  eight_over_one: Record<string, number>;
  /** The index's own bytes (codes, scales, keys), allocated capacity included. */
  index_bytes_per_face: number;
}

async function measureSize(faces: number, old: IndexClass | undefined): Promise<SizeResult> {
  const random = seeded(faces);
  const vectors = Array.from({ length: faces }, () => unitVector(random));
  const queries = Array.from({ length: FACES_PER_IMAGE }, (_, i) =>
    normalised(vectors[Math.floor((i * faces) / FACES_PER_IMAGE)].map((x) => x + (random() * 2 - 1) * QUERY_NOISE)),
  );
  const one = queries.slice(0, 1);
  const index = await VectorIndex.create(DIMENSION);
  await fill(index, vectors);
  const oldIndex = old ? await old.create(DIMENSION) : undefined;
  if (oldIndex) await fill(oldIndex, vectors);
  const source = vectorsAt(vectors);
  const fns: Record<string, () => Promise<unknown>> = { new_1: () => index.search(one, K, source), new_8: () => index.search(queries, K, source) };
  if (oldIndex) {
    // Revisions before the index kept codes only take no VectorSource: (queries, k, limit?).
    const search = oldIndex.search.length >= 4 ? (q: Float32Array[]) => oldIndex.search(q, K, source) : (q: Float32Array[]) => (oldIndex.search as (q: Float32Array[], k: number) => Promise<unknown>)(q, K);
    Object.assign(fns, { baseline_1: () => search(one), baseline_8: () => search(queries) });
  }
  const times = await timeInterleaved(runs, fns);
  const result: SizeResult = {
    faces,
    search_ms: Object.fromEntries(Object.entries(times).map(([name, ms]) => [name, latencyOf(ms)])),
    eight_over_one: { new: round2(median(times.new_8) / median(times.new_1)) },
    index_bytes_per_face: Math.round(index.allocatedBytes / faces),
  };
  if (oldIndex) {
    result.eight_over_one.baseline = round2(median(times.baseline_8) / median(times.baseline_1));
    result.speedup = {
      one_query: round2(median(times.baseline_1) / median(times.new_1)),
      eight_queries: round2(median(times.baseline_8) / median(times.new_8)),
    };
    await oldIndex.close();
  }
  await index.close();
  return result;
}

const started = performance.now();
const old = baseline ? await indexAt(baseline) : undefined;
const bandwidth = await memoryBandwidth();
const results: SizeResult[] = [];
for (const faces of sizes) results.push(await measureSize(faces, old?.VectorIndex));
const largest = results[results.length - 1];
const codesBytes = largest.faces * DIMENSION;
const output = {
  generated_by: 'bench/search.ts',
  machine: machine(),
  kernel_form: (await DotKernel.get()).form,
  /** Each relaxed form's time in the choice at start (dot-kernel.ts timeForms). */
  kernel_form_times_ms: Object.fromEntries(Object.entries((await DotKernel.get()).formTimesMs).map(([form, ms]) => [form, round2(ms)])),
  baseline: old?.commit ?? null,
  runs,
  memory_bandwidth_gb_s: bandwidth,
  sizes: results,
  /** The largest size's codes read at the all-cores bandwidth, against the measured search. */
  at_largest: {
    faces: largest.faces,
    codes_mb: round2(codesBytes / 1e6),
    bandwidth_floor_ms: round2(codesBytes / 1e6 / Math.max(...Object.values(bandwidth))),
    one_query_p50_ms: largest.search_ms.new_1.p50,
    eight_queries_p50_ms: largest.search_ms.new_8.p50,
  },
  duration_s: round2((performance.now() - started) / 1000),
};
console.log(JSON.stringify(output, null, 2));
console.log(`written to ${writeResult('search', output)}`);
process.exit(0);
