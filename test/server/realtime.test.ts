// WebSocket /ws/realtime over a real socket with a ws client: results, errors, dropped frames,
// auth, limits and heartbeats.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import Value from 'typebox/value';
import WebSocket from 'ws';
import { RealtimeMessage } from '../../src/server/schemas.js';
import { fixturesMissing } from '../helpers/fixtures.js';
import { RealtimeClient as Client } from '../helpers/realtime-client.js';
import { MemoryGallery } from './helpers/memory-gallery.js';
import { base64Of, holdSlot, startServer, type TestServer } from './helpers/server.js';

const FRAME = 'hard/obama_240p.jpg';

async function metricValue(server: TestServer, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

describe.skipIf(fixturesMissing)('WebSocket /ws/realtime', () => {
  let server: TestServer;
  const clients: Client[] = [];
  const connect = async (path = '/ws/realtime', options?: WebSocket.ClientOptions, target = server) => {
    const client = new Client(`${target.wsUrl}${path}`, options);
    clients.push(client);
    await client.opened;
    return client;
  };

  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    server = await startServer({ gallery });
  });
  afterEach(() => {
    clients.splice(0).forEach((c) => c.socket.terminate());
  });
  afterAll(() => server?.close());

  it('answers a frame with every face, its track and the latency; the visitor once the track\'s frames name it', async () => {
    const client = await connect();
    client.send({ type: 'frame', image: base64Of(FRAME), id: 'cam1-0001' });
    const [results] = await client.receive(1);
    expect(results).toMatchObject({ type: 'results', id: 'cam1-0001', count: 1 });
    // One frame alone names nobody (tracks: test/server/tracking-socket.test.ts).
    expect(results.faces[0]).toMatchObject({ visitor_id: null, matched: false, track_id: expect.any(String) });
    // As in recognize: `confidence` is the match (what the guide hands to handleRecognizedVisitor).
    expect(Object.keys(results.faces[0])).toEqual(['bbox', 'landmarks', 'detection_confidence', 'confidence', 'visitor_id', 'matched', 'track_id']);
    expect(results.faces[0].confidence).toBeGreaterThan(0.45);
    expect(results.faces[0].confidence).toBeLessThanOrEqual(1);
    expect(results.faces[0].detection_confidence).toBeGreaterThan(0.9);
    expect(results.latency_ms).toBeGreaterThan(0);
    for (const id of ['cam1-0002', 'cam1-0003']) client.send({ type: 'frame', image: base64Of(FRAME), id });
    const answers = await client.until((messages) => messages.some((m) => m.id === 'cam1-0003'));
    const named = answers.find((m) => m.id === 'cam1-0003');
    expect(named.faces[0]).toMatchObject({ visitor_id: 'obama', matched: true, track_id: results.faces[0].track_id });
  });

  it('numbers frames that carry no id, and serves the misspelt alias path too', async () => {
    const client = await connect('/ws/realtimetime');
    client.send({ type: 'frame', image: base64Of('noface/coffee.jpg') });
    const [results] = await client.receive(1);
    expect(results).toEqual({ type: 'results', id: 1, faces: [], count: 0, latency_ms: expect.any(Number) });
  });

  it('answers a plain GET without the upgrade with 400 saying it is a WebSocket', async () => {
    const response = await fetch(`${server.url}/ws/realtime`);
    expect(response.status).toBe(400);
    const body = await response.json();
    expect(body.error).toMatchObject({ code: 'invalid_request' });
    expect(body.error.message).toContain('WebSocket');
  });

  it('answers bad messages with an error and keeps the connection open', async () => {
    const client = await connect();
    client.send('{not json');
    client.send({ type: 'hello' });
    client.send({ type: 'frame', id: 7 });
    client.socket.send(Buffer.from([1, 2, 3]), { binary: true });
    client.send({ type: 'frame', image: 'junk!', id: 8 });
    client.send({ type: 'frame', image: base64Of(FRAME), id: 9 });
    const messages = await client.receive(6);
    expect(messages.slice(0, 5).map((m) => [m.type, m.code])).toEqual([
      ['error', 'invalid_request'],
      ['error', 'invalid_request'],
      ['error', 'invalid_request'],
      ['error', 'invalid_request'],
      ['error', 'invalid_image'],
    ]);
    expect(messages[2].id).toBe(7);
    expect(messages[4].id).toBe(8);
    for (const m of messages.slice(0, 5)) expect(m.message.length).toBeGreaterThan(10);
    expect(messages[5]).toMatchObject({ type: 'results', id: 9, count: 1 });
    expect(client.socket.readyState).toBe(WebSocket.OPEN);
  });

  it('processes one frame at a time: the newest waiting frame wins and the skipped ones are reported', async () => {
    const client = await connect();
    const droppedBefore = await metricValue(server, /face_recog_ws_frames_total\{outcome="dropped"\} (\d+)/);
    // Inference is busy elsewhere, so frame 1 waits for a slot while 2..5 arrive.
    const busy = holdSlot(server.scheduler);
    for (let id = 1; id <= 5; id++) client.send({ type: 'frame', image: base64Of(FRAME), id });
    await vi.waitFor(async () => expect((await metricValue(server, /face_recog_ws_frames_total\{outcome="dropped"\} (\d+)/)) - droppedBefore).toBe(3), {
      timeout: 30_000,
      interval: 10,
    });
    busy.release();
    const messages = await client.receive(3);
    expect(messages.map((m) => m.type)).toEqual(['results', 'dropped', 'results']);
    expect(messages[0].id).toBe(1);
    expect(messages[1].ids).toEqual([2, 3, 4]);
    expect(messages[2].id).toBe(5);
    expect(messages[2].count).toBe(1);
  });

  it('sends only messages of the schema, each with faces and count, results or not', async () => {
    const client = await connect();
    const dropped = () => metricValue(server, /face_recog_ws_frames_total\{outcome="dropped"\} (\d+)/);
    const droppedBefore = await dropped();
    // 'junk' waits for the busy slot while 1..4 arrive, each replacing the one before it.
    const busy = holdSlot(server.scheduler);
    client.send('{not json');
    client.send({ type: 'frame', image: 'junk!', id: 'junk' });
    for (let id = 1; id <= 4; id++) client.send({ type: 'frame', image: base64Of(FRAME), id });
    await vi.waitFor(async () => expect((await dropped()) - droppedBefore).toBe(3), { timeout: 30_000, interval: 10 });
    busy.release();
    const messages = await client.until((all) => all.some((m) => m.type === 'results' && m.id === 4));
    expect(new Set(messages.map((m) => m.type))).toEqual(new Set(['error', 'dropped', 'results']));
    for (const message of messages) {
      expect(Value.Check(RealtimeMessage, message), JSON.stringify(message).slice(0, 200)).toBe(true);
      expect(Array.isArray(message.faces)).toBe(true);
      expect(message.count).toBe(message.faces.length);
    }
  });

  it('cancels the frames of a connection that closes: the waiting one is not processed, the one in progress neither searched for nor answered', async () => {
    const client = await connect();
    const metric = (name: string) => metricValue(server, new RegExp(`${name.replace(/[{}]/g, '\\$&')} (\\d+)`));
    const frames = (outcome: string) => metric(`face_recog_ws_frames_total{outcome="${outcome}"}`);
    const decodes = () => metric('face_recog_inference_seconds_count{model="image",stage="decode"}');
    const before = { processed: await frames('processed'), cancelled: await frames('cancelled'), dropped: await frames('dropped'), decodes: await decodes() };
    const searches = server.gallery.searches;

    // Frame 1 waits for the busy slot (in progress for the connection), 2 waits behind it and 3 replaces 2.
    const busy = holdSlot(server.scheduler);
    for (let id = 1; id <= 3; id++) client.send({ type: 'frame', image: base64Of(FRAME), id });
    await vi.waitFor(async () => expect((await frames('dropped')) - before.dropped).toBe(1), { timeout: 30_000, interval: 10 });
    client.socket.close();
    await client.closed;
    // The waiting frame goes with the connection...
    await vi.waitFor(async () => expect((await frames('cancelled')) - before.cancelled).toBe(1), { timeout: 30_000, interval: 10 });
    busy.release();
    // ...and the one in progress ends after its inference, unanswered.
    await vi.waitFor(async () => expect((await frames('cancelled')) - before.cancelled).toBe(2), { timeout: 30_000, interval: 10 });
    await server.scheduler.idle();

    expect((await frames('processed')) - before.processed).toBe(0);
    expect((await decodes()) - before.decodes).toBe(1);
    expect(server.gallery.searches).toBe(searches);
    expect(client.messages).toEqual([]);
  });

  it('runs each connection\'s stage over its results before sending them, and closes it with the connection', async () => {
    const opened: unknown[] = [];
    const closed: unknown[] = [];
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    const staged = await startServer({
      gallery,
      openConnectionStage: ({ request, send }) => {
        const camera = (request.query as { camera?: string }).camera;
        opened.push(camera);
        return {
          results: (faces, frame) => {
            send({ type: 'error', code: 'internal', message: `stage saw frame ${frame.id}`, id: frame.id, faces: [], count: 0 });
            return faces.map((face) => ({ ...face, visitor_id: `${camera}:${face.visitor_id}`, track_id: `${camera}-track` }));
          },
          close: () => closed.push(camera),
        };
      },
    });
    try {
      const client = await connect('/ws/realtime?camera=lobby', {}, staged);
      client.send({ type: 'frame', image: base64Of(FRAME), id: 'f1' });
      const [own, results] = await client.receive(2);
      expect(own).toMatchObject({ type: 'error', id: 'f1', message: 'stage saw frame f1' });
      expect(results).toMatchObject({ type: 'results', id: 'f1', count: 1, faces: [{ visitor_id: 'lobby:obama', matched: true }] });
      expect(opened).toEqual(['lobby']);
      client.socket.close();
      await client.closed;
      await vi.waitFor(() => expect(closed).toEqual(['lobby']), { timeout: 30_000, interval: 10 });
    } finally {
      await staged.close();
    }
  });

  it('keeps connections independent: each gets answers for its own frames', async () => {
    const cameras = await Promise.all([connect(), connect(), connect(), connect()]);
    cameras.forEach((camera, i) => camera.send({ type: 'frame', image: base64Of(FRAME), id: `cam${i}` }));
    const answers = await Promise.all(cameras.map((camera) => camera.receive(1)));
    expect(answers.map(([m]) => m.id)).toEqual(['cam0', 'cam1', 'cam2', 'cam3']);
    for (const [m] of answers) expect(m).toMatchObject({ type: 'results', count: 1 });
  });

  describe('limits', () => {
    let limited: TestServer;
    beforeAll(async () => {
      limited = await startServer({ env: { WS_MAX_MESSAGE_BYTES: '2048', WS_MAX_CONNECTIONS: '2' } });
    });
    afterAll(() => limited?.close());

    it('closes with 1009 when a message exceeds WS_MAX_MESSAGE_BYTES', async () => {
      const client = await connect('/ws/realtime', {}, limited);
      client.send({ type: 'frame', image: 'A'.repeat(4096) });
      expect((await client.closed).code).toBe(1009);
    });

    it('refuses connections beyond WS_MAX_CONNECTIONS with 503', async () => {
      await connect('/ws/realtime', {}, limited);
      await connect('/ws/realtime', {}, limited);
      await expect(connect('/ws/realtime', {}, limited)).rejects.toThrow('HTTP 503');
    });
  });

  it('drops a peer that stops answering heartbeats and keeps the ones that answer', async () => {
    const beating = await startServer({ env: { WS_HEARTBEAT_MS: '1000' } });
    try {
      const dead = await connect('/ws/realtime', { autoPong: false }, beating);
      const alive = await connect('/ws/realtime', {}, beating);
      const { code } = await dead.closed;
      expect(code).toBe(1006); // terminated without a closing handshake
      expect(alive.socket.readyState).toBe(WebSocket.OPEN);
      alive.send({ type: 'frame', image: base64Of(FRAME) });
      expect((await alive.receive(1))[0].type).toBe('results');
      alive.socket.close();
      await alive.closed;
    } finally {
      await beating.close();
    }
  });

  describe('with API keys', () => {
    let secured: TestServer;
    beforeAll(async () => {
      secured = await startServer({ env: { API_KEYS: 'camera-key' } });
    });
    afterAll(() => secured?.close());

    it('refuses the handshake with 401 without a valid key', async () => {
      await expect(connect('/ws/realtime', {}, secured)).rejects.toThrow('HTTP 401');
      await expect(connect('/ws/realtime?api_key=wrong', {}, secured)).rejects.toThrow('HTTP 401');
      await expect(connect('/ws/realtime', { headers: { authorization: 'Bearer wrong' } }, secured)).rejects.toThrow('HTTP 401');
    });

    it('closes the socket of a refused handshake instead of leaving it open', async () => {
      const status = await new Promise<number>((resolve, reject) => {
        const request = http.get(`${secured.url}/ws/realtime`, {
          headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') },
        });
        request.on('upgrade', () => reject(new Error('upgraded without a key')));
        request.on('response', (response) => {
          response.resume();
          response.socket.once('close', () => resolve(response.statusCode ?? 0));
        });
      });
      expect(status).toBe(401);
    });

    it('accepts the key as a Bearer token, an X-API-Key header or ?api_key=', async () => {
      const variants = [
        connect('/ws/realtime', { headers: { authorization: 'Bearer camera-key' } }, secured),
        connect('/ws/realtime', { headers: { 'x-api-key': 'camera-key' } }, secured),
        connect('/ws/realtime?api_key=camera-key', {}, secured),
      ];
      for (const client of await Promise.all(variants)) {
        client.send({ type: 'frame', image: base64Of(FRAME) });
        expect((await client.receive(1))[0].type).toBe('results');
      }
    });
  });
});
