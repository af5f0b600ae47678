// Memory of this process after a full garbage collection, to tell a leak from a high-water mark.
// A figure to read, never asserted: a test process on a loaded machine holds what the collector
// and the allocator leave it, which a soak (tools/soak/), not a test, judges over time.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Reliability } from './reliability.js';

// Tests run without --expose-gc; the flag can still be set at run time and gc taken from a fresh context.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** Between the two collections, so that finalizers of native buffers run. */
const FINALIZERS_MS = 50;

export interface MemorySample {
  rssMb: number;
  heapUsedMb: number;
  /** Buffers and other memory held outside the JS heap on behalf of JS objects. */
  externalMb: number;
}

const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** Collects twice (finalizers of native buffers run between), then samples. */
export async function settledMemory(): Promise<MemorySample> {
  for (let i = 0; i < 2; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, FINALIZERS_MS));
  }
  const usage = process.memoryUsage();
  return { rssMb: mb(usage.rss), heapUsedMb: mb(usage.heapUsed), externalMb: mb(usage.external) };
}

/** Samples memory after `what` (e.g. "147 more crafted files and 200 fuzz cases"), and notes it against `baseline` in the reliability page and the test log. */
export async function noteMemory(reliability: Reliability, baseline: MemorySample, what: string): Promise<void> {
  const after = await settledMemory();
  const text =
    `Memory of the test process (service in-process) after GC: RSS ${baseline.rssMb} MB after warm-up, ${after.rssMb} MB after ${what}; ` +
    `JS heap ${baseline.heapUsedMb} -> ${after.heapUsedMb} MB; external ${baseline.externalMb} -> ${after.externalMb} MB.`;
  reliability.note(text);
  console.log(text);
}
