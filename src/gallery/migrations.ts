// Versioned schema of the service's own tables. The visitor tables belong to the visitor backend
// and are never touched here. Applied at start by every process; an advisory lock makes two
// processes starting together take turns, and applied versions are recorded so each runs once.
import type { Database } from './db.js';

export const FEATURES_TABLE = 'face_recog_features';
const MIGRATIONS_TABLE = 'face_recog_migrations';
// Any constant shared by all face-recog processes; pg_advisory_xact_lock takes a bigint.
const MIGRATION_LOCK = 7_362_514_031;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'feature cache',
    // One row per (model, stored image): the face found in it, or why none was. source_ctid +
    // source_xmin identify the exact row version; any UPDATE or DELETE of it changes or removes
    // that identity. Synthetic rows (benchmarks) have no source row.
    sql: `
      CREATE TABLE ${FEATURES_TABLE} (
        id bigserial PRIMARY KEY,
        model text NOT NULL,
        source_table text NOT NULL CHECK (source_table IN ('visitors', 'visitor_images', 'synthetic')),
        source_ctid tid,
        source_xmin bigint,
        visitor_id text NOT NULL,
        image_sha256 bytea,
        status text NOT NULL CHECK (status IN ('ok', 'failed')),
        reason text,
        embedding bytea,
        box real[],
        score real,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK ((status = 'ok') = (embedding IS NOT NULL)),
        CHECK ((source_table = 'synthetic') = (source_ctid IS NULL))
      );
      CREATE UNIQUE INDEX ${FEATURES_TABLE}_source ON ${FEATURES_TABLE} (model, source_table, source_ctid)
        WHERE source_ctid IS NOT NULL;
      CREATE INDEX ${FEATURES_TABLE}_digest ON ${FEATURES_TABLE} (model, image_sha256);
    `,
  },
];

/** Applies the migrations not yet applied; returns the versions applied now. */
export async function migrate(database: Database, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  return database.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set((await tx.query<{ version: number }>(`SELECT version FROM ${MIGRATIONS_TABLE}`)).map((r) => r.version));
    const applied: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      await tx.query(migration.sql);
      await tx.query(`INSERT INTO ${MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      applied.push(migration.version);
    }
    return applied;
  });
}
