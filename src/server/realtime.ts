// WebSocket /ws/realtime (alias /ws/realtimetime) for camera feeds. One frame is processed at a
// time per connection; frames that arrive meanwhile wait in a single slot where the newest wins,
// and the ones it replaced are reported as dropped. A camera therefore always gets an answer about
// its latest picture instead of a growing backlog. Every message sent is one of the schemas'
// RealtimeMessage types, each of which carries `faces` and `count`.
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { Config } from '../config.js';
import { FaceRecogError, type ErrorCode } from '../errors.js';
import type { Gallery } from '../gallery/types.js';
import type { ServiceMetrics } from './metrics.js';
import { realtimeDoc } from './openapi.js';
import type { InferencePipeline } from './pipeline.js';
import { recognizeFaces } from './recognition.js';
import { Deadline } from './scheduler.js';
import type { RealtimeMessageBody } from './schemas.js';

export const REALTIME_PATHS = ['/ws/realtime', '/ws/realtimetime'] as const;

/** Close codes (RFC 6455 and the IANA registry). */
const GOING_AWAY = 1001;
const TRY_AGAIN_LATER = 1013;
// Longest a shutdown waits for peers to acknowledge the close before cutting them off.
const CLOSE_GRACE_MS = 3000;
const MAX_ID_LENGTH = 128;
// What messages that are not results say about faces.
const NO_FACES: { faces: []; count: 0 } = { faces: [], count: 0 };

export type FrameId = string | number;

interface Frame {
  id: FrameId;
  image: string;
  receivedAt: number;
}

export interface RealtimeDeps {
  config: Config;
  pipeline: () => InferencePipeline;
  gallery: () => Gallery | null;
  defaultThreshold: () => number;
  metrics: ServiceMetrics;
}

class BadMessage extends Error {
  readonly id?: FrameId;
  constructor(message: string, id?: FrameId) {
    super(message);
    this.id = id;
  }
}

/** A frame message, validated; frames without an id are numbered per connection from 1. */
function parseFrame(data: RawData, sequence: number): Frame {
  let message: unknown;
  try {
    message = JSON.parse(data.toString());
  } catch {
    throw new BadMessage('message is not valid JSON; send {"type":"frame","image":"<base64>","id":1}');
  }
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    throw new BadMessage('message must be a JSON object like {"type":"frame","image":"<base64>","id":1}');
  }
  const { type, image, id } = message as Record<string, unknown>;
  const validId = (typeof id === 'string' && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isFinite(id));
  if (id !== undefined && id !== null && !validId) {
    throw new BadMessage(`id must be a number or a string of at most ${MAX_ID_LENGTH} characters`);
  }
  const frameId = validId ? (id as FrameId) : sequence;
  if (type !== 'frame') {
    const shown = typeof type === 'string' ? `'${type.slice(0, 40)}'` : 'missing';
    throw new BadMessage(`message type is ${shown}; the only type accepted is "frame"`, frameId);
  }
  if (typeof image !== 'string' || image.length === 0) throw new BadMessage('frame needs "image": a base64 string or data URL', frameId);
  return { id: frameId, image, receivedAt: performance.now() };
}

class RealtimeConnection {
  alive = true;
  private readonly socket: WebSocket;
  private readonly deps: RealtimeDeps;
  private readonly log: FastifyBaseLogger;
  private busy = false;
  private waiting: Frame | null = null;
  private dropped: FrameId[] = [];
  private sequence = 0;
  private accepting = true;
  private idleWaiters: (() => void)[] = [];

  constructor(socket: WebSocket, deps: RealtimeDeps, log: FastifyBaseLogger) {
    this.socket = socket;
    this.deps = deps;
    this.log = log;
    socket.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    socket.on('pong', () => {
      this.alive = true;
    });
  }

  /** Stops taking frames; resolves once the frame in progress (if any) is answered and the waiting one reported dropped. */
  async finish(): Promise<void> {
    this.accepting = false;
    if (this.waiting) {
      this.dropped.push(this.waiting.id);
      this.deps.metrics.countFrames('dropped');
      this.waiting = null;
    }
    if (this.busy) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.flushDropped();
  }

  heartbeat(): void {
    if (!this.alive) {
      this.log.info('websocket peer missed a heartbeat; closing');
      this.socket.terminate();
      return;
    }
    this.alive = false;
    this.socket.ping();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.sequence++;
    if (isBinary) {
      this.deps.metrics.countFrames('error');
      this.sendError('invalid_request', 'binary messages are not accepted; send JSON text: {"type":"frame","image":"<base64>"}');
      return;
    }
    if (!this.accepting) {
      this.sendError('not_ready', 'the service is shutting down; reconnect shortly');
      return;
    }
    let frame: Frame;
    try {
      frame = parseFrame(data, this.sequence);
    } catch (error) {
      const bad = error as BadMessage;
      this.deps.metrics.countFrames('error');
      this.sendError('invalid_request', bad.message, bad.id);
      return;
    }
    if (this.busy) {
      if (this.waiting) {
        this.dropped.push(this.waiting.id);
        this.deps.metrics.countFrames('dropped');
      }
      this.waiting = frame;
      return;
    }
    void this.processFrom(frame);
  }

  private async processFrom(first: Frame): Promise<void> {
    this.busy = true;
    try {
      for (let frame: Frame | null = first; frame; frame = this.takeWaiting()) {
        this.flushDropped();
        await this.process(frame);
      }
    } finally {
      this.busy = false;
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private takeWaiting(): Frame | null {
    const frame = this.waiting;
    this.waiting = null;
    return frame;
  }

  private flushDropped(): void {
    if (this.dropped.length === 0) return;
    this.send({ type: 'dropped', ids: this.dropped, ...NO_FACES });
    this.dropped = [];
  }

  private async process(frame: Frame): Promise<void> {
    const { config, gallery, defaultThreshold, metrics } = this.deps;
    try {
      const pipeline = this.deps.pipeline();
      const deadline = new Deadline(config.inference.timeoutMs);
      const analysis = await pipeline.analyze(frame.image, {}, config.limits.maxFaces, deadline);
      const faces = await recognizeFaces(analysis, gallery(), defaultThreshold(), (search) => pipeline.timeSearch(search));
      metrics.countFrames('processed');
      this.send({
        type: 'results',
        id: frame.id,
        faces,
        count: faces.length,
        latency_ms: Math.round((performance.now() - frame.receivedAt) * 10) / 10,
      });
    } catch (error) {
      metrics.countFrames('error');
      if (error instanceof FaceRecogError) {
        this.sendError(error.code, error.message, frame.id);
      } else {
        this.log.error({ err: error }, 'websocket frame failed');
        this.sendError('internal', 'internal error; the service logged the details', frame.id);
      }
    }
  }

  private sendError(code: ErrorCode, message: string, id?: FrameId): void {
    this.send({ type: 'error', code, message, ...(id === undefined ? {} : { id }), ...NO_FACES });
  }

  private send(message: RealtimeMessageBody): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(message));
  }
}

/** Every open realtime connection: admission, heartbeats and a graceful shutdown. */
export class RealtimeHub {
  private readonly deps: RealtimeDeps;
  private readonly connections = new Map<WebSocket, RealtimeConnection>();
  private heartbeatTimer: NodeJS.Timeout | null = null;

  constructor(deps: RealtimeDeps) {
    this.deps = deps;
  }

  get size(): number {
    return this.connections.size;
  }

  get full(): boolean {
    return this.connections.size >= this.deps.config.ws.maxConnections;
  }

  accept(socket: WebSocket, request: FastifyRequest): void {
    if (this.full) {
      socket.close(TRY_AGAIN_LATER, 'too many connections');
      return;
    }
    this.connections.set(socket, new RealtimeConnection(socket, this.deps, request.log));
    this.deps.metrics.connectionOpened();
    socket.on('close', () => {
      this.connections.delete(socket);
      this.deps.metrics.connectionClosed();
    });
    this.heartbeatTimer ??= setInterval(() => this.heartbeat(), this.deps.config.ws.heartbeatMs).unref();
  }

  /** Answers the frames in progress, then closes every connection with 1001 (going away). */
  async shutdown(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const open = [...this.connections.entries()];
    await Promise.all(
      open.map(async ([socket, connection]) => {
        await connection.finish();
        const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        socket.close(GOING_AWAY, 'server shutting down');
        const cutoff = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
        await closed;
        clearTimeout(cutoff);
      }),
    );
  }

  private heartbeat(): void {
    for (const connection of this.connections.values()) connection.heartbeat();
  }
}

export async function realtimeRoutes(app: FastifyInstance, { hub }: { hub: RealtimeHub }): Promise<void> {
  for (const path of REALTIME_PATHS) {
    // wsHandler rather than `websocket: true`, which would hide the route from the OpenAPI document;
    // a GET without the upgrade gets a 400 saying what the route is for.
    app.route({
      method: 'GET',
      url: path,
      schema: realtimeDoc(path !== REALTIME_PATHS[0]),
      onRequest: async () => {
        if (hub.full) throw new FaceRecogError('overloaded', 'too many WebSocket connections; retry later', { retryAfterS: 5 });
      },
      handler: async () => {
        throw new FaceRecogError('invalid_request', `${path} is a WebSocket: connect with a WebSocket client (Upgrade: websocket)`);
      },
      wsHandler: (socket, request) => hub.accept(socket, request),
    });
  }
}
