// Graceful shutdown: work in flight is finished, new connections are refused, sockets are closed
// with 1001 after their last answer.
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { fixturesMissing } from '../helpers/fixtures.js';
import { base64Of, holdSlot, startServer, type TestServer } from './helpers/server.js';

const IMAGE = 'hard/obama_240p.jpg';

/** POST over a fresh TCP connection (no pooled keep-alive socket to hide a refusal). */
function postFresh(server: TestServer, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-type': 'application/json' } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
}

function getFresh(server: TestServer, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${server.url}${path}`, { agent: false }, (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: JSON.parse(text) }));
      })
      .on('error', reject);
  });
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe.skipIf(fixturesMissing)('graceful shutdown', () => {
  it('finishes the request in flight and refuses new connections', async () => {
    const server = await startServer();
    const busy = holdSlot(server.scheduler);
    const inFlight = postFresh(server, '/api/v1/detect', { image: base64Of(IMAGE) });
    await until(() => server.scheduler.depth() === 1, 'the request to be queued');

    const closing = server.close();
    await until(() => !server.app.server.listening, 'the listener to close');
    const refused = await postFresh(server, '/health', {}).catch((error: NodeJS.ErrnoException) => error);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });

    busy.release();
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.body.count).toBe(1);
    await closing;
  });

  it('refuses a request when the shutdown begins later in the turn in which it arrived, as a SIGTERM that came with its bytes does', async () => {
    const server = await startServer();
    let closing: Promise<void> | undefined;
    // Fastify's own 'request' listener has admitted the request when this one runs.
    server.app.server.once('request', () => {
      closing = server.close();
    });
    const late = await getFresh(server, '/health');
    expect(late.status).toBe(503);
    expect(late.body.error.code).toBe('not_ready');
    await closing;
  });

  it('ends kept-alive connections after their last answer, so they do not hold the shutdown open', async () => {
    const server = await startServer();
    const busy = holdSlot(server.scheduler);
    const socket = net.connect(Number(new URL(server.url).port), '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk) => (received += chunk));
    const ended = new Promise((resolve) => socket.once('close', resolve));
    const body = JSON.stringify({ image: base64Of(IMAGE) });
    socket.write(`POST /api/v1/detect HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await until(() => server.scheduler.depth() === 1, 'the request to be queued');
    const closing = server.close();
    busy.release();
    await ended;
    await closing;
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(received).toMatch(/^connection: close/im);
  });

  it('answers the frame in progress, reports the waiting one and any arriving after dropped, then closes WebSockets with 1001', async () => {
    const server = await startServer();
    const client = new WebSocket(`${server.wsUrl}/ws/realtime`);
    await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
    const messages: any[] = [];
    client.on('message', (data) => messages.push(JSON.parse(data.toString())));
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));

    const busy = holdSlot(server.scheduler);
    for (const id of ['current', 'waiting', 'newest']) client.send(JSON.stringify({ type: 'frame', image: base64Of(IMAGE), id }));
    await until(() => server.scheduler.depth() === 1, 'the first frame to be queued');
    // 'waiting' was replaced by 'newest' once the metric counts one dropped frame.
    await vi.waitFor(async () => expect(await (await fetch(`${server.url}/metrics`)).text()).toMatch(/face_recog_ws_frames_total\{outcome="dropped"\} 1/), {
      timeout: 30_000,
      interval: 5,
    });
    const closing = server.close();
    // While the socket's last frame is pending, the listener is still open: new requests are told
    // to go away, from the first one sent after the close began (Fastify's own closing state comes
    // only after its close hooks, so the service refuses on its own).
    expect(server.service.closing).toBe(true);
    const late = await getFresh(server, '/health');
    expect(late.status).toBe(503);
    expect(late.body.error.code).toBe('not_ready');
    expect(late.headers.connection).toBe('close');
    // Once the socket is told to finish (the waiting frame counted dropped), a frame that arrives is
    // reported dropped at once.
    const dropped = async () => (await server.service.metrics.registry.getSingleMetricAsString('face_recog_ws_frames_total')).match(/outcome="dropped"\} (\d+)/)?.[1];
    await vi.waitFor(async () => expect(await dropped()).toBe('2'), { timeout: 30_000, interval: 5 });
    client.send(JSON.stringify({ type: 'frame', image: base64Of(IMAGE), id: 'late' }));
    await vi.waitFor(() => expect(messages).toHaveLength(1), { timeout: 30_000, interval: 5 });
    busy.release();

    expect(await closed).toBe(1001);
    // The frame in progress is answered; the ones still waiting or arriving are reported dropped, not silently lost.
    expect(messages).toEqual([
      { type: 'dropped', ids: ['late'], faces: [], count: 0 },
      expect.objectContaining({ type: 'results', id: 'current', count: 1 }),
      { type: 'dropped', ids: ['waiting', 'newest'], faces: [], count: 0 },
    ]);
    await closing;
  });
});
