// A caller's deadline inside the gallery: the server hands a search its request's Deadline, and
// the index's kernel run and the database's confirmation take their time limits from what is left.
import { FaceRecogError } from '../errors.js';

/** When the caller stops waiting (the server's request Deadline is one). */
export interface TimeLimit {
  /** Milliseconds left; zero or less once passed. */
  readonly remainingMs: number;
}

/** The `timeout` error of a search that ran out of time during `stage`. */
export function limitExceeded(stage: string): FaceRecogError {
  return new FaceRecogError('timeout', `the request did not finish within its deadline (${stage}); the service is busy, retry later`, {
    retryAfterS: 1,
  });
}

/** Whole milliseconds left for `stage`, at least 1; throws `timeout` once the limit has passed. */
export function timeLeft(limit: TimeLimit, stage: string): number {
  const left = Math.floor(limit.remainingMs);
  if (left <= 0) throw limitExceeded(stage);
  return left;
}
