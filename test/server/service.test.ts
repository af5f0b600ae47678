// Health, docs, metrics, auth, rate limits, CORS, backpressure and logs, over real sockets.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing, testEngine } from '../helpers/fixtures.js';
import { MemoryGallery } from './helpers/memory-gallery.js';
import { base64Of, holdSlot, post, startServer, type TestServer } from './helpers/server.js';

const IMAGE = 'hard/obama_240p.jpg';

describe.skipIf(fixturesMissing)('service', () => {
  const servers: TestServer[] = [];
  const start = async (...args: Parameters<typeof startServer>) => {
    const server = await startServer(...args);
    servers.push(server);
    return server;
  };
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  describe('GET /health', () => {
    it('says starting while the models load, ok once loaded, degraded while the database is down', async () => {
      const server = await start({ engine: 'loading' });
      const loading = await fetch(`${server.url}/health`);
      expect(loading.status).toBe(503);
      const starting = await loading.json();
      expect(starting.status).toBe('starting');
      expect(starting.reasons.join(' ')).toContain('models');
      expect(starting.models).toBeNull();

      server.setEngine(await testEngine());
      server.gallery.syncing = true;
      const ok = await fetch(`${server.url}/health`);
      expect(ok.status).toBe(200);
      const body = await ok.json();
      expect(body).toMatchObject({
        status: 'ok',
        reasons: [],
        models: { detector: 'yunet-2023mar', recognizer: 'mobilefacenet', dimension: 128, match_threshold: 0.45 },
        gallery: { database: 'up', syncing: true, faces: 0, failed: 0 },
        queue: { running: 0, waiting: 0 },
      });

      server.gallery.outage = 'connection refused';
      const degraded = await fetch(`${server.url}/health`);
      expect(degraded.status).toBe(503);
      const down = await degraded.json();
      expect(down.status).toBe('degraded');
      expect(down.reasons.join(' ')).toContain('connection refused');

    });

    it('says starting while the gallery starts', async () => {
      const server = await start({ galleryStarting: true });
      const noGallery = await (await fetch(`${server.url}/health`)).json();
      expect(noGallery).toMatchObject({ status: 'starting', gallery: null });
    });

    it('answers 503 not_ready on the API while the models load', async () => {
      const server = await start({ engine: 'loading' });
      for (const path of ['/api/v1/detect', '/api/v1/extract-features', '/api/v1/recognize']) {
        const { status, body, headers } = await post(server, path, { image: base64Of(IMAGE) });
        expect(status).toBe(503);
        expect(body.error.code).toBe('not_ready');
        expect(headers.get('retry-after')).not.toBeNull();
      }
    });
  });

  describe('documentation', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startServer({ env: { API_KEYS: 'docs-secret' } });
    });
    afterAll(() => server?.close());

    it('serves an OpenAPI document of every contract route, without a key', async () => {
      const response = await fetch(`${server.url}/openapi.json`);
      expect(response.status).toBe(200);
      const spec = await response.json();
      expect(spec.openapi).toMatch(/^3\./);
      const paths = Object.keys(spec.paths);
      for (const path of ['/api/v1/detect', '/api/v1/extract-features', '/api/v1/extract', '/api/v1/recognize', '/api/v1/verify', '/health']) {
        expect(paths).toContain(path);
      }
      const recognize = spec.paths['/api/v1/recognize'].post;
      const requestSchema = recognize.requestBody.content['application/json'].schema;
      expect(requestSchema.required).toContain('image');
      expect(Object.keys(requestSchema.properties)).toEqual(expect.arrayContaining(['image', 'threshold', 'detect_size']));
      const okSchema = recognize.responses['200'].content['application/json'].schema;
      expect(Object.keys(okSchema.properties)).toEqual(expect.arrayContaining(['visitor_id', 'confidence', 'matched', 'face_detected', 'faces']));
      expect(spec.paths['/api/v1/extract'].post.deprecated).toBe(true);
      expect(spec.components.securitySchemes).toHaveProperty('bearer');
    });

    it('documents the WebSocket: the upgrade route, each message type with faces and count', async () => {
      const spec = await (await fetch(`${server.url}/openapi.json`)).json();
      const realtime = spec.paths['/ws/realtime'].get;
      expect(realtime.description).toMatch(/results[\s\S]*event[\s\S]*dropped[\s\S]*error/);
      const messages = realtime.responses['101'].content['application/json'].schema.anyOf;
      expect(messages.map((m: any) => m.properties.type.enum)).toEqual([['results'], ['event'], ['dropped'], ['error']]);
      expect(realtime.parameters.map((p: any) => `${p.in} ${p.name}`)).toEqual(['query camera', 'query api_key']);
      for (const message of messages) expect(message.required).toEqual(expect.arrayContaining(['type', 'faces', 'count']));
      expect(spec.paths['/ws/realtimetime'].get.deprecated).toBe(true);
      const schemas = spec.components.schemas;
      expect(Object.keys(schemas)).toEqual(expect.arrayContaining(['RealtimeFrame', 'RealtimeResults', 'RealtimeEvent', 'RealtimeDropped', 'RealtimeErrorMessage']));
      expect(schemas.RealtimeEvent.required).toEqual(['type', 'event', 'visitor_id', 'track_id', 'camera', 'confidence', 'at', 'faces', 'count']);
      expect(schemas.RealtimeFrame.required).toEqual(['type', 'image']);
      expect(Object.keys(schemas.RealtimeResults.properties.faces.items.properties)).toEqual([
        'bbox',
        'landmarks',
        'detection_confidence',
        'confidence',
        'visitor_id',
        'matched',
        'track_id',
      ]);
    });

    it('documents /metrics with the metrics it exposes', async () => {
      const spec = await (await fetch(`${server.url}/openapi.json`)).json();
      const metrics = spec.paths['/metrics'].get;
      expect(Object.keys(metrics.responses['200'].content)).toEqual(['text/plain']);
      expect(metrics.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
      for (const name of ['face_recog_http_requests_total', 'face_recog_inference_seconds', 'face_recog_ws_frames_total', 'face_recog_gallery_faces']) {
        expect(metrics.description).toContain(`\`${name}\``);
      }
    });

    it('serves the interactive docs at /docs, without a key', async () => {
      const response = await fetch(`${server.url}/docs`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/html');
      const html = await response.text();
      expect(html).toContain('swagger-ui');
      const bundle = await fetch(`${server.url}/docs/static/swagger-ui-bundle.js`);
      expect(bundle.status).toBe(200);
      expect((await bundle.text()).length).toBeGreaterThan(100_000);
    });
  });

  describe('GET /metrics', () => {
    it('exposes request counts and latency per route, inference time per model, queue depth and gallery size', async () => {
      const gallery = new MemoryGallery();
      await gallery.enroll('obama', 'faces/obama/2.jpg');
      const server = await start({ gallery });
      await post(server, '/api/v1/recognize', { image: base64Of(IMAGE) });
      await post(server, '/api/v1/detect', { image: 'junk!' });
      const response = await fetch(`${server.url}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/plain');
      const text = await response.text();
      expect(text).toMatch(/face_recog_http_requests_total\{route="\/api\/v1\/recognize",method="POST",status="200"\} 1/);
      expect(text).toMatch(/face_recog_http_requests_total\{route="\/api\/v1\/detect",method="POST",status="400"\} 1/);
      expect(text).toMatch(/face_recog_http_request_duration_seconds_count\{route="\/api\/v1\/recognize",method="POST",status="200"\} 1/);
      expect(text).toMatch(/face_recog_inference_seconds_count\{model="yunet-2023mar",stage="detect"\} 1/);
      expect(text).toMatch(/face_recog_inference_seconds_count\{model="mobilefacenet",stage="embed"\} 1/);
      expect(text).toMatch(/face_recog_inference_seconds_count\{model="gallery",stage="search"\} 1/);
      expect(text).toMatch(/face_recog_queue_depth\{lane="request"\} 0/);
      expect(text).toMatch(/face_recog_gallery_faces 1/);
    });
  });

  describe('API keys', () => {
    const KEY = 'k3y-for-tests-0123456789';
    let server: TestServer;
    beforeAll(async () => {
      server = await startServer({ env: { API_KEYS: `other-key,${KEY}` } });
    });
    afterAll(() => server?.close());

    it('refuses /api/*, /metrics without a key or with a wrong one: 401 unauthorized', async () => {
      for (const headers of <Record<string, string>[]>[{}, { authorization: 'Bearer wrong' }, { 'x-api-key': `${KEY}x` }, { authorization: KEY }]) {
        const { status, body, headers: h } = await post(server, '/api/v1/detect', { image: base64Of(IMAGE) }, headers);
        expect(status).toBe(401);
        expect(body.error.code).toBe('unauthorized');
        expect(h.get('www-authenticate')).toContain('Bearer');
      }
      expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
      // Unknown API routes do not reveal themselves to callers without a key.
      expect((await fetch(`${server.url}/api/v2/anything`)).status).toBe(401);
    });

    it('accepts either configured key as a Bearer token or X-API-Key', async () => {
      for (const headers of <Record<string, string>[]>[{ authorization: `Bearer ${KEY}` }, { 'x-api-key': KEY }, { 'x-api-key': 'other-key' }]) {
        const { status, body } = await post(server, '/api/v1/detect', { image: base64Of(IMAGE) }, headers);
        expect(status).toBe(200);
        expect(body.count).toBe(1);
      }
      expect((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).status).toBe(200);
    });

    it('keeps /health open and accepts ?api_key= only on WebSocket paths', async () => {
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      const viaQuery = await post(server, `/api/v1/detect?api_key=${KEY}`, { image: base64Of(IMAGE) });
      expect(viaQuery.status).toBe(401);
    });

    it('never writes a key or an image into the logs', async () => {
      await post(server, `/api/v1/detect?api_key=${KEY}`, { image: base64Of(IMAGE) });
      await post(server, '/api/v1/detect', { image: base64Of(IMAGE) }, { authorization: `Bearer ${KEY}` });
      await post(server, '/api/v1/detect', { image: 'data:image/jpeg;base64,/9j/broken' }, { 'x-api-key': KEY });
      await fetch(`${server.wsUrl.replace('ws', 'http')}/ws/realtime?api_key=${KEY}`);
      const logs = server.logs.join('\n');
      expect(server.logs.length).toBeGreaterThan(5);
      expect(logs).toContain('/api/v1/detect');
      expect(logs).toContain('[redacted]');
      expect(logs).not.toContain(KEY);
      expect(logs).not.toContain(base64Of(IMAGE).slice(100, 140));
      expect(logs).not.toContain('/9j/');
      // Every line is JSON with a request id where it concerns a request.
      const parsed = server.logs.map((line) => JSON.parse(line));
      expect(parsed.filter((l) => l.req).every((l) => typeof l.reqId === 'string')).toBe(true);
    });

    it('echoes a sane X-Request-Id and makes one up otherwise', async () => {
      const given = await fetch(`${server.url}/health`, { headers: { 'x-request-id': 'abc-123' } });
      expect(given.headers.get('x-request-id')).toBe('abc-123');
      const made = await fetch(`${server.url}/health`, { headers: { 'x-request-id': 'bad id\twith spaces' } });
      expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  it('leaves everything open when API_KEYS is unset', async () => {
    const server = await start();
    expect((await post(server, '/api/v1/detect', { image: base64Of(IMAGE) })).status).toBe(200);
    expect((await fetch(`${server.url}/metrics`)).status).toBe(200);
  });

  it('limits requests per key per minute: 429 rate_limited with Retry-After, per key', async () => {
    const server = await start({ env: { API_KEYS: 'alpha,beta', RATE_LIMIT_PER_MINUTE: '2' } });
    const detect = (key: string) => post(server, '/api/v1/detect', { image: 'junk!' }, { 'x-api-key': key });
    expect((await detect('alpha')).status).toBe(400);
    expect((await detect('alpha')).status).toBe(400);
    const limited = await detect('alpha');
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Another key has its own budget, and /health is never limited.
    expect((await detect('beta')).status).toBe(400);
    for (let i = 0; i < 3; i++) expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  describe('CORS', () => {
    const preflight = (server: TestServer, origin: string) =>
      fetch(`${server.url}/api/v1/detect`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' },
      });

    it('is closed by default: no Access-Control-Allow-Origin for anyone', async () => {
      const server = await start();
      const response = await preflight(server, 'https://evil.example');
      expect(response.headers.get('access-control-allow-origin')).toBeNull();
      const simple = await fetch(`${server.url}/health`, { headers: { origin: 'https://evil.example' } });
      expect(simple.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('allows exactly the configured origins, preflights included even with keys on', async () => {
      const server = await start({ env: { CORS_ORIGINS: 'https://desk.example', API_KEYS: 'secret' } });
      const allowed = await preflight(server, 'https://desk.example');
      expect(allowed.status).toBe(204);
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://desk.example');
      const other = await preflight(server, 'https://evil.example');
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('refuses to start with a malformed origin, and takes * alone as any origin', async () => {
      await expect(startServer({ env: { CORS_ORIGINS: 'https://desk.example/path' } })).rejects.toThrow('CORS_ORIGINS');
      await expect(startServer({ env: { CORS_ORIGINS: 'desk.example' } })).rejects.toThrow('CORS_ORIGINS');
      const open = await start({ env: { CORS_ORIGINS: '*' } });
      const response = await preflight(open, 'https://anyone.example');
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
    });
  });

  describe('backpressure', () => {
    it('refuses with 503 overloaded and Retry-After when the queue is full, then serves again', async () => {
      const server = await start({ env: { INFERENCE_CONCURRENCY: '1', INFERENCE_QUEUE: '1' } });
      const running = holdSlot(server.scheduler);
      const queued = holdSlot(server.scheduler);
      expect(server.scheduler.saturated).toBe(true);
      const refused = await post(server, '/api/v1/recognize', { image: base64Of(IMAGE) });
      expect(refused.status).toBe(503);
      expect(refused.body.error.code).toBe('overloaded');
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      running.release();
      queued.release();
      await Promise.all([running.done, queued.done]);
      expect((await post(server, '/api/v1/detect', { image: base64Of(IMAGE) })).status).toBe(200);
    });

    it('answers 503 timeout when a request waits past its deadline', async () => {
      const server = await start({ env: { INFERENCE_CONCURRENCY: '1', INFERENCE_QUEUE: '4', REQUEST_TIMEOUT_MS: '100' } });
      const running = holdSlot(server.scheduler);
      const response = await post(server, '/api/v1/detect', { image: base64Of(IMAGE) });
      running.release();
      await running.done;
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('timeout');
      expect(response.headers.get('retry-after')).not.toBeNull();
      expect(server.scheduler.depth()).toBe(0);
    });
  });
});
