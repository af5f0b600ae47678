// Hostile input over the real HTTP endpoints: crafted files, property-based fuzzing of images,
// payload strings and JSON shapes, huge and deeply nested bodies. Every answer must be the
// contract's (status, code, error shape), the service must keep serving, its memory must come back
// to the warm-up baseline, and no log line may carry an image or the key.
import http from 'node:http';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../src/engine/image.js';
import { fixturesMissing } from '../helpers/fixtures.js';
import { MemoryGallery } from '../server/helpers/memory-gallery.js';
import { base64Of, startServer, type TestServer } from '../server/helpers/server.js';
import { craftedCorpus, mutationSeeds, SMALL_PHOTO, type CraftedCase } from './helpers/corpus.js';
import { contractViolations, fingerprints, outcomeOf, postJson, rawRequest, type Answer } from './helpers/http.js';
import { noteMemory, settledMemory } from './helpers/memory.js';
import { Reliability } from './helpers/reliability.js';

const KEY = 'hardening-http-key-5f1c2a';
const AUTH = { authorization: `Bearer ${KEY}` };
const IMAGE_ROUTES = ['/api/v1/detect', '/api/v1/extract-features', '/api/v1/recognize', '/api/v1/verify'] as const;
// Fixed seeds: the same cases every run, so that the table's counts are stable.
const SEED = 20261128;

const reliability = new Reliability('http-input', 'Hostile input over HTTP', 'test/hardening/http-input.test.ts');

/** Streams `{"image":"AAAA..."}` of `bytes` with chunked encoding until the service answers or closes. */
function streamBody(server: TestServer, bytes: number): Promise<{ status: number | null; code?: string; closedBy?: string; sentMb: number }> {
  return new Promise((resolve) => {
    const { port } = new URL(server.url);
    const request = http.request({ host: '127.0.0.1', port, path: '/api/v1/detect', method: 'POST', headers: { 'content-type': 'application/json', ...AUTH } });
    const chunk = Buffer.alloc(1024 * 1024, 'A');
    let sent = 0;
    let status: number | null = null;
    let settled = false;
    const settle = (result: { status: number | null; code?: string; closedBy?: string }) => {
      if (settled) return;
      settled = true;
      request.destroy();
      resolve({ ...result, sentMb: Math.round(sent / 1024 / 1024) });
    };
    const pump = () => {
      while (!settled && sent < bytes) {
        sent += chunk.length;
        if (!request.write(sent === chunk.length ? Buffer.concat([Buffer.from('{"image":"'), chunk]) : chunk)) return void request.once('drain', pump);
      }
      if (!settled) request.end('"}');
    };
    request.on('response', (response) => {
      status = response.statusCode ?? 0;
      let text = '';
      response.setEncoding('utf8').on('data', (c) => (text += c));
      response.on('end', () => settle({ status, code: JSON.parse(text).error?.code }));
      response.on('error', () => settle({ status }));
    });
    request.on('error', (error: NodeJS.ErrnoException) => settle({ status, closedBy: error.code }));
    pump();
  });
}

describe.skipIf(fixturesMissing)('hostile input over HTTP', () => {
  let server: TestServer;
  let corpus: CraftedCase[];
  let photo: string;
  let tinyPng: string;
  /** Everything sent as an image, for the log check. */
  const sentPayloads: string[] = [];

  const bodyFor = (path: (typeof IMAGE_ROUTES)[number], payload: string) =>
    path === '/api/v1/verify' ? { image1: payload, image2: photo } : { image: payload };

  async function ask(path: string, body: unknown): Promise<Answer> {
    const answer = await postJson(server.url, path, body, AUTH);
    expect(contractViolations(answer), `${path} answered ${answer.status}: ${answer.text.slice(0, 200)}`).toEqual([]);
    expect(answer.status, 'never a server fault').toBeLessThan(500);
    return answer;
  }

  async function sendCase(item: CraftedCase, path: (typeof IMAGE_ROUTES)[number]): Promise<Answer> {
    sentPayloads.push(item.payload);
    return ask(path, bodyFor(path, item.payload));
  }

  function expectCase(item: CraftedCase, path: string, answer: Answer): void {
    const { expected } = item;
    expect(answer.status, `${item.name} on ${path}: ${answer.text.slice(0, 200)}`).toBe(expected.status);
    if (expected.status !== 200) expect(answer.body.error.code, item.name).toBe(expected.code);
    else if (expected.faces !== undefined && path === '/api/v1/detect') expect(answer.body.count, item.name).toBe(expected.faces);
  }

  async function stillServing(): Promise<void> {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const answer = await ask('/api/v1/recognize', { image: photo });
    expect(answer.body).toMatchObject({ visitor_id: 'obama', matched: true });
  }

  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    server = await startServer({ env: { API_KEYS: KEY }, gallery });
    corpus = await craftedCorpus();
    photo = base64Of(SMALL_PHOTO);
    tinyPng = (await sharp({ create: { width: 2, height: 2, channels: 3, background: '#888' } }).png().toBuffer()).toString('base64');
  });
  afterAll(async (suite) => {
    await server?.close();
    reliability.finish(suite);
  });

  it('answers every crafted file with its contract code on every image route', async () => {
    for (const item of corpus) {
      for (const path of IMAGE_ROUTES) {
        const answer = await sendCase(item, path);
        expectCase(item, path, answer);
        reliability.record(item.name, outcomeOf(answer));
      }
    }
    await stillServing();
  });

  it('property: random bytes are refused as invalid_image', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), fc.constantFrom(...IMAGE_ROUTES), async (bytes, path) => {
        const payload = Buffer.from(bytes).toString('base64');
        sentPayloads.push(payload);
        const answer = await ask(path, bodyFor(path, payload));
        reliability.record('random bytes (fast-check)', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('400 invalid_image');
      }),
      { seed: SEED, numRuns: 120 },
    );
  });

  it('property: any string that is not base64 of an image is refused as invalid_image', async () => {
    const junk = fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 512 }),
      fc.string({ unit: fc.constantFrom(...'ABCDabcd0123+/=-_ \n\t%!.:;,'), minLength: 1, maxLength: 512 }),
      fc.string({ minLength: 0, maxLength: 64 }).map((s) => `data:${s};base64,${s}`),
    );
    await fc.assert(
      fc.asyncProperty(junk, fc.constantFrom(...IMAGE_ROUTES), async (payload, path) => {
        const answer = await ask(path, bodyFor(path, payload));
        reliability.record('junk strings as image: unicode, base64 alphabet soup, data URLs (fast-check)', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('400 invalid_image');
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it('property: mutated JPEG, PNG and WebP files are answered or refused as invalid_image, never a fault', async () => {
    const seeds = await mutationSeeds();
    const mutation = fc.record({
      which: fc.nat({ max: seeds.length - 1 }),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      cutAt: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
      insert: fc.option(fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 64 })), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async ({ which, flips, cutAt, insert }) => {
        let bytes = Buffer.from(seeds[which].bytes);
        for (const [at, value] of flips) bytes[at % bytes.length] = value;
        if (insert) bytes = Buffer.concat([bytes.subarray(0, insert[0] % bytes.length), insert[1], bytes.subarray(insert[0] % bytes.length)]);
        if (cutAt !== undefined) bytes = bytes.subarray(0, Math.max(1, Math.floor(bytes.length * cutAt)));
        const payload = bytes.toString('base64');
        sentPayloads.push(payload);
        const answer = await ask('/api/v1/recognize', { image: payload, detect_size: 160 });
        reliability.record(`mutated ${seeds[which].name}: flipped, inserted and truncated bytes (fast-check)`, outcomeOf(answer));
        expect(['200', '400 invalid_image']).toContain(outcomeOf(answer));
      }),
      { seed: SEED, numRuns: 120 },
    );
  });

  it('property: a truncated image never decodes partially (decoder level, every cut point)', async () => {
    const seeds = await mutationSeeds();
    const full = await Promise.all(seeds.map((s) => decodeImage(s.bytes)));
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: seeds.length - 1 }), fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), async (which, at) => {
        const bytes = seeds[which].bytes;
        const cut = bytes.subarray(0, Math.floor(bytes.length * at));
        const outcome = await decodeImage(cut).then(
          (image) => (Buffer.from(image.data).equals(Buffer.from(full[which].data)) ? 'decoded, every pixel equal to the whole file' : 'PARTIAL DECODE'),
          (error) => `refused: ${error.code}`,
        );
        reliability.record(`truncated ${seeds[which].name} at a random byte, decoded directly (fast-check)`, outcome);
        expect(outcome).not.toBe('PARTIAL DECODE');
        expect(outcome).not.toBe('refused: undefined');
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it('property: bodies of the wrong shape are refused as invalid_request', async () => {
    const notAnImage = fc.jsonValue().filter((v) => typeof v !== 'string');
    const wrongBody = fc.oneof(
      fc.jsonValue().filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map((v) => ({ kind: 'not an object', body: v })),
      fc.dictionary(fc.string().filter((k) => !['image', 'image1', 'image2'].includes(k)), fc.jsonValue()).map((v) => ({ kind: 'no image field', body: v })),
      notAnImage.map((image) => ({ kind: 'image of another JSON type', body: { image, image1: image, image2: image } })),
    );
    await fc.assert(
      fc.asyncProperty(wrongBody, fc.constantFrom(...IMAGE_ROUTES), async ({ kind, body }, path) => {
        const answer = await ask(path, body);
        reliability.record(`wrong JSON: ${kind} (fast-check)`, outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('400 invalid_request');
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it('property: extra fields are ignored, options of the wrong type or range are refused', async () => {
    const known = ['image', 'image1', 'image2', 'threshold', 'detect_size', 'score_threshold', 'nms_threshold'];
    const extras = fc.dictionary(fc.string({ minLength: 1 }).filter((k) => !known.includes(k) && k !== '__proto__'), fc.jsonValue(), { minKeys: 1, maxKeys: 5 });
    await fc.assert(
      fc.asyncProperty(extras, async (extra) => {
        const answer = await ask('/api/v1/detect', { ...extra, image: tinyPng, detect_size: 32 });
        reliability.record('extra fields of any name and JSON value (fast-check)', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('200');
      }),
      { seed: SEED, numRuns: 60 },
    );
    const badOption = fc.oneof(
      fc.record({ field: fc.constant('detect_size'), value: fc.oneof(fc.integer({ max: 31 }), fc.integer({ min: 1281 }), fc.double({ min: 32.01, max: 1279.99, noNaN: true }).filter((v) => !Number.isInteger(v))) }),
      fc.record({ field: fc.constantFrom('score_threshold', 'nms_threshold'), value: fc.oneof(fc.double({ max: -1e-9, noNaN: true }), fc.double({ min: 1 + 1e-9, noNaN: true })) }),
      fc.record({ field: fc.constantFrom('detect_size', 'score_threshold', 'nms_threshold'), value: fc.oneof(fc.string(), fc.boolean(), fc.array(fc.integer()), fc.object()) }),
    );
    await fc.assert(
      fc.asyncProperty(badOption, async ({ field, value }) => {
        const answer = await ask('/api/v1/detect', { image: tinyPng, [field]: value });
        reliability.record('detect_size, score_threshold, nms_threshold out of range or of the wrong type (fast-check)', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('400 invalid_request');
        expect(answer.body.error.message).toContain(field);
      }),
      { seed: SEED, numRuns: 80 },
    );
  });

  it('property: thresholds outside [-1, 1] or not numbers are refused; any in range is applied', async () => {
    const outside = fc.oneof(
      // JSON has no Infinity (JSON.stringify writes null): 1e400 below is how it arrives.
      fc.double({ min: 1, minExcluded: true, noNaN: true, noDefaultInfinity: true }),
      fc.double({ max: -1, maxExcluded: true, noNaN: true, noDefaultInfinity: true }),
      fc.oneof(fc.string(), fc.boolean(), fc.array(fc.double({ noNaN: true })), fc.object()),
    );
    await fc.assert(
      fc.asyncProperty(outside, fc.constantFrom('/api/v1/recognize', '/api/v1/verify'), async (threshold, path) => {
        const body = path === '/api/v1/verify' ? { image1: tinyPng, image2: tinyPng, threshold } : { image: tinyPng, threshold };
        const answer = await ask(path, body);
        reliability.record('threshold outside [-1, 1], infinite or not a number (fast-check)', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('400 invalid_request');
        expect(answer.body.error.message).toContain('threshold');
      }),
      { seed: SEED, numRuns: 80 },
    );
    // 1e400 parses as Infinity: the one way JSON can carry a non-finite number.
    const infinite = await ask('/api/v1/recognize', `{"image":"${tinyPng}","threshold":1e400}`);
    reliability.record('threshold outside [-1, 1], infinite or not a number (fast-check)', outcomeOf(infinite));
    expect(outcomeOf(infinite)).toBe('400 invalid_request');
    await fc.assert(
      fc.asyncProperty(fc.double({ min: -1, max: 1, noNaN: true }), async (threshold) => {
        const answer = await ask('/api/v1/recognize', { image: tinyPng, detect_size: 32, threshold });
        reliability.record('threshold anywhere in [-1, 1] (fast-check)', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('200');
        expect(answer.body.threshold).toBe(threshold === 0 ? 0 : threshold);
      }),
      { seed: SEED, numRuns: 40 },
    );
  });

  it('refuses deeply nested and prototype-polluting JSON, and keeps serving', async () => {
    const depth = 100_000;
    const nestedArrays = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const nestedObjects = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    const cases: [string, string | Buffer, string][] = [
      [`image nested ${depth} arrays deep`, `{"image":${nestedArrays}}`, '400 invalid_request'],
      [`body nested ${depth} arrays deep`, nestedArrays, '400 invalid_request'],
      [`body of ${depth} unclosed brackets`, '['.repeat(depth), '400 invalid_request'],
      [`extra field nested ${depth} objects deep`, `{"image":"${tinyPng}","detect_size":32,"extra":${nestedObjects}}`, '200'],
      ['__proto__ key at the top', `{"image":"${tinyPng}","__proto__":{"isAdmin":true}}`, '400 invalid_request'],
      [`__proto__ key ${depth} objects deep`, `{"image":"${tinyPng}","x":${'{"a":'.repeat(depth)}{"__proto__":{"polluted":1}}${'}'.repeat(depth)}}`, '400 invalid_request'],
      ['constructor.prototype key', `{"image":"${tinyPng}","constructor":{"prototype":{"polluted":1}}}`, '400 invalid_request'],
      ['JSON with a byte-order mark and invalid UTF-8 in the image', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"image":"'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]), '400 invalid_image'],
    ];
    for (const [name, body, expected] of cases) {
      const answer = await ask('/api/v1/detect', body);
      reliability.record(name, outcomeOf(answer));
      expect(outcomeOf(answer), name).toBe(expected);
    }
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    await stillServing();
  });

  it('answers odd request lines with the contract error: a malformed %-escape, a 16 KB path, a wrong method', async () => {
    const cases: [string, string, string, string][] = [
      ['malformed %-escape in the path', 'POST', '/api/v1/%ZZ', '400 invalid_request'],
      ['16 KB path', 'POST', `/api/v1/${'x'.repeat(16_000)}`, '404 not_found'],
      ['GET on a POST route', 'GET', '/api/v1/detect', '404 not_found'],
      ['DELETE on /health', 'DELETE', '/health', '404 not_found'],
    ];
    for (const [name, method, path, expected] of cases) {
      const answer = await rawRequest(server.url, method, path, AUTH, method === 'POST' ? { image: tinyPng } : undefined);
      expect(contractViolations(answer), name).toEqual([]);
      reliability.record(name, outcomeOf(answer));
      expect(outcomeOf(answer), name).toBe(expected);
    }
  });

  it('refuses a 100 MB body with 413, whether its length is declared or streamed', async () => {
    const hundredMb = 100 * 1024 * 1024;
    const declared = await ask('/api/v1/detect', `{"image":"${'A'.repeat(hundredMb)}"}`);
    reliability.record('100 MB body with Content-Length', outcomeOf(declared));
    expect(outcomeOf(declared)).toBe('413 payload_too_large');

    // Chunked, without a length: the service must stop reading at its limit, not buffer 100 MB. It
    // answers 413 and closes the connection; a client still writing may see the close (EPIPE or
    // ECONNRESET) before it reads the answer, so either ending counts as refusing early.
    const streamed = await streamBody(server, hundredMb);
    const refusedEarly = streamed.sentMb < 100 && (streamed.status === 413 || streamed.status === null);
    reliability.record('100 MB body streamed without a length (chunked)', refusedEarly ? 'refused before 100 MB were read' : `READ IT ALL: ${streamed.status}`);
    reliability.note(
      `The chunked 100 MB body was ${streamed.status === 413 ? 'answered 413' : `cut off (${streamed.closedBy})`} after the client had sent ${streamed.sentMb} MB.`,
    );
    expect(streamed.sentMb).toBeLessThan(100);
    if (streamed.status !== null) expect([streamed.status, streamed.code]).toEqual([413, 'payload_too_large']);
    await stillServing();
  });

  it('answers the whole corpus three more times as the first time, and 200 more fuzz cases (memory noted)', async () => {
    // Warm-up: the tests above ran every decoder, size and error path; one more round of the
    // corpus lets the allocator and libvips' cache reach their working size.
    for (const item of corpus) await sendCase(item, '/api/v1/detect');
    const baseline = await settledMemory();
    const seeds = await mutationSeeds();
    for (let round = 0; round < 3; round++) {
      for (const item of corpus) expectCase(item, '/api/v1/detect', await sendCase(item, '/api/v1/detect'));
    }
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4096 }), fc.nat({ max: seeds.length - 1 }), fc.nat(), async (bytes, which, at) => {
        const seed = seeds[which].bytes;
        const mutated = Buffer.concat([seed.subarray(0, at % seed.length), Buffer.from(bytes)]);
        await ask('/api/v1/recognize', { image: mutated.toString('base64'), detect_size: 160 });
      }),
      { seed: SEED, numRuns: 200 },
    );
    await noteMemory(reliability, baseline, `${3 * corpus.length} more crafted files and 200 fuzz cases`);
    await stillServing();
  });

  it('wrote no image data and no key into any log line', async () => {
    // A request of its own, so that the check holds something even when run alone.
    sentPayloads.push(photo);
    await stillServing();
    const logs = server.logs.join('\n');
    const windows = [...new Set(sentPayloads.flatMap(fingerprints))];
    const leaked = windows.filter((w) => logs.includes(w));
    reliability.record(`log lines checked for the key and ${windows.length} image fingerprints`, leaked.length === 0 && !logs.includes(KEY) ? 'none found' : 'LEAKED');
    reliability.note(`${server.logs.length} log lines were captured during the run.`);
    // Requests are logged (by path), so their images and keys had every chance to show.
    expect(server.logs.some((line) => line.includes('/api/v1/recognize'))).toBe(true);
    expect(logs).not.toContain(KEY);
    expect(leaked).toEqual([]);
  });
});
