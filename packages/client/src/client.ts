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
  HealthResponse,
  ImageInput,
  RecognizeResponse,
  VerifyResponse,
} from './types.js';

export interface ClientOptions {
  /** Where the service listens, e.g. `http://face-recog-api:8000`. Default in a browser: the page's origin. */
  baseUrl?: string;
  /** Sent as `Authorization: Bearer <key>` (and as `?api_key=` on the realtime socket). */
  apiKey?: string;
  /** Per call, from sending the request to the end of the answer. Default 30000. */
  timeoutMs?: number;
  /** A fetch implementation; default the global one. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** Cancels the call; it then rejects with code `aborted`. */
  signal?: AbortSignal;
  /** Overrides the client's timeoutMs for this call. */
  timeoutMs?: number;
}

export interface RecognizeOptions extends DetectOptions, CallOptions {
  /** Cosine similarity at or above which a face matches, in [-1, 1]. Default: the service's. */
  threshold?: number;
}

export interface VerifyOptions extends CallOptions {
  threshold?: number;
}

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
        body: body === undefined ? undefined : JSON.stringify(body),
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

  async function post<T>(path: string, body: object, callOptions: CallOptions | undefined): Promise<T> {
    const result = await call('POST', path, body, callOptions);
    if (result.status !== 200) throw apiError(result.status, result.body, result.response);
    if (typeof result.body !== 'object' || result.body === null) {
      throw new FaceRecogClientError('unexpected_response', `POST ${path} answered 200 without a JSON object`);
    }
    return result.body as T;
  }

  return {
    baseUrl,

    async detect(image, { detect_size, score_threshold, nms_threshold, ...callOptions } = {}) {
      const payload = await imageToPayload(image);
      return post<DetectResponse>('/api/v1/detect', defined({ image: payload, detect_size, score_threshold, nms_threshold }), callOptions);
    },

    async extractFeatures(image, { detect_size, score_threshold, nms_threshold, ...callOptions } = {}) {
      const payload = await imageToPayload(image);
      return post<ExtractFeaturesResponse>(
        '/api/v1/extract-features',
        defined({ image: payload, detect_size, score_threshold, nms_threshold }),
        callOptions,
      );
    },

    async recognize(image, { threshold, detect_size, score_threshold, nms_threshold, ...callOptions } = {}) {
      const payload = await imageToPayload(image);
      return post<RecognizeResponse>(
        '/api/v1/recognize',
        defined({ image: payload, threshold, detect_size, score_threshold, nms_threshold }),
        callOptions,
      );
    },

    async verify(image1, image2, { threshold, ...callOptions } = {}) {
      const [first, second] = await Promise.all([imageToPayload(image1, 'image1'), imageToPayload(image2, 'image2')]);
      return post<VerifyResponse>('/api/v1/verify', defined({ image1: first, image2: second, threshold }), callOptions);
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
