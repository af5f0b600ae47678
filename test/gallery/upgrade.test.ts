// Installations of the version that created its tables in the first schema of the search path
// (public): at the first start in DATABASE_SCHEMA they are moved there with their features when
// the service's role owns them, else left alone with a fresh cache beside them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/gallery/db.js';
import { encodeEmbedding } from '../../src/gallery/feature-cache.js';
import { migrate, migrations } from '../../src/gallery/migrations.js';
import { ServiceSchema } from '../../src/gallery/service-schema.js';
import { postgresMissing, startPostgresServer, type PostgresServer } from '../helpers/postgres-server.js';
import { logger } from './helpers.js';

const EMBEDDING = encodeEmbedding(new Float32Array(128).fill(1 / Math.sqrt(128)));

/** The first version's layout, created as `role`: the feature cache and migrations in public, the triggers' function too. */
function firstVersionSql(role: string): string {
  const [v1] = migrations(new ServiceSchema('public'));
  return `BEGIN;
    SET LOCAL ROLE ${role};
    ${v1.sql}
    CREATE TABLE public.face_recog_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
    INSERT INTO public.face_recog_migrations (version, name) VALUES (1, 'feature cache');
    CREATE FUNCTION public.face_recog_notify() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
    COMMIT;`;
}

async function insertOldRows(db: Database, table: string): Promise<void> {
  await db.query(
    `INSERT INTO ${table} (model, source_table, source_ctid, source_xmin, visitor_id, image_sha256, status, reason, embedding, box, score)
     VALUES ('mobilefacenet', 'visitors', '(0,1)', 700, 'obama', '\\x01', 'ok', NULL, $1, '{1,2,3,4}', 0.98),
            ('mobilefacenet', 'visitors', '(0,2)', 701, 'brick', '\\x02', 'failed', 'no face detected', NULL, NULL, NULL)`,
    [EMBEDDING],
  );
  // A benchmark's synthetic face, as older versions wrote them (no source row).
  await db.query(`INSERT INTO ${table} (model, source_table, visitor_id, status, embedding) VALUES ('mobilefacenet', 'synthetic', 'synthetic-0', 'ok', $1)`, [EMBEDDING]);
}

const inSchema = (db: Database, schema: string) =>
  db.query<{ name: string }>(
    `SELECT relname AS name FROM pg_class WHERE relnamespace = $1::regnamespace AND relname LIKE 'face\\_recog%' AND relkind = 'r'
     UNION ALL SELECT proname FROM pg_proc WHERE pronamespace = $1::regnamespace AND proname LIKE 'face\\_recog%' ORDER BY 1`,
    [schema],
  );

describe.skipIf(postgresMissing)('upgrading from tables in public', () => {
  let server: PostgresServer;
  const connections: Database[] = [];

  beforeAll(async () => {
    server = await startPostgresServer();
  });

  afterAll(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await server?.destroy();
  });

  it("moves the service role's own tables into its schema, keeping the enrolled features", async () => {
    await server.createDatabase('owned');
    const url = await server.createRole('old_service', 'owned');
    // What the first version needed: creating in public (and, now, a schema of its own).
    await server.sql(`GRANT CREATE ON SCHEMA public TO old_service; GRANT CREATE ON DATABASE owned TO old_service`, [], 'owned');
    await server.sql(firstVersionSql('old_service'), [], 'owned');
    const db = new Database(url, logger);
    connections.push(db);
    await insertOldRows(db, 'public.face_recog_features');

    const report = await migrate(db);
    expect(report).toEqual({
      applied: [2, 3],
      moved: ['"public"."face_recog_features"', '"public"."face_recog_migrations"', '"public"."face_recog_notify"()'],
      leftBehind: [],
    });
    expect(await inSchema(db, 'public')).toEqual([]);
    expect((await inSchema(db, 'face_recog')).map((r) => r.name)).toEqual([
      'face_recog_features', 'face_recog_leases', 'face_recog_migrations', 'face_recog_notify', 'face_recog_removals',
    ]);
    // The enrolled face stays (upright, as the first version only looked upright); the failure is
    // tried again; synthetic faces are gone (every cached row now comes from a visitor row).
    const rows = await db.query(`SELECT visitor_id, status, reason, rotation, embedding = $1 AS same FROM face_recog.face_recog_features`, [EMBEDDING]);
    expect(rows).toEqual([{ visitor_id: 'obama', status: 'ok', reason: null, rotation: 0, same: true }]);
    expect((await migrate(db)).applied).toEqual([]);
  });

  it("leaves another role's tables where they are and builds a fresh cache in its schema", async () => {
    await server.createDatabase('foreign');
    await server.sql(firstVersionSql('postgres'), [], 'foreign');
    const url = await server.createRole('new_service', 'foreign');
    await server.sql(`CREATE SCHEMA face_recog AUTHORIZATION new_service`, [], 'foreign');
    const db = new Database(url, logger);
    connections.push(db);

    const report = await migrate(db);
    expect(report).toEqual({
      applied: [1, 2, 3],
      moved: [],
      leftBehind: ['"public"."face_recog_features"', '"public"."face_recog_migrations"', '"public"."face_recog_notify"()'],
    });
    expect((await inSchema(db, 'face_recog')).map((r) => r.name)).toEqual(['face_recog_features', 'face_recog_leases', 'face_recog_migrations', 'face_recog_removals']);
    expect((await inSchema(db, 'public')).map((r) => r.name)).toEqual(['face_recog_features', 'face_recog_migrations', 'face_recog_notify']);
  });
});
