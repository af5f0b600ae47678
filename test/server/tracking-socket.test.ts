// Tracks and visitor events end to end: the real service (createService, real engine, a gallery of
// every faces/ photo), a real WebSocket, the shared clip sent frame by frame as JPEG (each frame
// waits for its answer), local webhook receivers. One track for the singer, one arrival for him and
// nobody else named; out of view for the cooldown (frames of empty scenes), a second arrival; every
// event reaches the webhook once, signed; a receiver that fails twice gets it on the third try; one
// that is down does not stop the socket and is given up at shutdown (that it does not slow
// recognition is measured by bench/webhooks.ts).
import sharp from 'sharp';
import { Value } from 'typebox/value';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RealtimeMessage } from '../../src/server/schemas.js';
import { fixturesMissing, readTestdata, testEngine } from '../helpers/fixtures.js';
import { RealtimeClient } from '../helpers/realtime-client.js';
import { CLIP_VISITOR, CLIP_VISITOR_FRAMES, decodeClip, embedFacePhotos, galleryOf, type EmbeddedPhoto } from '../tracking/helpers/streams.js';
import type { MemoryGallery } from './helpers/memory-gallery.js';
import { startServer, type TestServer } from './helpers/server.js';
import { Receiver, closedPortUrl, delivered, signatureValid, webhookCounters } from './helpers/webhook-receiver.js';

const SECRET = 'webhook secret of the socket test';
// Long enough that the singer turning away for 7 frames cannot end his visit on a loaded machine.
const COOLDOWN_S = 5;
const CLIP_JPEG_QUALITY = 92;
const EMPTY_SCENES = ['noface/brick.jpg', 'noface/coffee.jpg', 'noface/rocket.jpg', 'noface/coins.jpg'];

interface Answer {
  results: any;
  events: any[];
}

/** Sends one frame and waits for its results; the events the frame raised come before them. */
async function answer(client: RealtimeClient, image: string, id: string): Promise<Answer> {
  const from = client.messages.length;
  client.send({ type: 'frame', image, id });
  const all = await client.until((messages) => messages.slice(from).some((m) => m.type === 'results' && m.id === id));
  const mine = all.slice(from);
  expect(mine.filter((m) => m.type !== 'event' && m.type !== 'results'), `frame ${id}`).toEqual([]);
  return { results: mine.find((m) => m.id === id), events: mine.filter((m) => m.type === 'event') };
}

/** Sends frames one by one, each after the answer to the one before. */
async function replay(client: RealtimeClient, frames: string[], name: string): Promise<Answer[]> {
  const answers: Answer[] = [];
  for (const [i, frame] of frames.entries()) answers.push(await answer(client, frame, `${name}-${i}`));
  return answers;
}

/** The singer's track id in each of his frames where a face is detected (the largest face). */
function singerTrackIds(answers: Answer[]): string[] {
  const ids: string[] = [];
  for (let i = CLIP_VISITOR_FRAMES.first; i <= CLIP_VISITOR_FRAMES.last; i++) {
    const faces: any[] = answers[i].results.faces;
    if (faces.length === 0) continue;
    const largest = faces.reduce((best, face) => (face.bbox[2] * face.bbox[3] > best.bbox[2] * best.bbox[3] ? face : best));
    ids.push(largest.track_id);
  }
  return ids;
}

const keptShare = (ids: string[]): number => ids.slice(1).filter((id, i) => id === ids[i]).length / (ids.length - 1);

/** Every matched face is the singer, in one of his frames. */
function expectOnlyTheSingerNamed(answers: Answer[]): void {
  answers.forEach(({ results }, i) => {
    for (const face of results.faces) {
      expect(face.track_id, `frame ${i}`).toEqual(expect.any(String));
      if (!face.matched) continue;
      expect(face.visitor_id, `frame ${i}`).toBe(CLIP_VISITOR);
      expect(i, `frame ${i}`).toBeGreaterThanOrEqual(CLIP_VISITOR_FRAMES.first);
      expect(i, `frame ${i}`).toBeLessThanOrEqual(CLIP_VISITOR_FRAMES.last);
    }
  });
}

async function metricsText(server: TestServer): Promise<string> {
  return (await fetch(`${server.url}/metrics`)).text();
}

describe.skipIf(fixturesMissing)('tracks and arrival events on /ws/realtime', () => {
  let photos: EmbeddedPhoto[];
  let clip: string[];
  let emptyScenes: string[];
  const cleanups: (() => Promise<unknown>)[] = [];

  /** A service whose gallery holds every faces/ photo, with these settings. */
  async function serve(env: Record<string, string>): Promise<TestServer> {
    const gallery: MemoryGallery = galleryOf(photos, () => true);
    const server = await startServer({ gallery, env: { EVENT_COOLDOWN_S: String(COOLDOWN_S), WEBHOOK_SECRET: SECRET, ...env } });
    cleanups.push(() => server.close());
    return server;
  }

  async function receiver(): Promise<Receiver> {
    const started = await Receiver.start();
    cleanups.push(() => started.close());
    return started;
  }

  async function connect(server: TestServer, camera: string): Promise<RealtimeClient> {
    const client = await RealtimeClient.connect(`${server.wsUrl}/ws/realtime?camera=${encodeURIComponent(camera)}`);
    cleanups.push(async () => client.socket.terminate());
    return client;
  }

  /** The clip's frames until (and including) the one that raises an arrival. */
  async function untilArrival(client: RealtimeClient, name: string): Promise<any> {
    for (let i = CLIP_VISITOR_FRAMES.first; i <= CLIP_VISITOR_FRAMES.last; i++) {
      const { events } = await answer(client, clip[i], `${name}-${i}`);
      if (events.length > 0) return events[0];
    }
    throw new Error('the singer was never named');
  }

  beforeAll(async () => {
    photos = await embedFacePhotos(await testEngine());
    clip = await Promise.all(
      decodeClip().map(async ({ data, width, height }) =>
        (await sharp(data, { raw: { width, height, channels: 3 } }).jpeg({ quality: CLIP_JPEG_QUALITY }).toBuffer()).toString('base64'),
      ),
    );
    emptyScenes = await Promise.all(
      EMPTY_SCENES.map(async (path) => (await sharp(readTestdata(path)).resize(640, 360, { fit: 'cover' }).jpeg().toBuffer()).toString('base64')),
    );
  }, 300_000);

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('over the shared clip: one track for the singer, one arrival, nobody else named; after the cooldown out of view, a second; each POSTed once, signed', async () => {
    const hook = await receiver();
    const server = await serve({ WEBHOOK_URL: hook.url });
    const client = await connect(server, 'stage');

    const first = await replay(client, clip, 'first');
    const ids = singerTrackIds(first);
    expect(ids.length).toBeGreaterThan(100);
    console.log(`singer's track kept across ${(100 * keptShare(ids)).toFixed(1)}% of ${ids.length - 1} frame-to-frame transitions (${new Set(ids).size} track ids)`);
    expect(keptShare(ids)).toBeGreaterThanOrEqual(0.9);
    expectOnlyTheSingerNamed(first);
    const arrivals = first.flatMap((a) => a.events);
    expect(arrivals).toHaveLength(1);
    const [arrival] = arrivals;
    expect(arrival).toEqual({
      type: 'event',
      event: 'arrived',
      visitor_id: CLIP_VISITOR,
      track_id: expect.any(String),
      camera: 'stage',
      confidence: expect.any(Number),
      at: expect.any(String),
      faces: [],
      count: 0,
    });
    expect(Value.Check(RealtimeMessage, arrival)).toBe(true);
    expect(arrival.confidence).toBeGreaterThanOrEqual(0.45 + 0.1);
    // The arrival names the track the singer has in view, raised by the frame that first names him.
    const named = (a: Answer): boolean => a.results.faces.some((f: any) => f.matched);
    const namedAt = first.findIndex(named);
    expect(first[namedAt].events).toEqual([arrival]);
    expect(first[namedAt].results.faces.find((f: any) => f.matched).track_id).toBe(arrival.track_id);
    expect(ids.filter((id) => id === arrival.track_id).length).toBeGreaterThan(ids.length / 2);

    // Out of view: empty scenes until the cooldown has passed since he was last seen named.
    let away = 0;
    // Later than the service saw him: his last named frame was answered before the clip's end.
    const lastSeenAt = performance.now();
    while (performance.now() - lastSeenAt <= COOLDOWN_S * 1000) {
      const { results, events } = await answer(client, emptyScenes[away % emptyScenes.length], `away-${away++}`);
      expect(results.faces).toEqual([]);
      expect(events).toEqual([]);
    }

    const second = await replay(client, clip.slice(0, CLIP_VISITOR_FRAMES.last + 1), 'second');
    expectOnlyTheSingerNamed(second);
    const again = second.flatMap((a) => a.events);
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ visitor_id: CLIP_VISITOR, camera: 'stage' });
    expect(again[0].track_id).not.toBe(arrival.track_id);
    expect(Date.parse(again[0].at)).toBeGreaterThan(Date.parse(arrival.at) + COOLDOWN_S * 1000);

    const events = [arrival, again[0]];
    await hook.requests(events.length);
    expect(webhookCounters(await metricsText(server))).toMatchObject({ [delivered('delivered')]: 2, [delivered('failed')]: 0, face_recog_webhook_retries_total: 0 });
    // Closing drains the sender: nothing more comes after.
    await server.close();
    expect(hook.received).toHaveLength(events.length);
    expect(hook.received.map((r) => JSON.parse(r.body))).toEqual(events);
    expect(new Set(hook.received.map((r) => r.delivery)).size).toBe(events.length);
    for (const r of hook.received) {
      expect(r.contentType).toBe('application/json');
      expect(signatureValid(r.body, r.signature, SECRET)).toBe(true);
    }
  }, 600_000);

  it('a receiver that fails twice gets the event on the third try, same body, same delivery id, signed', async () => {
    const hook = await receiver();
    hook.answer = (_, attempt) => (attempt === 1 ? 500 : attempt === 2 ? 503 : 204);
    const server = await serve({ WEBHOOK_URL: hook.url });
    // Any printable name, as given: accents, spaces, punctuation.
    const camera = 'Réception – desk 2';
    const arrival = await untilArrival(await connect(server, camera), 'desk');
    expect(arrival).toMatchObject({ visitor_id: CLIP_VISITOR, camera });

    await hook.requests(3);
    const [one, two, three] = hook.received;
    expect(new Set([one.delivery, two.delivery, three.delivery]).size).toBe(1);
    expect(new Set([one.body, two.body, three.body]).size).toBe(1);
    expect(JSON.parse(three.body)).toEqual(arrival);
    for (const r of hook.received) expect(signatureValid(r.body, r.signature, SECRET)).toBe(true);
    await server.close();
    expect(hook.received).toHaveLength(3);
  }, 300_000);

  it('a receiver that is down: the socket still gets the event and every answer; the failed attempts are counted', async () => {
    const server = await serve({ WEBHOOK_URL: await closedPortUrl() });
    const client = await connect(server, 'lobby');
    const arrival = await untilArrival(client, 'lobby');
    expect(arrival).toMatchObject({ visitor_id: CLIP_VISITOR, camera: 'lobby' });
    // Frames go on being answered while the event is retried.
    const after = await replay(client, clip.slice(CLIP_VISITOR_FRAMES.first, CLIP_VISITOR_FRAMES.first + 20), 'after');
    expect(after.every((a) => a.results.count === a.results.faces.length)).toBe(true);
    const counters = webhookCounters(await metricsText(server));
    expect(counters[delivered('delivered')]).toBe(0);
    expect(counters.face_recog_webhook_retries_total).toBeGreaterThan(0);
    // Shutdown gives the sender its grace, then counts the event it still holds as abandoned.
    await server.close();
    expect(webhookCounters(await server.service.metrics.registry.metrics())).toMatchObject({ [delivered('abandoned')]: 1, [delivered('delivered')]: 0 });
  }, 300_000);

  it('without ?camera= events say camera null; a bad camera name refuses the handshake with 400 saying why', async () => {
    const server = await serve({});
    const unnamed = await RealtimeClient.connect(`${server.wsUrl}/ws/realtime`);
    cleanups.push(async () => unnamed.socket.terminate());
    expect(await untilArrival(unnamed, 'unnamed')).toMatchObject({ visitor_id: CLIP_VISITOR, camera: null });

    const bad = ['', 'x'.repeat(65), 'desk%07', 'desk%0A2', 'a&camera=b', '%E2%80%AEksed'];
    for (const camera of bad) {
      const url = `/ws/realtime?camera=${camera}`;
      await expect(RealtimeClient.connect(`${server.wsUrl}${url}`), camera).rejects.toThrow('HTTP 400');
      const plain = await fetch(`${server.url}${url}`);
      expect(plain.status, camera).toBe(400);
      expect(await plain.json(), camera).toEqual({
        error: { code: 'invalid_request', message: 'camera must be one name of 1 to 64 printable characters, e.g. ?camera=front-desk' },
      });
    }
    // 64 characters is within the cap.
    const longest = await connect(server, 'c'.repeat(64));
    expect((await answer(longest, emptyScenes[0], 'longest')).results.count).toBe(0);
  }, 300_000);
});
