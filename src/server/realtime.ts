// WebSocket /ws/realtime (alias /ws/realtimetime) for camera feeds, as one plugin: the socket
// transport (@fastify/websocket), the refusal of handshakes on other paths, the routes, heartbeats
// and a graceful shutdown.
//
// One frame is processed at a time per connection; frames that arrive meanwhile wait in a single
// slot where the newest wins, and the ones it replaced are reported as dropped. A camera therefore
// always gets an answer about its latest picture instead of a growing backlog. A connection that
// closes takes its frames with it: the waiting one is not processed, the one in progress is neither
// searched for nor answered. Every message sent is one of the schemas' RealtimeMessage types, each
// of which carries `faces` and `count`; frames are checked against RealtimeFrame. Each connection's
// recognised faces pass through its stage (the service's is tracking: tracking/stage.ts), which
// gives them their track ids and may send messages of its own (visitor events).
import websocket from '@fastify/websocket';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Static, TStringOptions } from 'typebox';
import { Compile } from 'typebox/compile';
import type { RawData, WebSocket } from 'ws';
import { FaceRecogError, type ErrorCode } from '../errors.js';
import type { Match } from '../gallery/types.js';
import { answerFor } from './error-handler.js';
import { realtimeDoc } from './openapi.js';
import { defaultThreshold, readyPipeline, type ServiceParts } from './parts.js';
import type { Analysis } from './pipeline.js';
import { findMatches, recognizedFaces } from './recognition.js';
import { Deadline } from './scheduler.js';
import { MAX_CAMERA_NAME, RealtimeFrame, RealtimeQuery, type RealtimeFaceBody, type RealtimeMessageBody, type RecognizedFaceBody } from './schemas.js';

export const REALTIME_PATHS = ['/ws/realtime', '/ws/realtimetime'] as const;

/** Close codes (RFC 6455 and the IANA registry). */
const GOING_AWAY = 1001;
const TRY_AGAIN_LATER = 1013;
// Longest a shutdown waits for peers to acknowledge the close before cutting them off.
const CLOSE_GRACE_MS = 3000;
// What messages that are not results say about faces.
const NO_FACES: { faces: []; count: 0 } = { faces: [], count: 0 };
const EXAMPLE = '{"type":"frame","image":"<base64>","id":1}';
// As RealtimeFrame says: a frame id is a number, or a string of at most this many characters.
const FRAME_ID_TEXT: TStringOptions = { ...RealtimeFrame.properties.id.anyOf[0] };

export type FrameId = string | number;

/** A frame as a connection's stages see it. */
export interface FrameInfo {
  id: FrameId;
  /** performance.now() when the frame arrived. */
  receivedAt: number;
}

interface Frame extends FrameInfo {
  image: string;
}

/** A recognised frame as a stage sees it: what the faces were judged from. */
export interface RecognizedFrame extends FrameInfo {
  /** Every face (most confident first) and the embeddings of the first MAX_FACES. */
  analysis: Analysis;
  /** The best visitor of each embedded face (null: the gallery is empty). */
  matches: (Match | null)[];
  /** The match threshold the faces were judged at. */
  threshold: number;
}

/**
 * Per-connection work on each frame's recognised faces before they are sent: face tracking (a
 * track id per face, identity over the track, visitor events). Opened when a socket is accepted,
 * closed when it closes. `results` returns the faces the frame's `results` message carries; it may
 * send messages of its own first (through the `send` it was opened with).
 */
export interface ConnectionStage {
  results(faces: RecognizedFaceBody[], frame: RecognizedFrame): RealtimeFaceBody[] | Promise<RealtimeFaceBody[]>;
  close?(): void;
}

export interface StageConnection {
  request: FastifyRequest;
  /** The connection's `?camera=` (checked); null when it gave none. */
  camera: string | null;
  send: (message: RealtimeMessageBody) => void;
}

export type OpenConnectionStage = (connection: StageConnection) => ConnectionStage;

export interface RealtimeOptions {
  parts: ServiceParts;
  openStage: OpenConnectionStage;
}

const checkFrame = Compile(RealtimeFrame);
const checkCamera = Compile(RealtimeQuery.properties.camera);

/** A handshake whose `?camera=` is not a camera name is refused with a 400 saying what one may be. */
function checkCameraQuery(request: FastifyRequest): void {
  const { camera } = request.query as { camera?: unknown };
  if (camera !== undefined && !checkCamera.Check(camera)) {
    throw new FaceRecogError('invalid_request', `camera must be one name of 1 to ${MAX_CAMERA_NAME} printable characters, e.g. ?camera=front-desk`);
  }
}

class BadMessage extends Error {
  readonly id?: FrameId;
  constructor(message: string, id?: FrameId) {
    super(message);
    this.id = id;
  }
}

/** A frame message, checked against RealtimeFrame; frames without an id are numbered per connection from 1. */
function parseFrame(data: RawData, sequence: number): Frame {
  let message: unknown;
  try {
    message = JSON.parse(data.toString());
  } catch {
    throw new BadMessage(`message is not valid JSON; send ${EXAMPLE}`);
  }
  // A null id counts as none: clients in languages whose "nothing" is null send it.
  if (typeof message === 'object' && message !== null && (message as { id?: unknown }).id === null) delete (message as { id?: unknown }).id;
  if (!checkFrame.Check(message)) throw badFrame(message, sequence);
  return { id: message.id ?? sequence, image: message.image, receivedAt: performance.now() };
}

/** Why a message is not a frame, said of the field at fault; the id first, since an answer echoes it. */
function badFrame(message: unknown, sequence: number): BadMessage {
  const wrong = new Set(
    checkFrame.Errors(message).flatMap((error) =>
      error.keyword === 'required' ? (error.params as { requiredProperties: string[] }).requiredProperties : [error.instancePath.slice(1)],
    ),
  );
  if (wrong.has('')) return new BadMessage(`message must be a JSON object like ${EXAMPLE}`);
  if (wrong.has('id')) return new BadMessage(`id must be a number or a string of at most ${FRAME_ID_TEXT.maxLength} characters`);
  const { type, id = sequence } = message as { type?: unknown; id?: FrameId };
  if (wrong.has('type')) {
    const shown = typeof type === 'string' ? `'${type.slice(0, 40)}'` : 'missing';
    return new BadMessage(`message type is ${shown}; the only type accepted is "frame"`, id);
  }
  return new BadMessage('frame needs "image": a base64 string or data URL', id);
}

class RealtimeConnection {
  alive = true;
  private busy = false;
  private waiting: Frame | null = null;
  private dropped: FrameId[] = [];
  private sequence = 0;
  private accepting = true;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private readonly log: FastifyBaseLogger;
  private readonly stage: ConnectionStage;

  constructor(
    private readonly socket: WebSocket,
    private readonly parts: ServiceParts,
    request: FastifyRequest,
    openStage: OpenConnectionStage,
  ) {
    this.log = request.log;
    // Checked by the route before the upgrade.
    const { camera = null } = request.query as Static<typeof RealtimeQuery>;
    this.stage = openStage({ request, camera, send: (message) => this.send(message) });
    socket.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    socket.on('pong', () => {
      this.alive = true;
    });
    socket.on('close', () => this.onClose());
  }

  /**
   * Stops taking frames (those that arrive from now on are reported dropped at once); resolves
   * once the frame in progress (if any) is answered and the waiting one reported dropped.
   */
  async finish(): Promise<void> {
    this.accepting = false;
    if (this.waiting) {
      this.dropped.push(this.waiting.id);
      this.parts.metrics.countFrames('dropped');
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

  /** Nobody is left to answer: the waiting frame is cancelled, the one in progress will be (see process). */
  private onClose(): void {
    this.closed = true;
    if (this.waiting) {
      this.parts.metrics.countFrames('cancelled');
      this.waiting = null;
    }
    this.dropped = [];
    this.stage.close?.();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    this.sequence++;
    if (isBinary) {
      this.parts.metrics.countFrames('error');
      this.sendError('invalid_request', 'binary messages are not accepted; send JSON text: {"type":"frame","image":"<base64>"}');
      return;
    }
    let frame: Frame;
    try {
      frame = parseFrame(data, this.sequence);
    } catch (error) {
      const bad = error as BadMessage;
      this.parts.metrics.countFrames('error');
      this.sendError('invalid_request', bad.message, bad.id);
      return;
    }
    if (!this.accepting) {
      // Shutting down: a frame that arrives now is skipped and said so, like the one that waited.
      this.parts.metrics.countFrames('dropped');
      this.send({ type: 'dropped', ids: [frame.id], ...NO_FACES });
      return;
    }
    if (this.busy) {
      if (this.waiting) {
        this.dropped.push(this.waiting.id);
        this.parts.metrics.countFrames('dropped');
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

  /** Recognises the frame, the whole of it within REQUEST_TIMEOUT_MS, and answers it, unless the socket closed meanwhile. */
  private async process(frame: Frame): Promise<void> {
    const { parts } = this;
    try {
      const pipeline = readyPipeline(parts);
      const deadline = new Deadline(parts.config.inference.timeoutMs);
      const analysis = await pipeline.analyze(frame.image, {}, parts.config.limits.maxFaces, deadline);
      if (this.closed) return this.cancelled();
      const threshold = defaultThreshold(parts, pipeline);
      const matches = await findMatches(pipeline, parts.gallery, analysis, deadline);
      const recognized = recognizedFaces(analysis, matches, threshold);
      const faces = await this.stage.results(recognized, { id: frame.id, receivedAt: frame.receivedAt, analysis, matches, threshold });
      if (this.closed) return this.cancelled();
      parts.metrics.countFrames('processed');
      const latencyMs = Math.round((performance.now() - frame.receivedAt) * 10) / 10;
      this.send({ type: 'results', id: frame.id, faces, count: faces.length, latency_ms: latencyMs });
    } catch (error) {
      if (this.closed) return this.cancelled();
      parts.metrics.countFrames('error');
      const answer = answerFor(error, this.log, 'websocket frame failed');
      this.sendError(answer.code, answer.message, frame.id);
    }
  }

  private cancelled(): void {
    this.parts.metrics.countFrames('cancelled');
  }

  private sendError(code: ErrorCode, message: string, id?: FrameId): void {
    this.send({ type: 'error', code, message, ...(id === undefined ? {} : { id }), ...NO_FACES });
  }

  private send(message: RealtimeMessageBody): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(message));
  }
}

/** Every open realtime connection: admission, heartbeats and a graceful shutdown. */
class RealtimeHub {
  private readonly connections = new Map<WebSocket, RealtimeConnection>();
  private heartbeatTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: RealtimeOptions) {}

  get full(): boolean {
    return this.connections.size >= this.options.parts.config.ws.maxConnections;
  }

  accept(socket: WebSocket, request: FastifyRequest): void {
    if (this.full) {
      socket.close(TRY_AGAIN_LATER, 'too many connections');
      return;
    }
    const { parts, openStage } = this.options;
    this.connections.set(socket, new RealtimeConnection(socket, parts, request, openStage));
    parts.metrics.connectionOpened();
    socket.on('close', () => {
      this.connections.delete(socket);
      parts.metrics.connectionClosed();
    });
    this.heartbeatTimer ??= setInterval(() => this.heartbeat(), parts.config.ws.heartbeatMs).unref();
  }

  /** Answers the frames in progress, then closes every connection with 1001 (going away). */
  async shutdown(): Promise<void> {
    this.stopHeartbeat();
    await Promise.all(
      [...this.connections.entries()].map(async ([socket, connection]) => {
        await connection.finish();
        const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        socket.close(GOING_AWAY, 'server shutting down');
        const cutoff = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
        await closed;
        clearTimeout(cutoff);
      }),
    );
  }

  stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private heartbeat(): void {
    for (const connection of this.connections.values()) connection.heartbeat();
  }
}

async function realtimePlugin(app: FastifyInstance, options: RealtimeOptions): Promise<void> {
  const hub = new RealtimeHub(options);
  await app.register(websocket, {
    options: { maxPayload: options.parts.config.ws.maxMessageBytes },
    preClose: () => hub.shutdown(),
  });
  app.addHook('onClose', async () => hub.stopHeartbeat());
  // @fastify/websocket upgrades a handshake on any GET route (and closes it at once where no socket
  // handler is): only the realtime paths take one, everywhere else the handshake is refused.
  app.addHook('onRequest', async (request) => {
    const upgrade = request.headers.upgrade?.toLowerCase() === 'websocket';
    if (upgrade && !(REALTIME_PATHS as readonly string[]).includes(request.routeOptions.url ?? '')) {
      throw new FaceRecogError('not_found', `WebSocket connections are accepted at ${REALTIME_PATHS[0]} only`);
    }
  });
  for (const path of REALTIME_PATHS) {
    // wsHandler rather than `websocket: true`, which would hide the route from the OpenAPI document;
    // a GET without the upgrade gets a 400 saying what the route is for.
    app.route({
      method: 'GET',
      url: path,
      schema: realtimeDoc(path !== REALTIME_PATHS[0]),
      onRequest: async (request) => {
        checkCameraQuery(request);
        if (hub.full) throw new FaceRecogError('overloaded', 'too many WebSocket connections; retry later', { retryAfterS: 5 });
      },
      handler: async () => {
        throw new FaceRecogError('invalid_request', `${path} is a WebSocket: connect with a WebSocket client (Upgrade: websocket)`);
      },
      wsHandler: (socket, request) => hub.accept(socket, request),
    });
  }
}

/**
 * Not encapsulated: @fastify/websocket's hooks must see every request (auth, registered after
 * this plugin, depends on that), and the routes here get the app-wide hooks (auth, rate limits)
 * registered later, since Fastify binds a context's hooks to its routes when the app is ready.
 */
export const realtime = fp(realtimePlugin, {
  name: 'face-recog-realtime',
  fastify: '5.x',
  // Its routes are documented in /openapi.json; its refusals are answered and counted like any other.
  dependencies: ['face-recog-errors', 'face-recog-lifecycle', 'face-recog-metrics', 'face-recog-openapi'],
});
