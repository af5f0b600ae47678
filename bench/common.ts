// Shared by the benchmarks: where inputs live, how figures are summarised and where they are written.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { MODELS_DIR, REPO_ROOT, TESTDATA_DIR } from '../test/helpers/paths.js';

export { MODELS_DIR, REPO_ROOT, TESTDATA_DIR };
export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');
/** SFace cannot be downloaded on the benchmark machine; MobileFaceNet has the same input and output sizes. */
export const RECOGNIZER = process.env.RECOGNIZER ?? 'mobilefacenet';
export const QUICK = process.argv.includes('--quick');

/** Runs before the timed ones, unmeasured: the first calls pay for caches, JIT and connections. */
export const WARMUP_RUNS = 3;

/** The burst: this many clients at once, each sending this many recognize requests and ignoring Retry-After. */
export const BURST = { clients: 64, requestsEach: 5 };

/** The `q`-quantile (0 to 1) of `values`: the smallest value with at least that share at or below it. */
export function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const median = (values: number[]): number => percentile(values, 0.5);

/** Median and 95th percentile of some timings, in ms. */
export interface Latency {
  p50: number;
  p95: number;
  n: number;
}

export function latencyOf(times: number[]): Latency {
  return { p50: round2(median(times)), p95: round2(percentile(times, 0.95)), n: times.length };
}

export const round2 = (v: number): number => Math.round(v * 100) / 100;

/** Runs `fn` `warmup` times, then `runs` times, returning each run's milliseconds. */
export async function timeRuns(runs: number, fn: () => Promise<unknown>, warmup = WARMUP_RUNS): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  return times;
}

/**
 * Times several functions in turn (A B A B ...), so that a drift in the machine's speed falls on
 * all of them alike and their ratio holds. Returns each one's milliseconds per run.
 */
export async function timeInterleaved<K extends string>(runs: number, fns: Record<K, () => Promise<unknown>>, warmup = WARMUP_RUNS): Promise<Record<K, number[]>> {
  const names = Object.keys(fns) as K[];
  const times = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < warmup + runs; i++) {
    for (const name of names) {
      const start = performance.now();
      await fns[name]();
      if (i >= warmup) times[name].push(performance.now() - start);
    }
  }
  return times;
}

/** Runs in a row of one piece of work when several are timed in turn, after one unmeasured run. */
export const TURN_BLOCK = 10;

/**
 * `n` runs of each piece of work, in blocks of TURN_BLOCK taken in turn (after WARMUP_RUNS of each).
 * The machine's speed drifts over minutes (it is shared with other work): figures timed minutes
 * apart differed by a third in one run, while figures timed in turn drift together. Each block
 * starts with an unmeasured run, so that no figure carries the cold caches left by the other
 * work: alternating single runs made every one of them slower (a 100-face recognize 22 -> 29-33 ms).
 */
export async function timeInTurn<K extends string>(n: number, work: Record<K, () => Promise<unknown>>): Promise<Record<K, Latency>> {
  const names = Object.keys(work) as K[];
  const times = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<K, number[]>;
  for (const name of names) await timeRuns(0, work[name], WARMUP_RUNS);
  for (let done = 0; done < n; done += TURN_BLOCK) {
    for (const name of names) times[name].push(...(await timeRuns(Math.min(TURN_BLOCK, n - done), work[name], 1)));
  }
  return Object.fromEntries(names.map((name) => [name, latencyOf(times[name])])) as Record<K, Latency>;
}

export function machine() {
  const cpuList = cpus();
  return {
    cpus: cpuList.length,
    model: cpuList[0]?.model ?? 'unknown',
    node: process.version,
    date: new Date().toISOString(),
    /** 1, 5 and 15 minute load averages when the run started: other work on the machine skews every figure. */
    load_average: loadavg().map(round2),
  };
}

export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}
