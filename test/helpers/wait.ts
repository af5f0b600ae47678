// Waiting in tests for something that has no event to wait on (a row synced, a metric counted):
// vitest's vi.waitFor does the polling; this names what is awaited, so that a test that gives up
// says what never happened.
import { vi } from 'vitest';

/** Generous: a condition that holds at all holds well within it, even on a loaded machine. */
const DEFAULT_TIMEOUT_MS = 30_000;
const INTERVAL_MS = 25;

/** Retries `check` until it returns a value other than undefined (an error counts as not yet); fails naming `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  let lastError: unknown;
  try {
    return await vi.waitFor(
      async () => {
        let value: T | undefined;
        try {
          value = await check();
        } catch (error) {
          lastError = error;
          throw error;
        }
        if (value === undefined) throw new Error(`still waiting for ${what}`);
        return value;
      },
      { timeout: timeoutMs, interval: INTERVAL_MS },
    );
  } catch {
    throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
  }
}
