// createClient: the service's HTTP API as typed methods over fetch, with a deadline per call and
// every failure turned into a FaceRecogClientError subclass.
import {
  FaceRecogApiError,
  FaceRecogClientError,
  FaceRecogNetworkError,
  FaceRecogTimeoutError,
  parseRetryAfter,
} from './errors.js';
import { imageToPayload } from './image.js';
import { RealtimeClient, type RealtimeOptions } from './realtime.js';
import type {
  DetectOptions,
  DetectResponse,
  ErrorResponse,
  ExtractFeaturesResponse,
  GalleryImagesOptions,
  GalleryImagesResponse,
  HealthResponse,
  ImageInput,
  RecognizeFields,
  RecognizeResponse,
  VerifyFields,
  VerifyResponse,
} from './types.js';

// Optional fields take `undefined` too, so that callers under `exactOptionalPropertyTypes` can
// pass a value that may be unset, such as `apiKey: process.env.FACE_RECOG_API_KEY`.
export interface ClientOptions {
  /** Where the service listens, e.g. `http://face-recog-api:8000`. Default in a browser: the page's origin. */
  baseUrl?: string | undefined;
  /** Sent as `Authorization: Bearer <key>` (and as `?api_key=` on the realtime socket). Unset or empty: no key. */
  apiKey?: string | undefined;
  /** Per call, from sending the request to the end of the answer. Default 30000. */
  timeoutMs?: number | undefined;
  /** A fetch implementation; default the global one. */
  fetch?: typeof fetch | undefined;
}

export interface CallOptions {
  /** Cancels the call; it then rejects with code `aborted`. */
  signal?: AbortSignal | undefined;
  /** Overrides the client's timeoutMs for this call. */
  timeoutMs?: number | undefined;
}

/** `threshold` (cosine similarity in [-1, 1] at or above which a face matches; default the service's) and detection settings. */
export type RecognizeOptions = RecognizeFields & CallOptions;

export type VerifyOptions = VerifyFields & CallOptions;

export interface FaceRecogClient {
  readonly baseUrl: string;
  /** Faces with boxes, detector scores and landmarks. */
  detect(image: ImageInput, options?: DetectOptions & CallOptions): Promise<DetectResponse>;
  /** The feature vector of the most confident face. */
  extractFeatures(image: ImageInput, options?: DetectOptions & CallOptions): Promise<ExtractFeaturesResponse>;
  /** Every face with its best visitor; the top-level fields describe the most confident face. */
  recognize(image: ImageInput, options?: RecognizeOptions): Promise<RecognizeResponse>;
  /** Whether the most confident faces of two images are the same person. */
  verify(image1: ImageInput, image2: ImageInput, options?: VerifyOptions): Promise<VerifyResponse>;
  /** One page of what became of the stored visitor images (status, reason, face); pass `next` as `after` for the following page. */
  galleryImages(options?: GalleryImagesOptions & CallOptions): Promise<GalleryImagesResponse>;
  /** The service's state; resolves for `starting` and `degraded` (HTTP 503) as well as `ok`. */
  health(options?: CallOptions): Promise<HealthResponse>;
  /** A realtime camera connection to /ws/realtime (not yet connected: call `connect()`). */
  realtime(options?: RealtimeOptions): RealtimeClient;
}

const DEFAULT_TIMEOUT_MS = 30_000;

function defaultBaseUrl(): string {
  const origin = (globalThis as { location?: { origin?: string } }).location?.origin;
  if (origin && origin !== 'null') return origin;
  throw new FaceRecogClientError('invalid_argument', 'baseUrl is required outside a browser, e.g. http://face-recog-api:8000');
}

function normaliseBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new FaceRecogClientError('invalid_argument', `baseUrl ${JSON.stringify(baseUrl)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FaceRecogClientError('invalid_argument', `baseUrl must be http(s), not ${url.protocol}`);
  }
  return url.href.replace(/\/+$/, '');
}

function isErrorResponse(body: unknown): body is ErrorResponse {
  const error = (body as ErrorResponse | null)?.error;
  return typeof error?.code === 'string' && typeof error.message === 'string';
}

function isHealthResponse(body: unknown): body is HealthResponse {
  return typeof (body as HealthResponse | null)?.status === 'string' && Array.isArray((body as HealthResponse).reasons);
}

/** Drops undefined fields so the service applies its defaults. */
function defined<T extends object>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function createClient(options: ClientOptions = {}): FaceRecogClient {
  const baseUrl = normaliseBaseUrl(options.baseUrl ?? defaultBaseUrl());
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;

  async function call(method: 'GET' | 'POST', path: string, body: object | undefined, callOptions: CallOptions = {}): Promise<{ status: number; body: unknown; response: Response }> {
    const limitMs = callOptions.timeoutMs ?? timeoutMs;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, limitMs);
    const onAbort = () => controller.abort();
    callOptions.signal?.addEventListener('abort', onAbort, { once: true });
    if (callOptions.signal?.aborted) controller.abort();
    try {
      const response = await fetchImpl(`${baseUrl}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        signal: controller.signal,
      });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: response.status, body: parsed, response };
    } catch (error) {
      if (timedOut) throw new FaceRecogTimeoutError(limitMs);
      if (controller.signal.aborted) throw new FaceRecogClientError('aborted', `${method} ${path} was aborted`, { cause: error });
      throw new FaceRecogNetworkError(`cannot reach the face-recog service at ${baseUrl}: ${(error as Error).message}`, error);
    } finally {
      clearTimeout(timer);
      callOptions.signal?.removeEventListener('abort', onAbort);
    }
  }

  function apiError(status: number, body: unknown, response: Response): FaceRecogApiError {
    const retryAfterS = parseRetryAfter(response.headers.get('retry-after'));
    if (isErrorResponse(body)) return new FaceRecogApiError(status, body.error.code, body.error.message, retryAfterS);
    return new FaceRecogApiError(status, 'unexpected_response', `HTTP ${status} without a face-recog error body`, retryAfterS);
  }

  /** The 200 answer of a call as a JSON object; anything else is thrown. */
  async function answer<T>(method: 'GET' | 'POST', path: string, body: object | undefined, callOptions: CallOptions): Promise<T> {
    const result = await call(method, path, body, callOptions);
    if (result.status !== 200) throw apiError(result.status, result.body, result.response);
    if (typeof result.body !== 'object' || result.body === null) {
      throw new FaceRecogClientError('unexpected_response', `${method} ${path} answered 200 without a JSON object`);
    }
    return result.body as T;
  }

  return {
    baseUrl,

    async detect(image, { signal, timeoutMs, ...fields } = {}) {
      const payload = await imageToPayload(image);
      return answer<DetectResponse>('POST', '/api/v1/detect', defined({ image: payload, ...fields }), { signal, timeoutMs });
    },

    async extractFeatures(image, { signal, timeoutMs, ...fields } = {}) {
      const payload = await imageToPayload(image);
      return answer<ExtractFeaturesResponse>('POST', '/api/v1/extract-features', defined({ image: payload, ...fields }), { signal, timeoutMs });
    },

    async recognize(image, { signal, timeoutMs, ...fields } = {}) {
      const payload = await imageToPayload(image);
      return answer<RecognizeResponse>('POST', '/api/v1/recognize', defined({ image: payload, ...fields }), { signal, timeoutMs });
    },

    async verify(image1, image2, { signal, timeoutMs, ...fields } = {}) {
      const [first, second] = await Promise.all([imageToPayload(image1, 'image1'), imageToPayload(image2, 'image2')]);
      return answer<VerifyResponse>('POST', '/api/v1/verify', defined({ image1: first, image2: second, ...fields }), { signal, timeoutMs });
    },

    async galleryImages({ signal, timeoutMs, ...query } = {}) {
      const search = new URLSearchParams(Object.entries(defined(query)).map(([name, value]) => [name, String(value)])).toString();
      return answer<GalleryImagesResponse>('GET', `/api/v1/gallery/images${search && `?${search}`}`, undefined, { signal, timeoutMs });
    },

    async health(callOptions) {
      const result = await call('GET', '/health', undefined, callOptions);
      if ((result.status === 200 || result.status === 503) && isHealthResponse(result.body)) return result.body;
      throw apiError(result.status, result.body, result.response);
    },

    realtime(realtimeOptions) {
      return new RealtimeClient({ baseUrl, apiKey: options.apiKey, ...realtimeOptions });
    },
  };
}
