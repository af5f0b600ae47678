// The service on a visitor backend's own PostgreSQL (Debian's server, not the embedded one), shaped
// as a TypeScript backend makes it: uuid keys, a quoted "base64Image" text column, visitor_images
// with a serial id, a foreign key ON DELETE CASCADE and a bytea image column. The service connects
// as the role the README's SQL creates, which may only read those tables and owns its schema.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/gallery/db.js';
import { fixturesMissing, readTestdata, REPO_ROOT } from '../helpers/fixtures.js';
import { postgresMissing, startPostgresServer, type PostgresServer } from '../helpers/postgres-server.js';
import { cli, embeddingOf, engineExtractor, logger, openGallery, startGalleryService, waitFor, type GalleryService } from './helpers.js';

const API_KEY = 'backend-test-key';
const AUTH = { authorization: `Bearer ${API_KEY}` };

/** The SQL block of the README's database section, with a password of our own. */
function readmeRoleSql(password: string): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const block = [...readme.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]).find((sql) => sql.includes('-- face-recog: read-only role'));
  if (!block) throw new Error('README.md has no SQL block for the read-only role');
  return block.replaceAll("'change-me'", `'${password}'`);
}

/** A photo re-encoded, rescaled or set on a larger canvas: stored images the test data does not hold as such. */
async function variant(relative: string, how: 'png-small' | 'webp' | 'on-canvas'): Promise<Buffer> {
  const image = sharp(readTestdata(relative));
  if (how === 'png-small') {
    const { width = 0 } = await image.metadata();
    return image.resize(Math.round(width * 0.6)).png().toBuffer();
  }
  if (how === 'webp') return image.webp({ quality: 70 }).toBuffer();
  const { width = 0, height = 0 } = await image.metadata();
  return sharp({ create: { width: width * 2, height: Math.round(height * 1.5), channels: 3, background: '#7a8a99' } })
    .composite([{ input: readTestdata(relative), left: Math.round(width / 2), top: Math.round(height / 4) }])
    .jpeg({ quality: 85 })
    .toBuffer();
}

const dataUrl = (bytes: Buffer, format: string) => `data:image/${format};base64,${bytes.toString('base64')}`;

describe.skipIf(fixturesMissing || postgresMissing)("the service on a visitor backend's own PostgreSQL, as a read-only role", () => {
  let server: PostgresServer;
  let backend: Database;
  let service: GalleryService;
  let backendUrl: string;
  let serviceUrl: string;
  const ids = new Map<string, string>();

  beforeAll(async () => {
    server = await startPostgresServer();
    // The backend owns its database and creates its tables as it would in its own migrations.
    backendUrl = (await server.createRole('backend_app', 'postgres')).replace(/\/postgres$/, '/backend');
    await server.createDatabase('backend');
    await server.sql(`ALTER DATABASE backend OWNER TO backend_app`);
    backend = new Database(backendUrl, logger);
    await backend.query(`CREATE TABLE visitors (
      visitor_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL,
      "base64Image" text,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await backend.query(`CREATE TABLE visitor_images (
      id serial PRIMARY KEY,
      visitor_id uuid NOT NULL REFERENCES visitors (visitor_id) ON DELETE CASCADE,
      "base64Image" bytea NOT NULL)`);
    const main: [string, string][] = [
      ['obama', readTestdata('faces/obama/1.jpg').toString('base64')],
      ['biden', dataUrl(readTestdata('faces/biden/1.jpg'), 'jpeg')],
      ['kit', (await variant('faces/kit_harington/1.jpg', 'png-small')).toString('base64')],
      ['alex', dataUrl(await variant('faces/alex_lacamoire/1.jpg', 'webp'), 'webp')],
      ['rose', readTestdata('faces/rose_leslie/1.jpg').toString('base64')],
      ['p01', (await variant('faces/deepface_p01/1.jpg', 'on-canvas')).toString('base64')],
    ];
    for (const [name, image] of main) {
      const [row] = await backend.query<{ id: string }>(`INSERT INTO visitors (name, "base64Image") VALUES ($1, $2) RETURNING visitor_id::text AS id`, [name, image]);
      ids.set(name, row.id);
    }
    const extra: [string, Buffer][] = [
      ['obama', readTestdata('faces/obama/2.jpg')],
      ['kit', readTestdata('faces/kit_harington/2.jpg')],
      ['alex', await variant('faces/alex_lacamoire/2.jpg', 'png-small')],
      ['p01', await variant('faces/deepface_p01/2.jpg', 'webp')],
      // Some backends put base64 text into a bytea column: its bytes are the text's.
      ['p01', Buffer.from(readTestdata('faces/deepface_p01/3.jpg').toString('base64'), 'latin1')],
      ['rose', readTestdata('noface/brick.jpg')],
    ];
    for (const [name, bytes] of extra) {
      await backend.query(`INSERT INTO visitor_images (visitor_id, "base64Image") VALUES ($1, $2)`, [ids.get(name), bytes]);
    }

    const password = randomBytes(9).toString('hex');
    await server.sql(readmeRoleSql(password), [], 'backend');
    serviceUrl = server.url({ user: 'face_recog', password, database: 'backend' });
    service = await startGalleryService(serviceUrl, { API_KEYS: API_KEY });
    await service.gallery.ready;
  });

  afterAll(async () => {
    await service?.close();
    await backend?.close();
    await server?.destroy();
  });

  it('runs with nothing but the README grants: healthy, every stored face enrolled', async () => {
    const health = await service.get('/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', gallery: { database: 'up', faces: 11, visitors: 6, failed: 1, problems: [] } });
    const granted = await server.sql<{ privilege: string; table: string }>(
      `SELECT privilege_type AS privilege, table_name AS table FROM information_schema.role_table_grants
        WHERE grantee = 'face_recog' AND table_schema = 'public' ORDER BY 2, 1`,
      [],
      'backend',
    );
    expect(granted).toEqual([
      { privilege: 'SELECT', table: 'visitor_images' },
      { privilege: 'SELECT', table: 'visitors' },
    ]);
  });

  it('answers uuid visitor ids as strings, recognising every visitor from another photo', async () => {
    const queries: [string, string][] = [
      ['obama', 'faces/obama/3.jpg'],
      ['biden', 'faces/biden/2.jpg'],
      ['kit', 'faces/kit_harington/3.jpg'],
      ['alex', 'faces/alex_lacamoire/3.jpg'],
      ['rose', 'faces/rose_leslie/2.jpg'],
      ['p01', 'faces/deepface_p01/4.jpg'],
    ];
    const matches = await service.gallery.search(await Promise.all(queries.map(([, photo]) => embeddingOf(photo))));
    expect(matches.map((m) => m?.visitorId)).toEqual(queries.map(([name]) => ids.get(name)));
    expect(matches.every((m) => typeof m?.visitorId === 'string' && /^[0-9a-f-]{36}$/.test(m.visitorId))).toBe(true);
  });

  it('lists the faceless stored image under status=failed with reason no_face, by table and serial key', async () => {
    const unauthorized = await service.get('/api/v1/gallery/images?status=failed');
    expect(unauthorized.status).toBe(401);
    const { status, body } = await service.get('/api/v1/gallery/images?status=failed', AUTH);
    expect(status).toBe(200);
    const [brick] = await backend.query<{ id: string }>(`SELECT id::text AS id FROM visitor_images WHERE visitor_id = $1`, [ids.get('rose')]);
    expect(body).toEqual({
      images: [
        {
          source: { table: 'visitor_images', key: brick.id },
          visitor_id: ids.get('rose'),
          status: 'failed',
          reason: 'no_face',
          face: null,
          checked_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        },
      ],
      next: null,
    });
    const byReason = await service.get('/api/v1/gallery/images?status=no_face', AUTH);
    expect(byReason.body.images).toEqual(body.images);
  });

  it('pages through every stored image with after, each once', async () => {
    const seen: any[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const { status, body }: { status: number; body: any } = await service.get(`/api/v1/gallery/images?limit=4${after ? `&after=${after}` : ''}`, AUTH);
      expect(status).toBe(200);
      expect(body.images.length).toBeLessThanOrEqual(4);
      seen.push(...body.images);
      after = body.next;
      pages++;
    } while (after !== null);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(12);
    expect(new Set(seen.map((i) => `${i.source.table}:${i.source.key}`)).size).toBe(12);
    const enrolled = seen.filter((i) => i.status === 'ok');
    expect(enrolled).toHaveLength(11);
    for (const image of enrolled) {
      expect(image.face.bbox).toHaveLength(4);
      expect(image.face.detection_confidence).toBeGreaterThan(0.5);
      expect(image.face.rotated).toBe(0);
    }
    // visitors are keyed by their uuid, visitor_images by their serial id.
    expect(seen.filter((i) => i.source.table === 'visitors').map((i) => i.source.key).sort()).toEqual([...ids.values()].sort());
    expect(seen.filter((i) => i.source.table === 'visitor_images').every((i) => /^\d+$/.test(i.source.key))).toBe(true);

    const mine = await service.get(`/api/v1/gallery/images?visitor_id=${ids.get('p01')}`, AUTH);
    expect(mine.body.images.map((i: any) => [i.source.table, i.status])).toEqual([
      ['visitors', 'ok'],
      ['visitor_images', 'ok'],
      ['visitor_images', 'ok'],
    ]);
    for (const bad of ['limit=0', 'limit=1001', 'limit=ten', 'after=-1', 'status=blurry']) {
      const refused = await service.get(`/api/v1/gallery/images?${bad}`, AUTH);
      expect(refused.status, bad).toBe(400);
      expect(refused.body.error.code).toBe('invalid_request');
    }
  });

  it('never matches a visitor once deleted, nor their images removed by the cascade', async () => {
    const photos = ['faces/kit_harington/3.jpg', 'faces/kit_harington/1.jpg', 'faces/kit_harington/2.jpg'];
    const queries = await Promise.all(photos.map(embeddingOf));
    expect((await service.gallery.search(queries)).map((m) => m?.visitorId)).toEqual(photos.map(() => ids.get('kit')));
    const facesBefore = service.gallery.status().faces;
    await backend.query(`DELETE FROM visitors WHERE name = 'kit'`);
    const left = await backend.query(`SELECT 1 FROM visitor_images WHERE visitor_id = $1`, [ids.get('kit')]);
    expect(left).toEqual([]);
    // From the commit on, whether or not the sync has noticed yet.
    await waitFor('the sync to drop the deleted rows', async () => {
      const matches = await service.gallery.search(queries);
      expect(matches.map((m) => m?.visitorId)).not.toContain(ids.get('kit'));
      return service.gallery.status().faces === facesBefore - 2 ? true : undefined;
    });
    // The listing reads the feature cache, whose rows the sync removes after the faces.
    await waitFor('the deleted images gone from the listing', async () => {
      const listed = await service.get(`/api/v1/gallery/images?visitor_id=${ids.get('kit')}`, AUTH);
      return listed.body.images.length === 0 ? true : undefined;
    });
  });

  it('creates nothing outside its own schema (checked in the catalog)', async () => {
    const outside = await server.sql<{ kind: string; name: string }>(
      `SELECT 'relation' AS kind, n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (c.relowner = 'face_recog'::regrole OR c.relname LIKE 'face\\_recog%') AND n.nspname <> 'face_recog'
          -- PostgreSQL keeps every table's TOAST in pg_toast; ours belong to our tables.
          AND NOT (n.nspname = 'pg_toast' AND EXISTS (SELECT 1 FROM pg_class owner JOIN pg_namespace o ON o.oid = owner.relnamespace
                                                        WHERE o.nspname = 'face_recog' AND c.oid IN (owner.reltoastrelid, (SELECT indexrelid FROM pg_index WHERE indrelid = owner.reltoastrelid))))
       UNION ALL
       SELECT 'function', n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE (p.proowner = 'face_recog'::regrole OR p.proname LIKE 'face\\_recog%') AND n.nspname <> 'face_recog'
       UNION ALL
       SELECT 'type', n.nspname || '.' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typowner = 'face_recog'::regrole AND n.nspname <> 'face_recog'
       UNION ALL
       SELECT 'schema', nspname FROM pg_namespace WHERE nspowner = 'face_recog'::regrole AND nspname <> 'face_recog'
       UNION ALL
       SELECT 'trigger', tgname FROM pg_trigger WHERE tgname LIKE 'face\\_recog%'`,
      [],
      'backend',
    );
    expect(outside).toEqual([]);
    const inside = await server.sql<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'face_recog' AND c.relkind = 'r' ORDER BY 1`,
      [],
      'backend',
    );
    expect(inside.map((r) => r.name)).toEqual(['face_recog_features', 'face_recog_leases', 'face_recog_migrations', 'face_recog_removals']);
  });

  it("installs the optional triggers as the tables' owner, once granted the service schema, their function inside it", async () => {
    const saved = process.env.DATABASE_URL;
    process.env.DATABASE_URL = backendUrl;
    try {
      await expect(cli('db', 'install-triggers')).rejects.toThrow(
        `may not create the triggers' function in the schema "face_recog"; fix: GRANT USAGE, CREATE ON SCHEMA "face_recog" TO "backend_app";`,
      );
      await server.sql(`GRANT USAGE, CREATE ON SCHEMA face_recog TO backend_app`, [], 'backend');
      expect(await cli('db', 'install-triggers')).toEqual([
        'notify triggers installed on public.visitors, public.visitor_images (function face_recog.face_recog_notify())',
      ]);
    } finally {
      process.env.DATABASE_URL = saved;
    }
    const functions = await server.sql<{ name: string }>(
      `SELECT p.oid::regprocedure::text AS name FROM pg_proc p WHERE p.proname LIKE 'face\\_recog%'`,
      [],
      'backend',
    );
    expect(functions).toEqual([{ name: 'face_recog.face_recog_notify()' }]);

    // A gallery that polls so rarely that only a notification can make it see the insert soon.
    const listening = await openGallery(serviceUrl, (await engineExtractor()).extractor, { pollMs: 600_000 });
    try {
      await listening.ready;
      const [row] = await backend.query<{ id: string }>(`INSERT INTO visitors (name, "base64Image") VALUES ('tom', $1) RETURNING visitor_id::text AS id`, [
        readTestdata('faces/tom_cruise/1.jpg').toString('base64'),
      ]);
      const query = await embeddingOf('faces/tom_cruise/1.jpg');
      await waitFor('the insert to be notified and enrolled', async () => ((await listening.search([query]))[0]?.visitorId === row.id ? true : undefined));
    } finally {
      await listening.close();
    }
  });
});
