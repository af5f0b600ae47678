// Errors are values: a stable machine-readable code, a message a person understands, and the
// HTTP status the server maps it to. Engine and gallery throw these; only the server renders them.

export const ERROR_STATUS = {
  invalid_request: 400,
  invalid_image: 400,
  unauthorized: 401,
  not_found: 404,
  payload_too_large: 413,
  image_too_large: 413,
  too_many_faces: 422,
  rate_limited: 429,
  overloaded: 503,
  timeout: 503,
  gallery_unavailable: 503,
  not_ready: 503,
  model_unavailable: 500,
  model_checksum_mismatch: 500,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class FaceRecogError extends Error {
  readonly code: ErrorCode;
  /** Seconds after which a retry may succeed (overload, unavailability). */
  readonly retryAfterS?: number;

  constructor(code: ErrorCode, message: string, options?: { retryAfterS?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FaceRecogError';
    this.code = code;
    this.retryAfterS = options?.retryAfterS;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export function isFaceRecogError(e: unknown): e is FaceRecogError {
  return e instanceof FaceRecogError;
}

/** A request's deadline passed (while it waited, or between two stages of its work). */
export function deadlinePassed(): FaceRecogError {
  return new FaceRecogError('timeout', 'the request did not finish within its deadline; the service is busy, retry later', { retryAfterS: 1 });
}
