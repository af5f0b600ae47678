// Every failure the client reports is a FaceRecogClientError with a code, so callers can branch on
// `error.code` alone; the subclasses carry what is specific to each kind.
import type { ApiErrorCode } from './types.js';

export type ClientErrorCode = 'client_timeout' | 'network_error' | 'aborted' | 'invalid_argument' | 'unexpected_response';

export class FaceRecogClientError extends Error {
  readonly code: ApiErrorCode | ClientErrorCode;

  constructor(code: ApiErrorCode | ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FaceRecogClientError';
    this.code = code;
  }
}

/** The service answered with an error: `{ error: { code, message } }` and an HTTP status. */
export class FaceRecogApiError extends FaceRecogClientError {
  readonly status: number;
  /** From Retry-After (429, 503): seconds after which a retry may succeed. */
  readonly retryAfterS: number | undefined;

  constructor(status: number, code: ApiErrorCode, message: string, retryAfterS?: number) {
    super(code, message);
    this.name = 'FaceRecogApiError';
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

/** No answer within `timeoutMs`. */
export class FaceRecogTimeoutError extends FaceRecogClientError {
  readonly timeoutMs: number;

  constructor(timeoutMs: number) {
    super('client_timeout', `no answer from the face-recog service within ${timeoutMs} ms`);
    this.name = 'FaceRecogTimeoutError';
    this.timeoutMs = timeoutMs;
  }
}

/** The service could not be reached (refused, reset, DNS, TLS). */
export class FaceRecogNetworkError extends FaceRecogClientError {
  constructor(message: string, cause?: unknown) {
    super('network_error', message, { cause });
    this.name = 'FaceRecogNetworkError';
  }
}

/** Retry-After as seconds: either delta-seconds or an HTTP date. */
export function parseRetryAfter(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}
