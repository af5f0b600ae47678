// Security: a key on every route that touches data (found from the router itself, and attacked
// with %-escaped, dotted and decorated paths), on WebSocket handshakes and /metrics; keys compared
// in constant time; catalog identifiers that cannot inject SQL; faces per image and requests per
// key limited; CORS closed by default; no key or image in any log line; the verdict of the `npm audit` step.
import * as crypto from 'node:crypto';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { quoteIdentifier } from '../../src/gallery/db.js';
import { ApiKeys } from '../../src/server/auth.js';
import { redactUrl } from '../../src/redact.js';
import { auditVerdict } from '../../tools/audit.js';
import { fixturesMissing, readTestdata } from '../helpers/fixtures.js';
import { embeddingOf, engineExtractor, openGallery, startTestPostgres, waitFor } from '../gallery/helpers.js';
import { MemoryGallery } from '../server/helpers/memory-gallery.js';
import { base64Of, startServer, type TestServer } from '../server/helpers/server.js';
import { fingerprints, outcomeOf, postJson, rawHandshake, rawRequest, send } from './helpers/http.js';
import { Reliability } from './helpers/reliability.js';
import { RealtimeClient } from '../helpers/realtime-client.js';

// Every comparison of keys goes through this spy, so the test can see how keys are compared.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const KEYS = ['sec-key-one-4c1d9e7a', 'sec-key-two-0b88f2c3'];
const SEED = 20261128;

const reliability = new Reliability('security', 'Security', 'test/hardening/security.test.ts');

/** Method and path of every route, read from the router's own listing. */
function routesOf(server: TestServer): { method: string; path: string }[] {
  const stack: string[] = [];
  const routes: { method: string; path: string }[] = [];
  for (const line of server.app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (.+?) \(([^)]+)\)$/.exec(line);
    if (!match) continue;
    const depth = match[1].length / 4;
    // The listing writes the root wildcard as "*": every path starts with a slash.
    const path = depth === 0 ? `/${match[2].replace(/^\//, '')}` : stack[depth - 1] + match[2];
    stack[depth] = path;
    for (const method of match[3].split(', ')) if (method !== 'HEAD') routes.push({ method, path });
  }
  return routes;
}

/** Answered without a key by design: health for probes, the API documentation, the static demo page. */
const OPEN_ROUTES = new Set(['/health', '/openapi.json', '/*', '/docs', '/docs/', '/docs/*', '/docs/json', '/docs/yaml', '/docs/static/index.html', '/docs/static/swagger-initializer.js']);

describe.skipIf(fixturesMissing)('security', () => {
  const servers: TestServer[] = [];
  const sentPayloads: string[] = [];
  let tinyPng: string;

  const start = async (env: Record<string, string>, gallery?: MemoryGallery) => {
    const server = await startServer({ env, gallery });
    servers.push(server);
    return server;
  };
  /** A body each image route accepts (so a handler reached without a key would answer 200). */
  const validBody = (path: string) => (path.includes('verify') ? { image1: tinyPng, image2: tinyPng } : { image: tinyPng, detect_size: 32 });

  beforeAll(async () => {
    tinyPng = (await sharp({ create: { width: 2, height: 2, channels: 3, background: '#888' } }).png().toBuffer()).toString('base64');
  });
  afterAll(async (suite) => {
    await Promise.all(servers.map((s) => s.close()));
    reliability.finish(suite);
  });

  describe('API keys', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await start({ API_KEYS: KEYS.join(',') });
    });

    it('asks for a key on every route but /health and the documentation, as the router lists them', async () => {
      const routes = routesOf(server);
      expect(routes.map((r) => r.path)).toEqual(expect.arrayContaining(['/api/v1/detect', '/ws/realtime', '/metrics', '/health']));
      const openWithoutKey: string[] = [];
      for (const { method, path } of routes) {
        const concrete = path.replace(/\*$/, path === '/*' ? 'index.html' : 'static/swagger-ui.css');
        const answer = await send(`${server.url}${concrete}`, method === 'POST' ? { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(validBody(path)) } : { method });
        const outcome = outcomeOf(answer);
        reliability.record(`${method} ${path} without a key`, outcome === '401 unauthorized' ? '401 unauthorized' : `${outcome} (open by design)`);
        if (outcome !== '401 unauthorized') openWithoutKey.push(path);
      }
      expect(new Set(openWithoutKey)).toEqual(new Set([...OPEN_ROUTES].filter((p) => routes.some((r) => r.path === p))));
    });

    it('property: %-escaped, dotted and decorated paths never reach a protected handler without a key', async () => {
      const targets = routesOf(server).filter((r) => !OPEN_ROUTES.has(r.path) && !r.path.startsWith('/ws/'));
      const escape = (c: string, upper: boolean) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')[upper ? 'toUpperCase' : 'toLowerCase']()}`;
      const variant = fc.record({
        target: fc.constantFrom(...targets),
        escapes: fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 4 }),
        // Plain spellings weigh more, so that many variants do reach a handler with the key.
        prefix: fc.constantFrom('', '', '', '', '/.', '/x/..', '/health/..', '/docs/..'),
        suffix: fc.constantFrom('', '', '/', '?', '?x=1', '#frag', ';x', '%00', '/.', '?api_key=' + KEYS[0]),
      });
      let reachedWithKey = 0;
      await fc.assert(
        fc.asyncProperty(variant, async ({ target, escapes, prefix, suffix }) => {
          const chars = [...target.path];
          for (const [at, upper] of escapes) {
            const i = 1 + (at % (chars.length - 1));
            if (chars[i] !== '/' && !chars[i].startsWith('%')) chars[i] = escape(chars[i], upper);
          }
          const path = `${prefix}${chars.join('')}${suffix}`;
          const body = target.method === 'POST' ? validBody(target.path) : undefined;
          const withKey = await rawRequest(server.url, target.method, path, { 'x-api-key': KEYS[1] }, body);
          const without = await rawRequest(server.url, target.method, path, {}, body);
          if (withKey.status === 200) reachedWithKey++;
          const outcome = outcomeOf(without);
          reliability.record(
            'protected routes addressed with %-escapes, dot segments, suffixes, ?api_key= (fast-check), without a key',
            withKey.status === 200 ? `reaches the handler with a key: ${outcome} without` : `no route even with a key: ${outcome === '401 unauthorized' ? outcome : 'refused'}`,
          );
          if (withKey.status === 200) expect(outcome, path).toBe('401 unauthorized');
          else expect(without.status, path).not.toBe(200);
        }),
        { seed: SEED, numRuns: 150 },
      );
      // Not vacuous: many variants do reach the handlers when the key is there.
      expect(reachedWithKey).toBeGreaterThan(40);
    });

    it('refuses WebSocket handshakes without a valid key, on every path spelling that reaches the socket', async () => {
      const spellings = ['/ws/realtime', '/ws/realtimetime', '/%77s/realtime', '/ws/%72ealtime', '/./ws/realtime', '/x/../ws/realtime', '/ws/realtime?x=1', '/ws/realtime/'];
      const withQuery = (path: string, key: string) => `${path}${path.includes('?') ? '&' : '?'}api_key=${key}`;
      for (const path of spellings) {
        // With the key, a spelling either reaches the socket (101) or finds no socket there (404).
        const accepted = await rawHandshake(server.url, withQuery(path, KEYS[0]));
        const reaches = accepted.status === 101;
        reliability.record(`WebSocket handshake with the key in ?api_key= (${spellings.length} path spellings)`, reaches ? '101 upgraded' : outcomeOf(accepted));
        expect(['101', '404 not_found']).toContain(reaches ? '101' : outcomeOf(accepted));
        for (const [how, headers, target] of [
          ['no key', {}, path],
          ['a wrong key', { authorization: 'Bearer not-a-key' }, path],
          ['a wrong ?api_key=', {}, withQuery(path, 'not-a-key')],
        ] as const) {
          const answer = await rawHandshake(server.url, target, headers);
          reliability.record(`WebSocket handshake with ${how} (${spellings.length} path spellings)`, reaches ? outcomeOf(answer) : `no socket at that spelling: ${outcomeOf(answer)}`);
          expect(outcomeOf(answer), `${target} with ${how}`).toBe(reaches ? '401 unauthorized' : '404 not_found');
        }
      }
      const camera = await RealtimeClient.connect(`${server.wsUrl}/ws/realtime?api_key=${KEYS[0]}`);
      expect((await camera.ask({ type: 'frame', image: tinyPng })).type).toBe('results');
      camera.socket.terminate();
    });

    it('property: keys are compared by fixed-length digest against every key, whatever is presented', async () => {
      const compare = vi.mocked(crypto.timingSafeEqual);
      const keys = new ApiKeys(KEYS);
      const presented = fc.oneof(
        fc.string({ unit: 'binary', maxLength: 200 }),
        fc.constantFrom(...KEYS).chain((key) => fc.nat({ max: key.length }).map((n) => key.slice(0, n))),
        fc.constantFrom(...KEYS).map((key) => `${key.slice(0, -1)}${key.at(-1) === 'a' ? 'b' : 'a'}`),
        fc.constantFrom(...KEYS),
      );
      await fc.assert(
        fc.property(presented, (candidate) => {
          compare.mockClear();
          const id = keys.identify(candidate);
          const expected = KEYS.indexOf(candidate);
          expect(id).toBe(expected < 0 ? null : `key${expected + 1}`);
          if (candidate === '') {
            reliability.record('presented keys: random, prefixes of a key, a key with its last character changed, the keys (fast-check)', 'empty: no key, nothing compared');
            expect(compare).not.toHaveBeenCalled();
            return;
          }
          // No early exit and no length leak: one comparison per key, always of two 32-byte digests.
          expect(compare).toHaveBeenCalledTimes(KEYS.length);
          for (const [a, b] of compare.mock.calls) expect([(a as Buffer).length, (b as Buffer).length]).toEqual([32, 32]);
          reliability.record('presented keys: random, prefixes of a key, a key with its last character changed, the keys (fast-check)', 'compared as 32-byte digests against every key');
        }),
        { seed: SEED, numRuns: 200 },
      );
    });
  });

  describe('limits', () => {
    it('counts every request of a key, whatever the path spelling, WebSocket handshakes and /metrics included; wrong keys spend no budget', async () => {
      const server = await start({ API_KEYS: KEYS.join(','), RATE_LIMIT_PER_MINUTE: '4' });
      const own = { 'x-api-key': KEYS[0] };
      const spellings = ['/api/v1/detect', '/%61pi/v1/detect', '/api/v1/%64etect', '/api/v1/detect?x=1'];
      for (const path of spellings) {
        const answer = await rawRequest(server.url, 'POST', path, own, validBody(path));
        reliability.record('requests within RATE_LIMIT_PER_MINUTE=4, four path spellings', outcomeOf(answer));
        expect(answer.status).toBe(200);
      }
      for (const attempt of [
        () => rawRequest(server.url, 'POST', '/%61pi/v1/detect', own, validBody('detect')),
        () => rawRequest(server.url, 'GET', '/%6detrics', own),
        () => rawHandshake(server.url, `/ws/realtime?api_key=${KEYS[0]}`),
      ]) {
        const answer = await attempt();
        reliability.record('the same key over its budget: %-escaped POST, %-escaped /metrics, WebSocket handshake', outcomeOf(answer));
        expect(outcomeOf(answer)).toBe('429 rate_limited');
      }
      // Guesses are refused before the limiter: they cannot spend a real key's budget.
      for (let i = 0; i < 10; i++) expect((await postJson(server.url, '/api/v1/detect', validBody('detect'), { 'x-api-key': `guess-${i}` })).status).toBe(401);
      const other = await postJson(server.url, '/api/v1/detect', validBody('detect'), { 'x-api-key': KEYS[1] });
      reliability.record('another key after 10 wrong-key guesses', outcomeOf(other));
      expect(other.status).toBe(200);
    });

    it('embeds and matches at most MAX_FACES faces of a crowd, over HTTP and the WebSocket', async () => {
      const gallery = new MemoryGallery();
      await gallery.enroll('obama', 'faces/obama/2.jpg');
      const queries: number[] = [];
      const search = gallery.search.bind(gallery);
      gallery.search = async (embeddings) => {
        queries.push(embeddings.length);
        return search(embeddings);
      };
      const server = await start({ MAX_FACES: '3' }, gallery);
      // 16 copies of one face in a 4x4 grid.
      const tile = readTestdata('hard/obama_240p.jpg');
      const crowd = await sharp({ create: { width: 1280, height: 960, channels: 3, background: '#000' } })
        .composite([0, 1, 2, 3].flatMap((row) => [0, 1, 2, 3].map((col) => ({ input: tile, left: col * 320, top: row * 240 }))))
        .jpeg()
        .toBuffer();
      const payload = crowd.toString('base64');
      sentPayloads.push(payload);
      const answer = await postJson(server.url, '/api/v1/recognize', { image: payload });
      const matched = answer.body.faces.filter((f: { confidence: number | null }) => f.confidence !== null).length;
      reliability.record('crowd of 16 faces with MAX_FACES=3: recognize', `${answer.body.faces.length} faces listed, ${matched} embedded and searched`);
      expect(answer.body.faces.length).toBeGreaterThanOrEqual(12);
      expect(matched).toBe(3);
      const camera = await RealtimeClient.connect(`${server.wsUrl}/ws/realtime`);
      const frame = await camera.ask({ type: 'frame', image: payload });
      camera.socket.terminate();
      const searched = frame.faces.filter((f: { confidence: number | null }) => f.confidence !== null).length;
      reliability.record('crowd of 16 faces with MAX_FACES=3: WebSocket frame', `${frame.faces.length} faces listed, ${searched} embedded and searched`);
      expect(searched).toBe(3);
      expect(queries).toEqual([3, 3]);
    });
  });

  it('property: CORS is closed by default, for any origin, on preflights and simple requests', async () => {
    const server = await start({ API_KEYS: KEYS.join(',') });
    const origin = fc.oneof(fc.webUrl({ withFragments: false, withQueryParameters: false }).map((u) => new URL(u).origin), fc.constant('null'), fc.string({ minLength: 1, maxLength: 40 }).filter((s) => /^[\x21-\x7e]+$/.test(s)));
    await fc.assert(
      fc.asyncProperty(origin, fc.constantFrom('/api/v1/detect', '/health', '/metrics', '/ws/realtime'), async (from, path) => {
        const preflight = await send(`${server.url}${path}`, { method: 'OPTIONS', headers: { origin: from, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
        const simple = await send(`${server.url}${path}`, { headers: { origin: from } });
        const allowed = [preflight, simple].some((a) => a.headers.get('access-control-allow-origin') !== null || a.headers.get('access-control-allow-credentials') !== null);
        reliability.record('preflight and simple requests from any Origin, CORS_ORIGINS unset (fast-check)', allowed ? 'ALLOWED' : 'no Access-Control-Allow-* header');
        expect(allowed).toBe(false);
      }),
      { seed: SEED, numRuns: 60 },
    );
  });

  it('property: identifiers read from the database catalog are quoted into exactly themselves (real PostgreSQL)', async () => {
    const postgres = await startTestPostgres();
    try {
      const { db } = await postgres.database('identifiers');
      await db.query('CREATE TABLE canary (id int)');
      const wellFormed = (s: string) => s.length > 0 && !s.includes('\0') && Buffer.byteLength(s) <= 63 && Buffer.from(s, 'utf8').toString('utf8') === s;
      const name = fc.oneof(
        fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }),
        fc.constantFrom('x"; DROP TABLE canary; --', 'a" FROM pg_user --', '"', '""', "'; SELECT 1; --", 'base64Image', 'BASE64IMAGE', 'visitors"."x'),
      ).filter(wellFormed);
      await fc.assert(
        fc.asyncProperty(name, async (identifier) => {
          const [row] = await db.query<Record<string, number>>(`SELECT 1 AS ${quoteIdentifier(identifier)}`);
          expect(Object.keys(row)).toEqual([identifier]);
          reliability.record('identifiers: random unicode and injection attempts, as a column alias (fast-check)', 'one identifier, equal to the name');
        }),
        { seed: SEED, numRuns: 120 },
      );
      const [{ exists }] = await db.query<{ exists: boolean }>(`SELECT to_regclass('canary') IS NOT NULL AS exists`);
      expect(exists).toBe(true);
    } finally {
      await postgres.destroy();
    }
  });

  it('reads visitor tables in a schema whose name is an injection attempt, and recognises the visitor stored there', async () => {
    const postgres = await startTestPostgres();
    try {
      const { url, db } = await postgres.database('hostile_schema');
      const schema = 'x"; DROP TABLE canary; --';
      await db.query('CREATE TABLE public.canary (id int)');
      await db.query(`CREATE SCHEMA ${quoteIdentifier(schema)}`);
      await db.query(`CREATE TABLE ${quoteIdentifier(schema)}.visitors (visitor_id text PRIMARY KEY, "base64Image" text)`);
      await db.query(`INSERT INTO ${quoteIdentifier(schema)}.visitors VALUES ($1, $2)`, ['v-obama', base64Of('faces/obama/2.jpg')]);
      await db.query(`ALTER DATABASE hostile_schema SET search_path TO ${quoteIdentifier(schema)}, public`);
      const gallery = await openGallery(url, (await engineExtractor()).extractor);
      try {
        await waitFor('the visitor in the gallery', () => (gallery.status().faces === 1 ? true : undefined), 30_000);
        const [match] = await gallery.search([await embeddingOf('faces/obama/1.jpg')]);
        const [{ exists }] = await db.query<{ exists: boolean }>(`SELECT to_regclass('public.canary') IS NOT NULL AS exists`);
        reliability.record('visitors table in a schema named x"; DROP TABLE canary; --', `${match?.visitorId === 'v-obama' ? 'visitor recognised' : 'NOT FOUND'}, canary table ${exists ? 'intact' : 'DROPPED'}`);
        expect(match?.visitorId).toBe('v-obama');
        expect(exists).toBe(true);
      } finally {
        await gallery.close();
      }
    } finally {
      await postgres.destroy();
    }
  });

  it('wrote no key, wrong key or image into any log line of these servers', async () => {
    // Traffic of its own, so that the check holds something even when run alone: a photo sent
    // with a key, and the same with a wrong key in the header and in the query string.
    const server = await start({ API_KEYS: KEYS.join(',') });
    const image = base64Of('faces/obama/1.jpg');
    sentPayloads.push(image);
    expect((await postJson(server.url, '/api/v1/detect', { image }, { authorization: `Bearer ${KEYS[0]}` })).status).toBe(200);
    expect((await postJson(server.url, '/api/v1/detect', { image }, { authorization: 'Bearer not-a-key' })).status).toBe(401);
    expect((await postJson(server.url, '/api/v1/detect?api_key=not-a-key', { image })).status).toBe(401);
    const logs = servers.flatMap((s) => s.logs).join('\n');
    const secrets = [...KEYS, 'not-a-key', 'guess-0', 'guess-9'];
    const windows = [...new Set(sentPayloads.flatMap(fingerprints))];
    const leaked = [...secrets.filter((k) => logs.includes(k)), ...windows.filter((w) => logs.includes(w))];
    reliability.record('log lines of this suite checked for the keys, the wrong keys tried and the crowd image', leaked.length === 0 ? 'none found' : 'LEAKED');
    // The requests above were logged (by path), so their secrets had every chance to show.
    expect(server.logs.filter((line) => line.includes('/api/v1/detect')).length).toBeGreaterThanOrEqual(3);
    expect(leaked).toEqual([]);
  });

  it('the audit step (tools/audit.ts, run by .ci/run) fails on a high or critical advisory and says why when it cannot ask', () => {
    const report = (vulnerabilities: Record<string, number>) => JSON.stringify({ metadata: { vulnerabilities } });
    const clean = auditVerdict(report({ info: 0, low: 2, moderate: 1, high: 0, critical: 0, total: 3 }));
    const high = auditVerdict(report({ info: 0, low: 0, moderate: 0, high: 1, critical: 0, total: 1 }));
    const critical = auditVerdict(report({ info: 0, low: 0, moderate: 0, high: 0, critical: 2, total: 2 }));
    const unreachable = auditVerdict(JSON.stringify({ message: '405 Method Not Allowed - POST https://registry.example/-/npm/v1/security/advisories/bulk' }));
    expect([clean.failed, high.failed, critical.failed, unreachable.failed]).toEqual([false, true, true, false]);
    expect(unreachable.message).toContain('405 Method Not Allowed');
    expect(unreachable.checked).toBe(false);
    expect(auditVerdict('').checked).toBe(false);
  });
});

describe('redactUrl: the secrets of a URL, masked for logs and printed status', () => {
  it('masks a user-info password and api_key / password parameters, and nothing else', () => {
    expect(redactUrl('postgres://face:s3cr3t@db.internal:5432/visitors?sslmode=require')).toBe('postgres://face:[redacted]@db.internal:5432/visitors?sslmode=require');
    expect(redactUrl('/ws/realtime?api_key=k-123&x=1')).toBe('/ws/realtime?api_key=[redacted]&x=1');
    expect(redactUrl('/api/v1/detect?x=1&API_KEY=k-123#top')).toBe('/api/v1/detect?x=1&API_KEY=[redacted]#top');
    expect(redactUrl('postgresql://db/visitors?user=face&password=s3cr3t')).toBe('postgresql://db/visitors?user=face&password=[redacted]');
    expect(redactUrl('postgres://face@db/visitors')).toBe('postgres://face@db/visitors');
    expect(redactUrl('/health')).toBe('/health');
  });

  it('masks all of a password holding an unescaped "@" or ":", however the URL parses', () => {
    const redacted = redactUrl('postgres://face:p@ss:w0rd@db/visitors');
    expect(redacted).toBe('postgres://face:[redacted]@db/visitors');
    expect(redacted).not.toMatch(/p@ss|w0rd/);
  });
});
