// The realtime camera helper over /ws/realtime. A camera produces frames faster than recognition
// answers, so at most one frame is in flight and only the newest waiting frame is kept: results
// always describe a recent picture and nothing piles up. The connection comes back by itself with
// exponential backoff and jitter after the service restarts or the network drops. Each face of a
// result carries its track; a visitor's arrival comes as an `event`.
import { Emitter } from './emitter.js';
import { FaceRecogApiError, FaceRecogClientError, FaceRecogNetworkError } from './errors.js';
import { bytesToBase64 } from './image.js';
import type { FrameId, RealtimeEvent, RealtimeMessage, RealtimeResults } from './types.js';

/** What the helper needs of a WebSocket: the browser's, Node 22's global one and the `ws` package all fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'message' | 'close' | 'error', listener: (event: any) => void): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ReconnectOptions {
  /** Delay before the first retry. Default 500. */
  initialDelayMs?: number | undefined;
  /** Upper bound of the delay. Default 15000. */
  maxDelayMs?: number | undefined;
}

export interface RealtimeOptions {
  /** The WebSocket class. Default: the global one (browsers), else the `ws` package (Node 20). */
  WebSocket?: WebSocketConstructor | undefined;
  /** Reconnect after the connection is lost; `false` to stay closed. Default on. */
  reconnect?: ReconnectOptions | false | undefined;
  /** A frame unanswered for this long means a dead connection: it is closed and reopened. Default 15000. */
  frameTimeoutMs?: number | undefined;
  /** Default `/ws/realtime`. */
  path?: string | undefined;
  /**
   * Names the camera (`?camera=`, 1 to 64 printable characters): events carry it, and a visitor
   * is announced once per visit per camera, whichever connection of it sees them. Unset: the
   * connection is a camera of its own.
   */
  camera?: string | undefined;
}

export interface RealtimeResultsEvent extends RealtimeResults {
  /** From sending the frame to receiving its results, as this client measured it; null if not the frame in flight. */
  roundTripMs: number | null;
}

export interface RealtimeDroppedEvent {
  ids: FrameId[];
  /** `replaced`: a newer frame took its place before it was sent; `service`: the service skipped it; `disconnected`: the connection closed before it was answered. */
  reason: 'replaced' | 'service' | 'disconnected';
}

export interface RealtimeErrorEvent {
  error: FaceRecogClientError;
  /** The frame the error is about, when known. */
  id?: FrameId | undefined;
}

export interface RealtimeCloseEvent {
  code: number;
  reason: string;
  /** When the next attempt starts; null when the helper stays closed. */
  reconnectInMs: number | null;
}

export interface RealtimeEvents {
  open: { url: string };
  results: RealtimeResultsEvent;
  /** A visitor arrived: their face's track was named (sent before that frame's results). */
  event: RealtimeEvent;
  dropped: RealtimeDroppedEvent;
  error: RealtimeErrorEvent;
  close: RealtimeCloseEvent;
}

/** An image for a frame: base64 text, a data URL (e.g. canvas.toDataURL('image/jpeg')) or bytes. */
export type FrameImage = string | Uint8Array | ArrayBuffer;

const OPEN = 1;
const DEFAULT_PATH = '/ws/realtime';
const DEFAULT_FRAME_TIMEOUT_MS = 15_000;
const DEFAULT_INITIAL_DELAY_MS = 500;
const DEFAULT_MAX_DELAY_MS = 15_000;
// Application close code (4000-4999) for "the service stopped answering".
const CLOSE_NO_ANSWER = 4008;

async function resolveWebSocket(given: WebSocketConstructor | undefined): Promise<WebSocketConstructor> {
  if (given) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  // Node 20 has no global WebSocket. The specifier is a variable so that browser bundlers do not
  // try to include the Node-only package.
  const specifier = 'ws';
  try {
    const module = (await import(specifier)) as { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor };
    const constructor = module.WebSocket ?? module.default;
    if (constructor) return constructor;
  } catch {
    // Reported below.
  }
  throw new FaceRecogClientError('invalid_argument', 'no WebSocket available: install the `ws` package or pass the WebSocket option');
}

/** The HTTP status of a refused handshake, as the `ws` package reports it (browsers do not say). */
function refusedStatus(message: string | undefined): number | null {
  const match = message && /Unexpected server response: (\d{3})/.exec(message);
  return match ? Number(match[1]) : null;
}

export class RealtimeClient extends Emitter<RealtimeEvents> {
  readonly url: string;
  private readonly options: RealtimeOptions;
  private socket: WebSocketLike | null = null;
  private inFlight: { id: FrameId; sentAt: number; timer: ReturnType<typeof setTimeout> } | null = null;
  private pending: { id: FrameId; image: string } | null = null;
  private nextId = 1;
  private attempts = 0;
  private stopped = true;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(options: RealtimeOptions & { baseUrl: string; apiKey?: string | undefined }) {
    super();
    this.options = options;
    const url = new URL(options.path ?? DEFAULT_PATH, options.baseUrl.replace(/\/?$/, '/'));
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    if (options.camera !== undefined) url.searchParams.set('camera', options.camera);
    if (options.apiKey) url.searchParams.set('api_key', options.apiKey);
    this.url = url.href;
  }

  /** The socket is open and frames go out. */
  get connected(): boolean {
    return this.socket?.readyState === OPEN;
  }

  /** Opens the connection (and keeps it open until `close()`). Listen for `open`, or await `once('open')`. */
  connect(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.open();
  }

  /**
   * Queues a frame and returns its id. It goes out as soon as no other frame is in flight; a frame
   * still waiting when a newer one arrives is dropped (reason `replaced`).
   */
  send(image: FrameImage, id?: FrameId): FrameId {
    const frameId = id ?? this.nextId++;
    const payload = typeof image === 'string' ? image : bytesToBase64(image instanceof ArrayBuffer ? new Uint8Array(image) : image);
    if (payload.length === 0) throw new FaceRecogClientError('invalid_argument', 'frame image is empty');
    const replaced = this.pending;
    this.pending = { id: frameId, image: payload };
    if (replaced) this.emit('dropped', { ids: [replaced.id], reason: 'replaced' });
    this.pump();
    return frameId;
  }

  /** Closes for good: no reconnect; the waiting frame is discarded. */
  close(): void {
    this.stopped = true;
    this.pending = null;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.socket?.close(1000, 'client closed');
  }

  private async open(): Promise<void> {
    let Socket: WebSocketConstructor;
    try {
      Socket = await resolveWebSocket(this.options.WebSocket);
    } catch (error) {
      this.stopped = true;
      this.emit('error', { error: error as FaceRecogClientError });
      return;
    }
    if (this.stopped) return;
    const socket = new Socket(this.url);
    this.socket = socket;
    let failure: string | undefined;
    let opened = false;
    socket.addEventListener('open', () => {
      opened = true;
      this.attempts = 0;
      this.emit('open', { url: this.url.replace(/api_key=[^&]*/, 'api_key=***') });
      this.pump();
    });
    socket.addEventListener('message', (event: { data: unknown }) => this.onMessage(event.data));
    socket.addEventListener('error', (event: { message?: string }) => {
      failure = event.message;
    });
    socket.addEventListener('close', (event: { code: number; reason: string }) => void this.onClose(socket, event, failure, opened));
  }

  /**
   * Why a handshake failed, when the service refused it: the `ws` package says so in its error;
   * browsers do not, so the same URL is asked over plain HTTP, where the key check answers 401.
   */
  private async refusedHandshake(failure: string | undefined): Promise<number | null> {
    const status = refusedStatus(failure);
    if (status !== null) return status;
    try {
      const response = await fetch(this.url.replace(/^ws/, 'http'), { headers: { accept: 'application/json' } });
      return response.status === 401 ? 401 : null;
    } catch {
      return null;
    }
  }

  private async onClose(socket: WebSocketLike, event: { code: number; reason: string }, failure: string | undefined, opened: boolean): Promise<void> {
    if (this.socket !== socket) return;
    this.socket = null;
    const lost = this.inFlight;
    if (lost) {
      clearTimeout(lost.timer);
      this.inFlight = null;
      this.emit('dropped', { ids: [lost.id], reason: 'disconnected' });
    }
    const status = opened || this.stopped ? null : await this.refusedHandshake(failure);
    // close() then connect() while the service was being asked: the new connection carries on.
    if (this.socket) return;
    if (status === 401) {
      // Retrying with the same key cannot succeed.
      this.stopped = true;
      this.emit('error', { error: new FaceRecogApiError(401, 'unauthorized', 'the service refused the WebSocket: the API key is missing or wrong') });
    } else if (failure !== undefined && !this.stopped) {
      const detail = status === null ? failure : `handshake answered HTTP ${status}`;
      this.emit('error', { error: new FaceRecogNetworkError(`realtime connection to ${this.url.split('?')[0]} failed: ${detail}`) });
    }
    const delay = this.stopped || this.options.reconnect === false ? null : this.nextDelay();
    this.emit('close', { code: event.code, reason: event.reason, reconnectInMs: delay });
    if (delay !== null) this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delay);
  }

  /** Exponential backoff with equal jitter: half the delay is fixed, half is random. */
  private nextDelay(): number {
    const { initialDelayMs = DEFAULT_INITIAL_DELAY_MS, maxDelayMs = DEFAULT_MAX_DELAY_MS } = this.options.reconnect || {};
    const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** this.attempts);
    this.attempts++;
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  private onMessage(data: unknown): void {
    let message: RealtimeMessage;
    try {
      message = JSON.parse(String(data)) as RealtimeMessage;
    } catch {
      this.emit('error', { error: new FaceRecogClientError('unexpected_response', 'the service sent a message that is not JSON') });
      return;
    }
    switch (message.type) {
      case 'results': {
        const roundTripMs = this.inFlight?.id === message.id ? Date.now() - this.inFlight.sentAt : null;
        if (roundTripMs !== null) this.settle();
        this.emit('results', { ...message, roundTripMs });
        break;
      }
      case 'event':
        // Not an answer: the frame's results follow.
        this.emit('event', message);
        break;
      case 'dropped':
        if (this.inFlight && message.ids.includes(this.inFlight.id)) this.settle();
        this.emit('dropped', { ids: message.ids, reason: 'service' });
        break;
      case 'error':
        // An error without an id is about the connection (e.g. shutting down): the frame in flight will not be answered either.
        if (this.inFlight && (message.id === undefined || message.id === this.inFlight.id)) this.settle();
        this.emit('error', { error: new FaceRecogClientError(message.code, message.message), id: message.id });
        break;
      default:
        this.emit('error', { error: new FaceRecogClientError('unexpected_response', 'the service sent a message of an unknown type') });
    }
  }

  /** The frame in flight is answered: the next one may go. */
  private settle(): void {
    if (this.inFlight) clearTimeout(this.inFlight.timer);
    this.inFlight = null;
    this.pump();
  }

  private pump(): void {
    const socket = this.socket;
    if (this.inFlight || !this.pending || socket?.readyState !== OPEN) return;
    const frame = this.pending;
    this.pending = null;
    const timeoutMs = this.options.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    const timer = setTimeout(() => socket.close(CLOSE_NO_ANSWER, 'no answer to a frame'), timeoutMs);
    this.inFlight = { id: frame.id, sentAt: Date.now(), timer };
    socket.send(JSON.stringify({ type: 'frame', image: frame.image, id: frame.id }));
  }
}
