// Reading the visitor backend's tables: whichever exist, however the image column is spelt, and
// a change check that notices every insert, update and delete without reading an image.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { Database, textArrayLiteral } from '../../src/gallery/db.js';
import { migrate } from '../../src/gallery/migrations.js';
import {
  digestSourceRows,
  existingRowVersions,
  fetchSourceImages,
  introspectSources,
  listSourceRows,
  resolvedOids,
  rowVersionKey,
  rowVersionKeys,
  rowVersionsStatement,
  scanSource,
  sourceOids,
  type Source,
} from '../../src/gallery/sources.js';
import { detectChange, TableReflection } from '../../src/gallery/changes.js';
import { logger, startTestPostgres, type TestPostgres } from './helpers.js';

const SCHEMA = 'face_recog';

describe('visitor tables', () => {
  let pg: TestPostgres;
  let db: Database;

  beforeAll(async () => {
    pg = await startTestPostgres();
    ({ db } = await pg.database('sources'));
  });

  afterAll(async () => {
    await pg?.destroy();
  });

  it('finds neither table in an empty database', async () => {
    const { sources, problems } = await introspectSources(db, SCHEMA);
    expect(sources).toEqual([]);
    expect(problems).toEqual([]);
    expect(sourceOids(sources)).toBe('/');
    expect(await resolvedOids(db)).toBe('/');
  });

  it('reads the quoted camel-case column and the unquoted one', async () => {
    await db.query(`CREATE TABLE visitors (visitor_id text PRIMARY KEY, "base64Image" text)`);
    await db.query(`CREATE TABLE visitor_images (id serial, visitor_id text, base64image varchar)`);
    const { sources } = await introspectSources(db, SCHEMA);
    expect(sources.map((s) => [s.table, s.imageColumnName, s.imageColumn, s.relation])).toEqual([
      ['visitors', 'base64Image', '"base64Image"', '"public"."visitors"'],
      ['visitor_images', 'base64image', '"base64image"', '"public"."visitor_images"'],
    ]);
    expect(await resolvedOids(db)).toBe(sourceOids(sources));
  });

  it('lists rows holding an image without reading them, and digests and fetches them by row', async () => {
    const { sources } = await introspectSources(db, SCHEMA);
    const [visitors, images] = sources;
    await db.query(`INSERT INTO visitors VALUES ('a', 'aW1hZ2UtYQ=='), ('b', NULL), ('c', 'data:image/png;base64,aW1hZ2UtYw==')`);
    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('a', 'aW1hZ2UtYTI='), (NULL, 'aW1hZ2UteA==')`);
    const { rows, window } = await listSourceRows(db, visitors);
    expect(rows.map((r) => r.visitorId).sort()).toEqual(['a', 'c']);
    expect(rows.every((r) => /^\(\d+,\d+\)$/.test(r.ctid) && r.xmin > 0)).toBe(true);
    expect(window.hi).toBeGreaterThan(BigInt(Math.max(...rows.map((r) => r.xmin))));
    expect((await listSourceRows(db, images)).rows.map((r) => r.visitorId)).toEqual(['a']);

    const digested = await digestSourceRows(db, visitors, rows.map((r) => r.ctid));
    const fetched = await fetchSourceImages(db, visitors, rows.map((r) => r.ctid));
    for (const row of digested) {
      const image = fetched.find((f) => f.ctid === row.ctid)!.image;
      expect(row.digest.toString('hex')).toBe(createHash('sha256').update(image).digest('hex'));
    }
    expect(fetched.map((f) => f.image).sort()).toEqual(['aW1hZ2UtYQ==', 'data:image/png;base64,aW1hZ2UtYw==']);
  });

  /** What a pass finds against what a listing taken earlier knows. */
  async function changeSince(source: Source, known: TableReflection) {
    const scan = await scanSource(db, source, known.window.lo);
    return { change: detectChange(known.summary, scan.summary), scan };
  }

  it('sees nothing after reads, inserts as recent rows, and an update or delete of an older row as a reconcile', async () => {
    const { sources } = await introspectSources(db, SCHEMA);
    const images = sources.find((s) => s.table === 'visitor_images')!;
    const visitors = sources.find((s) => s.table === 'visitors')!;
    const listing = await listSourceRows(db, images);
    const known = TableReflection.of(listing.rows, listing.window);
    await db.query(`SELECT * FROM visitor_images`);
    expect((await changeSince(images, known)).change).toBe('nothing');

    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('e', 'ZQ=='), ('f', 'Zg==')`);
    const { change, scan } = await changeSince(images, known);
    expect(change).toBe('inserts');
    expect(scan.recent.map((r) => r.visitorId).sort()).toEqual(['e', 'f']);
    // Once taken in, the same table agrees with the catalog again.
    const next = known.advance(scan.recent, scan.next);
    expect((await changeSince(images, next)).change).toBe('nothing');

    const visitorsListing = await listSourceRows(db, visitors);
    const knownVisitors = TableReflection.of(visitorsListing.rows, visitorsListing.window);
    await db.query(`UPDATE visitors SET "base64Image" = 'Yg==' WHERE visitor_id = 'b'`);
    // b had no image: a row holding one now is new.
    expect((await changeSince(visitors, knownVisitors)).change).toBe('inserts');
    await db.query(`UPDATE visitors SET "base64Image" = 'YS0y' WHERE visitor_id = 'a'`);
    expect((await changeSince(visitors, knownVisitors)).change).toBe('reconcile');
    await db.query(`DELETE FROM visitor_images WHERE visitor_id IN ('e', 'f')`);
    expect((await changeSince(images, next)).change).toBe('reconcile');
    await db.query(`DELETE FROM visitor_images WHERE visitor_id = 'a'`);
    expect((await changeSince(images, known)).change).toBe('reconcile');
    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('a', 'aW1hZ2UtYTI=')`);
  });

  it('confirms row versions: gone after a delete or update, present otherwise', async () => {
    const { sources } = await introspectSources(db, SCHEMA);
    const rows = (await Promise.all(sources.map(async (s) => (await listSourceRows(db, s)).rows))).flat();
    expect(await existingRowVersions(db, sources, rows)).toEqual(new Set(rows.map(rowVersionKey)));
    await db.query(`DELETE FROM visitors WHERE visitor_id = 'a'`);
    await db.query(`UPDATE visitor_images SET base64image = 'bmV3' WHERE visitor_id = 'a'`);
    const alive = await existingRowVersions(db, sources, rows);
    const gone = rows.filter((r) => (r.table === 'visitors' && r.visitorId === 'a') || (r.table === 'visitor_images' && r.visitorId === 'a'));
    expect(gone).toHaveLength(2);
    expect(alive).toEqual(new Set(rows.filter((r) => !gone.includes(r)).map(rowVersionKey)));
    // The same statement in one round trip with its time limit, as a request's search sends it.
    const [within] = await db.read([rowVersionsStatement(sources, rows)!], { remainingMs: 10_000 });
    expect(rowVersionKeys(within)).toEqual(alive);
  });

  it('splices texts into a statement as a text[] literal, whatever characters they hold', async () => {
    const texts = ['(0,1)', 'a"b', 'c\\d', "e'f", '{x,y}', 'NULL', '', 'ünï 😀'];
    const [row] = await db.query<{ v: string[] }>(`SELECT ${textArrayLiteral(texts)} AS v`);
    expect(row.v).toEqual(texts);
  });

  it('notices a table being dropped, reads bytea, and reports a column of another type', async () => {
    const before = await introspectSources(db, SCHEMA);
    await db.query(`DROP TABLE visitor_images`);
    expect(await resolvedOids(db)).not.toBe(sourceOids(before.sources));
    await db.query(`CREATE TABLE visitor_images (visitor_id text, base64image bytea)`);
    const bytea = await introspectSources(db, SCHEMA);
    expect(bytea.sources.map((s) => [s.table, s.imageKind])).toEqual([['visitors', 'text'], ['visitor_images', 'bytea']]);
    expect(bytea.problems).toEqual([]);
    await db.query(`ALTER TABLE visitor_images ALTER COLUMN base64image TYPE jsonb USING to_jsonb(encode(base64image, 'base64'))`);
    const json = await introspectSources(db, SCHEMA);
    expect(json.sources.map((s) => [s.table, s.imageKind])).toEqual([['visitors', 'text'], ['visitor_images', 'unsupported']]);
    expect(json.problems).toEqual([
      expect.objectContaining({ code: 'unsupported_column', table: 'public.visitor_images', message: expect.stringMatching(/base64image is jsonb/) }),
    ]);
  });

  it('applies its migrations once, even when two processes start together', async () => {
    const { db: fresh } = await pg.database('migrations');
    const [first, second] = await Promise.all([migrate(fresh), migrate(fresh)]);
    expect([first.applied, second.applied].sort((a, b) => b.length - a.length)).toEqual([[1, 2, 3], []]);
    expect((await migrate(fresh)).applied).toEqual([]);
    const tables = await fresh.query<{ schema: string; table_name: string }>(
      `SELECT table_schema AS schema, table_name FROM information_schema.tables WHERE table_name LIKE 'face_recog_%' ORDER BY table_name`,
    );
    expect(tables).toEqual([
      { schema: 'face_recog', table_name: 'face_recog_features' },
      { schema: 'face_recog', table_name: 'face_recog_leases' },
      { schema: 'face_recog', table_name: 'face_recog_migrations' },
      { schema: 'face_recog', table_name: 'face_recog_removals' },
    ]);
  });

  it('keeps its tables in the schema DATABASE_SCHEMA names, and accepts only plain lower-case names', async () => {
    expect(loadConfig({}).databaseSchema).toBe('face_recog');
    expect(loadConfig({ DATABASE_SCHEMA: 'kiosk_cache' }).databaseSchema).toBe('kiosk_cache');
    for (const bad of ['Face_Recog', 'face-recog', 'pg_cache', '1cache', 'x'.repeat(64)]) {
      expect(() => loadConfig({ DATABASE_SCHEMA: bad }), bad).toThrow(ConfigError);
    }
    const { url } = await pg.database('custom_schema');
    const custom = new Database(url, logger, 'kiosk_cache');
    try {
      expect((await migrate(custom)).applied).toEqual([1, 2, 3]);
      const tables = await custom.query<{ schema: string }>(
        `SELECT DISTINCT table_schema AS schema FROM information_schema.tables WHERE table_name LIKE 'face_recog_%'`,
      );
      expect(tables).toEqual([{ schema: 'kiosk_cache' }]);
    } finally {
      await custom.close();
    }
  });
});
