// Hostile input through the WebSocket /ws/realtime: the crafted corpus as frames, fuzzed text,
// JSON and binary messages, bursts, and oversized messages. Every bad message gets
// { type: "error", code } and the connection stays open (oversized ones close it with 1009 and
// leave everyone else alone); every frame id is answered exactly once; memory comes back.
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing } from '../helpers/fixtures.js';
import { MemoryGallery } from '../server/helpers/memory-gallery.js';
import { base64Of, startServer, type TestServer } from '../server/helpers/server.js';
import { craftedCorpus, SMALL_PHOTO, type CraftedCase } from './helpers/corpus.js';
import { fingerprints } from './helpers/http.js';
import { expectMemoryBack, settledMemory } from './helpers/memory.js';
import { Reliability } from './helpers/reliability.js';
import { RealtimeClient, wsOutcome } from '../helpers/realtime-client.js';

const KEY = 'hardening-ws-key-93ad01';
const SEED = 20261128;
const MAX_MESSAGE_BYTES = 1024 * 1024;

const reliability = new Reliability('ws-input', 'Hostile input through the WebSocket', 'test/hardening/ws-input.test.ts');

describe.skipIf(fixturesMissing)('hostile input through the WebSocket', () => {
  let server: TestServer;
  let corpus: CraftedCase[];
  let photo: string;
  const clients: RealtimeClient[] = [];
  const sentPayloads: string[] = [];

  const connect = async () => {
    const client = await RealtimeClient.connect(`${server.wsUrl}/ws/realtime`, { headers: { 'x-api-key': KEY } });
    clients.push(client);
    return client;
  };

  /** The expected answer to a crafted case sent as a frame. */
  const expectedOutcome = (item: CraftedCase) => (item.expected.status === 200 ? 'results' : `error ${item.expected.code}`);

  /** The visitor's photo is still recognised: by its third frame on the connection at the latest, its track is named. */
  async function stillServing(client: RealtimeClient): Promise<void> {
    let answer: any;
    for (let i = 0; i < 3; i++) answer = await client.ask({ type: 'frame', image: photo, id: 'check' });
    expect(answer).toMatchObject({ type: 'results', id: 'check', count: 1, faces: [{ visitor_id: 'obama', matched: true }] });
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  }

  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    // A 1 MB message limit keeps the oversized cases cheap; the corpus fits under it.
    server = await startServer({ env: { API_KEYS: KEY, WS_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) }, gallery });
    corpus = (await craftedCorpus()).filter((item) => item.payload.length < MAX_MESSAGE_BYTES - 1024);
    photo = base64Of(SMALL_PHOTO);
  });
  afterEach(() => {
    clients.splice(0).forEach((client) => client.socket.terminate());
  });
  afterAll(async () => {
    await server?.close();
    reliability.save();
  });

  it('answers every crafted file sent as a frame with its code, on one connection that stays open', async () => {
    const client = await connect();
    for (const [i, item] of corpus.entries()) {
      sentPayloads.push(item.payload);
      const answer = await client.ask({ type: 'frame', image: item.payload, id: i });
      reliability.record(item.name, wsOutcome(answer));
      expect(answer.id, item.name).toBe(i);
      expect(wsOutcome(answer), item.name).toBe(expectedOutcome(item));
      if (answer.type === 'error') expect(answer.message.length).toBeLessThanOrEqual(300);
    }
    expect(client.open).toBe(true);
    await stillServing(client);
  });

  it('property: any text that is not a frame message gets an invalid_request error and the connection stays open', async () => {
    const client = await connect();
    const isFrame = (v: unknown) => typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'frame';
    const message = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 512 }).map((text) => ({ kind: 'random text', text })),
      fc.jsonValue().filter((v) => !isFrame(v)).map((v) => ({ kind: 'JSON that is not a frame', text: JSON.stringify(v) })),
      fc
        .record({ image: fc.jsonValue().filter((v) => typeof v !== 'string'), id: fc.option(fc.jsonValue(), { nil: undefined }) })
        .map((frame) => ({ kind: 'frame whose image is not a string', text: JSON.stringify({ type: 'frame', ...frame }) })),
      fc
        .oneof(fc.object(), fc.array(fc.integer()), fc.boolean(), fc.string({ minLength: 129, maxLength: 400 }))
        .map((id) => ({ kind: 'frame with an id that is not a number or a short string', text: JSON.stringify({ type: 'frame', image: photo, id }) })),
    );
    await fc.assert(
      fc.asyncProperty(message, async ({ kind, text }) => {
        const answer = await client.ask(text);
        reliability.record(`${kind} (fast-check)`, wsOutcome(answer));
        expect(wsOutcome(answer)).toBe('error invalid_request');
        expect(client.open).toBe(true);
      }),
      { seed: SEED, numRuns: 150 },
    );
    await stillServing(client);
  });

  it('property: frames of random bytes get invalid_image; binary messages get invalid_request', async () => {
    const client = await connect();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), fc.boolean(), async (bytes, asBinary) => {
        if (asBinary) {
          const answer = await client.ask(Buffer.from(bytes));
          reliability.record('binary message of random bytes (fast-check)', wsOutcome(answer));
          expect(wsOutcome(answer)).toBe('error invalid_request');
        } else {
          const payload = Buffer.from(bytes).toString('base64');
          sentPayloads.push(payload);
          const answer = await client.ask({ type: 'frame', image: payload, id: 'random' });
          reliability.record('frame of random bytes (fast-check)', wsOutcome(answer));
          expect(answer).toMatchObject({ type: 'error', code: 'invalid_image', id: 'random' });
        }
      }),
      { seed: SEED, numRuns: 100 },
    );
    await stillServing(client);
  });

  it('refuses deeply nested and prototype-keyed messages with invalid_request', async () => {
    const client = await connect();
    const depth = 100_000;
    const cases: [string, string][] = [
      [`message nested ${depth} arrays deep`, `${'['.repeat(depth)}${']'.repeat(depth)}`],
      [`frame whose image is nested ${depth} arrays deep`, `{"type":"frame","image":${'['.repeat(depth)}${']'.repeat(depth)}}`],
      [`message of ${depth} unclosed brackets`, '{'.repeat(depth)],
      ['message with a __proto__ key', '{"__proto__":{"type":"frame","image":"x"}}'],
    ];
    for (const [name, text] of cases) {
      const answer = await client.ask(text);
      reliability.record(name, wsOutcome(answer));
      expect(wsOutcome(answer), name).toBe('error invalid_request');
    }
    expect(({} as Record<string, unknown>).type).toBeUndefined();
    await stillServing(client);
  });

  it('property: in a burst of frames, valid or not, every id is answered exactly once', async () => {
    const burstAnswers = new Map<string, number>();
    const frame = fc.oneof(
      fc.constant({ kind: 'photo', image: () => photo }),
      fc.constant({ kind: 'junk', image: () => 'junk!' }),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => ({ kind: 'bytes', image: () => Buffer.from(b).toString('base64') })),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 40 }), async (frames) => {
        const client = await connect();
        frames.forEach((f, i) => client.send({ type: 'frame', image: f.image(), id: `f${i}` }));
        const answered = new Map<string, string[]>();
        const note = (id: string, how: string) => answered.set(id, [...(answered.get(id) ?? []), how]);
        await client.until((messages) => {
          answered.clear();
          for (const m of messages) {
            if (m.type === 'dropped') m.ids.forEach((id: string) => note(id, 'dropped'));
            else note(m.id, wsOutcome(m));
          }
          return answered.size >= frames.length;
        });
        const outcomes = frames.map((_, i) => answered.get(`f${i}`) ?? []);
        for (const list of outcomes) reliability.record('frames in bursts of 1-40, photos and junk mixed, sent without waiting (fast-check)', list.length === 1 ? 'answered exactly once' : `ANSWERED ${list.length} TIMES`);
        for (const how of outcomes.flat()) burstAnswers.set(how, (burstAnswers.get(how) ?? 0) + 1);
        expect(outcomes.every((list) => list.length === 1)).toBe(true);
        // The last frame is never dropped: a camera always hears about its newest picture.
        expect(outcomes[frames.length - 1][0]).not.toBe('dropped');
        client.socket.terminate();
      }),
      { seed: SEED, numRuns: 20 },
    );
    // Which frames were processed and which dropped depends on timing: a measurement, not a row.
    reliability.note(`Burst answers: ${[...burstAnswers].map(([how, n]) => `${how} ${n}`).join(', ')}.`);
  });

  it('closes oversized messages with 1009 and leaves other connections alone', async () => {
    const bystander = await connect();
    const over = MAX_MESSAGE_BYTES + 1;
    const cases: [string, (client: RealtimeClient) => void][] = [
      ['text message one byte over WS_MAX_MESSAGE_BYTES', (c) => c.send(JSON.stringify({ type: 'frame', image: 'A'.repeat(over) }))],
      ['binary message one byte over WS_MAX_MESSAGE_BYTES', (c) => c.send(Buffer.alloc(over))],
      ['message fragmented into 64 KB pieces past the limit', (c) => {
        for (let sent = 0; sent <= over; sent += 65_536) c.socket.send(Buffer.alloc(65_536, 0x41), { binary: false, fin: false });
        c.socket.send('', { fin: true });
      }],
      ['100 MB text message', (c) => c.send('A'.repeat(100 * 1024 * 1024))],
    ];
    for (const [name, attack] of cases) {
      const client = await connect();
      attack(client);
      const { code } = await client.closed;
      reliability.record(name, `closed ${code}`);
      expect(code, name).toBe(1009);
    }
    expect(bystander.open).toBe(true);
    await stillServing(bystander);
  });

  it('comes back to its warm-up memory after the corpus twice more and 100 random frames', async () => {
    const client = await connect();
    // Warm-up: the allocator and libvips' cache reach their working size over the first rounds.
    for (const item of corpus) await client.ask({ type: 'frame', image: item.payload });
    const baseline = await settledMemory();
    for (let round = 0; round < 2; round++) {
      for (const item of corpus) expect(wsOutcome(await client.ask({ type: 'frame', image: item.payload }))).toBe(expectedOutcome(item));
    }
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), async (bytes) => {
        expect(wsOutcome(await client.ask({ type: 'frame', image: Buffer.from(bytes).toString('base64') }))).toBe('error invalid_image');
      }),
      { seed: SEED, numRuns: 100 },
    );
    await expectMemoryBack(reliability, baseline, 'memory after the corpus ×2 and 100 random frames, against the warm-up baseline', `${2 * corpus.length} more crafted frames and 100 random ones`);
    await stillServing(client);
  });

  it('wrote no image data and no key into any log line', () => {
    const logs = server.logs.join('\n');
    const windows = [...new Set(sentPayloads.flatMap(fingerprints))];
    const leaked = windows.filter((w) => logs.includes(w));
    reliability.record(`log lines checked for the key and ${windows.length} image fingerprints`, leaked.length === 0 && !logs.includes(KEY) ? 'none found' : 'LEAKED');
    expect(logs).not.toContain(KEY);
    expect(leaked).toEqual([]);
  });

  it('docs/reliability.md shows these tallies', () => {
    expect(reliability.differencesFromDoc()).toEqual([]);
  });
});
