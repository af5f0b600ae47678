// Memory of this process after a full garbage collection, to tell a leak from a high-water mark.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { expect } from 'vitest';
import type { Reliability } from './reliability.js';

// Tests run without --expose-gc; the flag can still be set at run time and gc taken from a fresh context.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

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
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const usage = process.memoryUsage();
  return { rssMb: mb(usage.rss), heapUsedMb: mb(usage.heapUsed), externalMb: mb(usage.external) };
}

// Memory may grow this much over the warm-up baseline (plus 10%) before it counts as a leak.
const RSS_SLACK_MB = 32;
const HEAP_SLACK_MB = 8;

/** The growth allowed over a baseline: the "within 10% + a few MB". */
function allowedMb(baselineMb: number, slackMb: number): number {
  return Math.round((baselineMb * 1.1 + slackMb) * 10) / 10;
}

/**
 * Samples memory after `what` (e.g. "147 more crafted files and 200 fuzz cases"), notes it against
 * `baseline`, records `caseName` in the reliability table, and expects RSS and the JS heap back
 * within 10% + slack of the baseline.
 */
export async function expectMemoryBack(reliability: Reliability, baseline: MemorySample, caseName: string, what: string): Promise<void> {
  const after = await settledMemory();
  const rssLimit = allowedMb(baseline.rssMb, RSS_SLACK_MB);
  const heapLimit = allowedMb(baseline.heapUsedMb, HEAP_SLACK_MB);
  reliability.note(
    `Memory of the test process (service in-process) after GC: RSS ${baseline.rssMb} MB after warm-up, ${after.rssMb} MB after ${what} (limit ${rssLimit} MB); JS heap ${baseline.heapUsedMb} -> ${after.heapUsedMb} MB (limit ${heapLimit} MB).`,
  );
  const outcome = after.rssMb <= rssLimit && after.heapUsedMb <= heapLimit ? 'back within 10% + slack of the warm-up baseline' : 'GREW';
  reliability.record(caseName, outcome);
  expect(after.rssMb).toBeLessThanOrEqual(rssLimit);
  expect(after.heapUsedMb).toBeLessThanOrEqual(heapLimit);
}
