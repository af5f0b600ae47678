// The HTTP client against the real service: every method, each input form, typed errors.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing, labels, readTestdata } from '../../../test/helpers/fixtures.js';
import {
  FaceRecogApiError,
  FaceRecogClientError,
  FaceRecogNetworkError,
  FaceRecogTimeoutError,
  createClient,
  type FaceRecogClient,
} from '../src/index.js';
import { MemoryGallery } from '../../../test/server/helpers/memory-gallery.js';
import { startServer, type TestServer } from '../../../test/server/helpers/server.js';

const OBAMA_AND_BIDEN = 'multi/obama_and_biden.jpg';

async function rejection(promise: Promise<unknown>): Promise<FaceRecogClientError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof FaceRecogClientError)) throw new Error(`expected a FaceRecogClientError, got ${String(error)}`);
  return error;
}

describe.skipIf(fixturesMissing)('createClient against the real service', () => {
  let service: TestServer;
  let client: FaceRecogClient;

  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/1.jpg');
    await gallery.enroll('biden', 'faces/biden/1.jpg');
    service = await startServer({ gallery });
    client = createClient({ baseUrl: service.url, timeoutMs: 20_000 });
  });
  afterAll(() => service?.close());

  it('health reports ok with the loaded models and the gallery', async () => {
    const health = await client.health();
    expect(health.status).toBe('ok');
    expect(health.reasons).toEqual([]);
    expect(health.models?.recognizer).toBe('mobilefacenet');
    expect(health.gallery).toMatchObject({ visitors: 2, faces: 2, failed: 0, syncing: false });
  });

  it('detect finds the labelled number of faces, whatever form the image takes', async () => {
    const expected = labels().find((l) => l.path === OBAMA_AND_BIDEN)?.faces;
    const bytes = readTestdata(OBAMA_AND_BIDEN);
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    const forms = [
      bytes,
      new Uint8Array(arrayBuffer),
      arrayBuffer,
      new Blob([arrayBuffer], { type: 'image/jpeg' }),
      bytes.toString('base64'),
      `data:image/jpeg;base64,${bytes.toString('base64')}`,
    ];
    const answers = await Promise.all(forms.map((image) => client.detect(image)));
    for (const answer of answers) {
      expect(answer.count).toBe(expected);
      expect(answer.faces).toHaveLength(expected!);
      expect(answer.faces[0].landmarks).toHaveLength(5);
      expect(answer.faces[0].bbox).toEqual(answers[0].faces[0].bbox);
    }
  });

  it('detect passes per-request detection settings', async () => {
    const strict = await client.detect(readTestdata(OBAMA_AND_BIDEN), { score_threshold: 0.9999 });
    const loose = await client.detect(readTestdata(OBAMA_AND_BIDEN), { score_threshold: 0.5 });
    expect(strict.count).toBeLessThan(loose.count);
  });

  it('extractFeatures returns a unit-length vector of the recognizer dimension', async () => {
    const answer = await client.extractFeatures(readTestdata('faces/obama/2.jpg'));
    expect(answer.face_detected).toBe(true);
    expect(answer.model).toBe('mobilefacenet');
    expect(answer.feature_vector).toHaveLength(answer.dimension);
    const norm = Math.hypot(...answer.feature_vector!);
    expect(norm).toBeCloseTo(1, 3);
    expect(answer.bbox).toHaveLength(4);

    const none = await client.extractFeatures(readTestdata('noface/coffee.jpg'));
    expect(none).toMatchObject({ face_detected: false, feature_vector: null, bbox: null });
  });

  it('recognize names an enrolled visitor and no one for a stranger', async () => {
    const known = await client.recognize(readTestdata('faces/obama/2.jpg'));
    expect(known).toMatchObject({ visitor_id: 'obama', matched: true, face_detected: true });
    expect(known.confidence).toBeGreaterThanOrEqual(known.threshold);

    const stranger = await client.recognize(readTestdata('faces/tom_cruise/1.jpg'));
    expect(stranger.visitor_id).toBeNull();
    expect(stranger.matched).toBe(false);
    expect(stranger.faces[0].visitor_id).toBeNull();

    const strict = await client.recognize(readTestdata('faces/obama/2.jpg'), { threshold: 0.9999 });
    expect(strict).toMatchObject({ visitor_id: null, matched: false, threshold: 0.9999 });
    expect(strict.confidence).toBe(known.confidence);
  });

  it('recognize answers every face of a group photo: its match as confidence, the detector score as detection_confidence', async () => {
    const answer = await client.recognize(readTestdata('multi/two_people.jpg'));
    const names = answer.faces.map((f) => f.visitor_id).sort();
    expect(names).toEqual(['biden', 'obama']);
    expect(answer.confidence).toBe(answer.faces[0]!.confidence);
    const detected = await client.detect(readTestdata('multi/two_people.jpg'));
    expect(answer.faces.map((f) => f.detection_confidence)).toEqual(detected.faces.map((f) => f.confidence));
  });

  it('options left undefined are not sent: the service applies its defaults', async () => {
    const photo = readTestdata('faces/obama/2.jpg');
    const defaults = await client.recognize(photo);
    const unset = await client.recognize(photo, { threshold: undefined, detect_size: undefined, signal: undefined, timeoutMs: undefined });
    expect(unset).toEqual(defaults);
  });

  it('verify compares the most confident faces of two images', async () => {
    const same = await client.verify(readTestdata('faces/obama/1.jpg'), readTestdata('faces/obama/3.jpg'));
    expect(same.matched).toBe(true);
    expect(same.face_detected).toEqual([true, true]);

    const different = await client.verify(readTestdata('faces/obama/1.jpg'), readTestdata('faces/tom_cruise/1.jpg'));
    expect(different.matched).toBe(false);
    expect(different.similarity).toBeLessThan(same.similarity!);

    const oneEmpty = await client.verify(readTestdata('faces/obama/1.jpg'), readTestdata('noface/coffee.jpg'));
    expect(oneEmpty).toMatchObject({ similarity: null, matched: false, face_detected: [true, false] });
  });

  it('a picture that is not an image is a FaceRecogApiError 400 invalid_image', async () => {
    const error = await rejection(client.detect(new TextEncoder().encode('this is not a picture at all')));
    expect(error).toBeInstanceOf(FaceRecogApiError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_image' });
    expect(error.message).not.toBe('');
  });

  it('a threshold outside [-1, 1] is a 400 invalid_request', async () => {
    const error = await rejection(client.recognize(readTestdata('faces/obama/2.jpg'), { threshold: 2 }));
    expect(error).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(error.message).toMatch(/threshold/);
  });

  it('empty input is refused before anything is sent', async () => {
    const error = await rejection(client.detect(''));
    expect(error.code).toBe('invalid_argument');
    expect(error).not.toBeInstanceOf(FaceRecogApiError);
  });

  it('a user abort rejects with code aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(client.detect(readTestdata('faces/obama/2.jpg'), { signal: controller.signal }));
    expect(error.code).toBe('aborted');
  });
});

describe.skipIf(fixturesMissing)('typed errors from service limits and auth', () => {
  it('an image over MAX_IMAGE_BYTES is a 413', async () => {
    const service = await startServer({ env: { MAX_IMAGE_BYTES: '4096' } });
    try {
      const client = createClient({ baseUrl: service.url });
      const photo = readTestdata('faces/obama/1.jpg');
      expect(photo.length).toBeGreaterThan(4096);
      const error = await rejection(client.detect(photo));
      expect(error).toBeInstanceOf(FaceRecogApiError);
      expect((error as FaceRecogApiError).status).toBe(413);
      expect(['payload_too_large', 'image_too_large']).toContain(error.code);
    } finally {
      await service.close();
    }
  });

  it('API_KEYS: no key or a wrong key is a 401 unauthorized; the right key works; health stays open', async () => {
    const service = await startServer({ env: { API_KEYS: 'k-one,k-two' } });
    try {
      const image = readTestdata('faces/obama/2.jpg');
      const anonymous = await rejection(createClient({ baseUrl: service.url }).detect(image));
      expect(anonymous).toBeInstanceOf(FaceRecogApiError);
      expect(anonymous).toMatchObject({ status: 401, code: 'unauthorized' });

      const wrong = await rejection(createClient({ baseUrl: service.url, apiKey: 'k-three' }).detect(image));
      expect(wrong).toMatchObject({ status: 401, code: 'unauthorized' });

      const keyed = createClient({ baseUrl: service.url, apiKey: 'k-two' });
      expect((await keyed.detect(image)).count).toBe(1);
      expect((await createClient({ baseUrl: service.url }).health()).status).toBe('ok');
    } finally {
      await service.close();
    }
  });

  it('while the models load: health resolves as starting, inference is a 503 not_ready with retryAfterS', async () => {
    const service = await startServer({ engine: 'loading' });
    try {
      const client = createClient({ baseUrl: service.url });
      const health = await client.health();
      expect(health.status).toBe('starting');
      expect(health.reasons.join(' ')).toMatch(/models/);

      const error = await rejection(client.recognize(readTestdata('faces/obama/2.jpg')));
      expect(error).toBeInstanceOf(FaceRecogApiError);
      const apiError = error as FaceRecogApiError;
      expect(apiError).toMatchObject({ status: 503, code: 'not_ready' });
      expect(apiError.retryAfterS).toBeGreaterThan(0);
    } finally {
      await service.close();
    }
  });
});

describe('transport failures', () => {
  let silent: Server;
  let silentUrl: string;

  beforeAll(async () => {
    // Accepts requests and never answers: only the client's own deadline ends the call.
    silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    silent.closeAllConnections();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });

  it('no answer within timeoutMs is a FaceRecogTimeoutError', async () => {
    const error = await rejection(createClient({ baseUrl: silentUrl, timeoutMs: 200 }).health());
    expect(error).toBeInstanceOf(FaceRecogTimeoutError);
    expect(error).toMatchObject({ code: 'client_timeout', timeoutMs: 200 });
  });

  it('a refused connection is a FaceRecogNetworkError', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await rejection(createClient({ baseUrl: `http://127.0.0.1:${port}` }).health());
    expect(error).toBeInstanceOf(FaceRecogNetworkError);
    expect(error.code).toBe('network_error');
  });

  it('an error page that is not the service is an unexpected_response with its status', async () => {
    const proxy = createServer((_request, response) => {
      response.writeHead(502, { 'content-type': 'text/html', 'retry-after': '7' });
      response.end('<html>Bad Gateway</html>');
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const client = createClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
      const error = await rejection(client.detect('aGVsbG8='));
      expect(error).toBeInstanceOf(FaceRecogApiError);
      expect(error).toMatchObject({ status: 502, code: 'unexpected_response', retryAfterS: 7 });
    } finally {
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });

  it('galleryImages asks for one page with the query given, and pages with after', async () => {
    const asked: { url: string; authorization: string | undefined }[] = [];
    const pages: Record<string, object> = {
      '': { images: [], next: null },
      'status=failed&limit=2': {
        images: [
          {
            source: { table: 'visitors', key: '7' },
            visitor_id: 'alice',
            status: 'failed',
            reason: 'no_face',
            face: null,
            checked_at: '2026-01-01T00:00:00.000Z',
          },
        ],
        next: 'c1',
      },
    };
    const gallery = createServer((request, response) => {
      const url = new URL(request.url!, 'http://x');
      asked.push({ url: request.url!, authorization: request.headers.authorization });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(pages[url.searchParams.toString()] ?? { images: [], next: null }));
    });
    await new Promise<void>((resolve) => gallery.listen(0, '127.0.0.1', resolve));
    try {
      const client = createClient({ baseUrl: `http://127.0.0.1:${(gallery.address() as AddressInfo).port}`, apiKey: 'k' });
      const first = await client.galleryImages({ status: 'failed', limit: 2, visitor_id: undefined });
      expect(first.images[0]).toMatchObject({ visitor_id: 'alice', reason: 'no_face', face: null });
      await client.galleryImages({ status: 'failed', limit: 2, after: first.next! });
      expect(await client.galleryImages()).toEqual({ images: [], next: null });
      expect(asked).toEqual([
        { url: '/api/v1/gallery/images?status=failed&limit=2', authorization: 'Bearer k' },
        { url: '/api/v1/gallery/images?status=failed&limit=2&after=c1', authorization: 'Bearer k' },
        { url: '/api/v1/gallery/images', authorization: 'Bearer k' },
      ]);
    } finally {
      await new Promise<void>((resolve) => gallery.close(() => resolve()));
    }
  });

  it('a baseUrl that is not an absolute http(s) URL is refused at once', () => {
    expect(() => createClient({ baseUrl: 'face-recog-api:8000' })).toThrow(FaceRecogClientError);
    expect(() => createClient({ baseUrl: 'ftp://face-recog-api' })).toThrow(/http/);
  });
});
