// Memory of this process after a full garbage collection, to tell a leak from a high-water mark.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

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

/** The growth allowed over a baseline: the "within 10% + a few MB". */
export function allowedMb(baselineMb: number, slackMb: number): number {
  return Math.round((baselineMb * 1.1 + slackMb) * 10) / 10;
}
