// The realtime helper against the real /ws/realtime: results, frames replaced while one is in
// flight, service errors, reconnecting after the service goes away and comes back, auth.
import { WebSocket as WsWebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fixturesMissing, readTestdata } from '../../../test/helpers/fixtures.js';
import {
  FaceRecogApiError,
  createClient,
  type RealtimeClient,
  type RealtimeDroppedEvent,
  type RealtimeEvents,
  type RealtimeResultsEvent,
  type WebSocketConstructor,
} from '../src/index.js';
import { PhotoGallery, startService, type RunningService } from './helpers/service.js';

const OBAMA = readTestdata('faces/obama/2.jpg');
// MobileFaceNet's threshold: a frame's similarity above it, with obama the only visitor, is obama's.
const THRESHOLD = 0.45;

/** Every payload of `event` from now on. */
function record<K extends keyof RealtimeEvents>(realtime: RealtimeClient, event: K): RealtimeEvents[K][] {
  const seen: RealtimeEvents[K][] = [];
  realtime.on(event, (payload) => seen.push(payload));
  return seen;
}

/** The first results event for frame `id`. */
function resultsFor(realtime: RealtimeClient, id: number | string): Promise<RealtimeResultsEvent> {
  return new Promise((resolve) => {
    const off = realtime.on('results', (results) => {
      if (results.id !== id) return;
      off();
      resolve(results);
    });
  });
}

describe.skipIf(fixturesMissing)('realtime helper against the real service', () => {
  let gallery: PhotoGallery;
  let service: RunningService;
  const open: RealtimeClient[] = [];

  function connect(options: Parameters<ReturnType<typeof createClient>['realtime']>[0] = {}, apiKey?: string): RealtimeClient {
    const realtime = createClient({ baseUrl: service.url, apiKey }).realtime(options);
    open.push(realtime);
    realtime.connect();
    return realtime;
  }

  beforeAll(async () => {
    gallery = new PhotoGallery();
    await gallery.enroll('obama', 'faces/obama/1.jpg');
    service = await startService({ gallery });
  });
  afterEach(() => {
    for (const realtime of open.splice(0)) realtime.close();
  });
  afterAll(() => service?.close());

  it("uses Node's global WebSocket by default; a frame comes back as results with its face's track", async () => {
    const NodeWebSocket = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    expect(NodeWebSocket).toBeDefined();
    let constructed = 0;
    vi.stubGlobal(
      'WebSocket',
      class extends (NodeWebSocket as unknown as typeof globalThis.WebSocket) {
        constructor(url: string) {
          super(url);
          constructed++;
        }
      },
    );
    const realtime = connect();
    await realtime.once('open').finally(() => vi.unstubAllGlobals());
    expect(constructed).toBe(1);
    expect(realtime.connected).toBe(true);
    const id = realtime.send(OBAMA);
    const results = await resultsFor(realtime, id);
    expect(results.count).toBe(1);
    // One frame alone names nobody; the track does, a few frames on (see the `event` test).
    expect(results.faces[0]).toMatchObject({ visitor_id: null, matched: false, track_id: expect.any(String) });
    expect(results.faces[0].confidence).toBeGreaterThan(THRESHOLD);
    expect(results.latency_ms).toBeGreaterThan(0);
    expect(results.roundTripMs).toBeGreaterThanOrEqual(results.latency_ms - 1);
  });

  it('without a global WebSocket (Node before 22) it loads ws by itself', async () => {
    vi.stubGlobal('WebSocket', undefined);
    const realtime = connect();
    await realtime.once('open').finally(() => vi.unstubAllGlobals());
    const results = await resultsFor(realtime, realtime.send(OBAMA));
    expect(results.faces[0].confidence).toBeGreaterThan(THRESHOLD);
  });

  it("a visitor's arrival is an `event` with the camera, the track of the face, before the results that name it", async () => {
    const realtime = connect({ camera: 'front desk' });
    expect(new URL(realtime.url).searchParams.get('camera')).toBe('front desk');
    const events = record(realtime, 'event');
    const order: string[] = [];
    realtime.on('event', () => order.push('event'));
    realtime.on('results', (r) => order.push(`results ${r.faces[0]?.matched ? r.faces[0].visitor_id : 'unnamed'}`));
    const answers: RealtimeResultsEvent[] = [];
    // Frame by frame, each once the one before is answered, until the track is named.
    while (!answers.at(-1)?.faces[0]?.matched) answers.push(await resultsFor(realtime, realtime.send(OBAMA)));
    expect(answers.length).toBeGreaterThan(1);
    expect(events).toEqual([
      {
        type: 'event',
        event: 'arrived',
        visitor_id: 'obama',
        track_id: answers[0].faces[0].track_id,
        camera: 'front desk',
        confidence: expect.any(Number),
        at: expect.any(String),
        faces: [],
        count: 0,
      },
    ]);
    expect(order.slice(-2)).toEqual(['event', 'results obama']);
    expect(new Set(answers.map((a) => a.faces[0].track_id)).size).toBe(1);
    // The same visitor again on this camera within the cooldown: named, not announced again.
    const next = await resultsFor(realtime, realtime.send(OBAMA));
    expect(next.faces[0]).toMatchObject({ visitor_id: 'obama', matched: true });
    expect(events).toHaveLength(1);
  });

  it('frames sent before the socket opens wait, and only the newest of them goes out', async () => {
    const realtime = connect();
    const dropped = record(realtime, 'dropped');
    const results = record(realtime, 'results');
    const first = realtime.send(OBAMA.toString('base64'));
    const second = realtime.send(`data:image/jpeg;base64,${OBAMA.toString('base64')}`, 'second');
    const answered = await resultsFor(realtime, second);
    expect(answered.faces[0].confidence).toBeGreaterThan(THRESHOLD);
    expect(dropped).toEqual<RealtimeDroppedEvent[]>([{ ids: [first], reason: 'replaced' }]);
    expect(results.map((r) => r.id)).toEqual([second]);
  });

  it('while one frame is in flight, newer frames replace each other; the newest is answered next', async () => {
    const realtime = connect();
    await realtime.once('open');
    const dropped = record(realtime, 'dropped');
    const results = record(realtime, 'results');
    const ids = [realtime.send(OBAMA), realtime.send(OBAMA), realtime.send(OBAMA), realtime.send(OBAMA)];
    await resultsFor(realtime, ids[3]);
    expect(results.map((r) => r.id)).toEqual([ids[0], ids[3]]);
    expect(dropped.flatMap((d) => d.ids)).toEqual([ids[1], ids[2]]);
    expect(dropped.every((d) => d.reason === 'replaced')).toBe(true);
  });

  it('a frame the service cannot decode is an error event for that frame; the connection goes on', async () => {
    const realtime = connect();
    await realtime.once('open');
    const bad = realtime.send(new TextEncoder().encode('not a picture'));
    const { error, id } = await realtime.once('error');
    expect(id).toBe(bad);
    expect(error.code).toBe('invalid_image');
    const good = realtime.send(OBAMA);
    expect((await resultsFor(realtime, good)).faces[0].confidence).toBeGreaterThan(THRESHOLD);
  });

  it('reconnects with backoff after the service closes the socket and comes back on the same port', async () => {
    const constructed: string[] = [];
    const CountingWebSocket = class extends WsWebSocket {
      constructor(url: string) {
        super(url);
        constructed.push(url);
      }
    } as unknown as WebSocketConstructor;
    const realtime = connect({ WebSocket: CountingWebSocket, reconnect: { initialDelayMs: 50, maxDelayMs: 400 } });
    await realtime.once('open');
    const closes = record(realtime, 'close');

    const { port } = service;
    const closed = realtime.once('close');
    await service.close();
    const firstClose = await closed;
    expect(firstClose.code).toBe(1001);
    expect(firstClose.reconnectInMs).toEqual(expect.any(Number));

    // A frame sent while disconnected waits for the new connection.
    const id = realtime.send(OBAMA);
    // Let at least one attempt be refused before the service is back.
    while (closes.length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    const reopened = realtime.once('open');
    service = await startService({ gallery, port });
    await reopened;
    expect(constructed.length).toBeGreaterThanOrEqual(3);
    expect((await resultsFor(realtime, id)).faces[0].confidence).toBeGreaterThan(THRESHOLD);
    expect(closes.every((c) => c.reconnectInMs !== null && c.reconnectInMs <= 400)).toBe(true);
  });

  it('close() stops for good: a close event without a reconnect', async () => {
    const realtime = connect();
    await realtime.once('open');
    const closed = realtime.once('close');
    realtime.close();
    expect((await closed).reconnectInMs).toBeNull();
    expect(realtime.connected).toBe(false);
  });
});

describe.skipIf(fixturesMissing)('realtime helper with API_KEYS', () => {
  let service: RunningService;
  beforeAll(async () => {
    service = await startService({ env: { API_KEYS: 'cam-key' } });
  });
  afterAll(() => service?.close());

  it('sends the key as ?api_key= and is answered', async () => {
    const realtime = createClient({ baseUrl: service.url, apiKey: 'cam-key' }).realtime();
    try {
      expect(new URL(realtime.url).searchParams.get('api_key')).toBe('cam-key');
      realtime.connect();
      const id = realtime.send(OBAMA);
      const results = await resultsFor(realtime, id);
      expect(results.count).toBe(1);
    } finally {
      realtime.close();
    }
  });

  it('a refused key is a 401 error event even where the socket says nothing about why (browsers)', async () => {
    // Browsers report a refused handshake as a bare error and a 1006 close.
    const Silent = class {
      private readonly socket: WsWebSocket;
      constructor(url: string) {
        this.socket = new WsWebSocket(url);
      }
      get readyState() {
        return this.socket.readyState;
      }
      send(data: string) {
        this.socket.send(data);
      }
      close(code?: number, reason?: string) {
        this.socket.close(code, reason);
      }
      addEventListener(type: 'open' | 'message' | 'close' | 'error', listener: (event: any) => void) {
        this.socket.addEventListener(type, type === 'error' ? () => listener({}) : listener);
      }
    };
    const realtime = createClient({ baseUrl: service.url, apiKey: 'wrong' }).realtime({ WebSocket: Silent, reconnect: { initialDelayMs: 10 } });
    const errors = record(realtime, 'error');
    const closed = realtime.once('close');
    realtime.connect();
    expect((await closed).reconnectInMs).toBeNull();
    expect(errors.map((e) => e.error)).toEqual([expect.objectContaining({ status: 401, code: 'unauthorized' })]);
    realtime.close();
  });

  it('a refused key is a 401 error event, and it does not retry', async () => {
    const realtime = createClient({ baseUrl: service.url, apiKey: 'wrong' }).realtime({ reconnect: { initialDelayMs: 10 } });
    const errors = record(realtime, 'error');
    const closed = realtime.once('close');
    realtime.connect();
    expect((await closed).reconnectInMs).toBeNull();
    expect(errors).toHaveLength(1);
    expect(errors[0].error).toBeInstanceOf(FaceRecogApiError);
    expect(errors[0].error).toMatchObject({ status: 401, code: 'unauthorized' });
    realtime.close();
  });
});
