// Versioned schema of the service's own tables, all in DATABASE_SCHEMA. The visitor tables belong
// to the visitor backend and are never touched here. Applied at start by every process; an
// advisory lock makes two processes starting together take turns, and applied versions are
// recorded so each runs once.
//
// Before DATABASE_SCHEMA existed, the tables were created wherever an unqualified CREATE put them
// (the first schema of the search path, normally public). A first start in a new schema moves
// them there (ALTER ... SET SCHEMA keeps the cached features), when this role owns them; otherwise
// it starts a fresh cache and says what was left behind.
import { quoteIdentifier as quoted, type Database, type Queryable } from './db.js';
import { DatabasePermissionError, permissionProblem, relationSql } from './problems.js';
import { FEATURES_TABLE, MIGRATIONS_TABLE, NOTIFY_FUNCTION, REMOVALS_TABLE, type ServiceSchema } from './service-schema.js';

// Any constant shared by all face-recog processes; pg_advisory_xact_lock takes a bigint.
const MIGRATION_LOCK = 7_362_514_031;

/** The reasons a stored image has (see ImageReason); the column accepts nothing else. */
const REASONS = ['invalid_image', 'no_face', 'several_faces', 'face_too_small', 'unsupported_column'];

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function migrations(schema: ServiceSchema): Migration[] {
  const features = schema.features;
  return [
    {
      version: 1,
      name: 'feature cache',
      // One row per (model, stored image): the face found in it, or why none was. source_ctid +
      // source_xmin identify the exact row version; any UPDATE or DELETE of it changes or removes
      // that identity. (Synthetic rows, for benchmarks, had no source row until version 3.)
      sql: `
        CREATE TABLE ${features} (
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
        CREATE UNIQUE INDEX ${FEATURES_TABLE}_source ON ${features} (model, source_table, source_ctid)
          WHERE source_ctid IS NOT NULL;
        CREATE INDEX ${FEATURES_TABLE}_digest ON ${features} (model, image_sha256);
      `,
    },
    {
      version: 2,
      name: 'reason codes, rotation, message',
      // `reason` becomes a code (the images endpoint's), the text for people moves to `message`,
      // and the rotation the face was found at is kept. Failed rows held free text from a detector
      // that tried fewer ways: they are deleted, so the sync extracts them again.
      sql: `
        DELETE FROM ${features} WHERE status = 'failed';
        ALTER TABLE ${features}
          ADD COLUMN message text,
          ADD COLUMN rotation smallint CHECK (rotation IN (0, 90, 180, 270)),
          ADD CHECK (reason IN (${REASONS.map((r) => `'${r}'`).join(', ')})),
          ADD CHECK (status = 'ok' OR reason IS NOT NULL);
        UPDATE ${features} SET rotation = 0 WHERE source_table <> 'synthetic';
        -- The images endpoint's pages: by visitor, and the failed ones (few among many).
        CREATE INDEX ${FEATURES_TABLE}_visitor ON ${features} (model, visitor_id, id);
        CREATE INDEX ${FEATURES_TABLE}_failed ON ${features} (model, id) WHERE status = 'failed';
      `,
    },
    {
      version: 3,
      name: 'replicas: versions, removals, leases; no synthetic rows',
      // Benchmarks now store real visitor rows, so every cached row comes from one. Each write
      // takes a version from one sequence (writes are serialised by the lease row, so versions
      // follow commit order); a removal leaves its feature id under a version, so that a
      // following replica applies both in order. One lease row per model names the replica that
      // extracts.
      sql: `
        DELETE FROM ${features} WHERE source_table NOT IN ('visitors', 'visitor_images');
        DO $$ DECLARE c record; BEGIN
          FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = '${features}'::regclass AND pg_get_constraintdef(oid) LIKE '%synthetic%' LOOP
            EXECUTE format('ALTER TABLE ${features} DROP CONSTRAINT %I', c.conname);
          END LOOP;
        END $$;
        CREATE SEQUENCE ${schema.versions};
        ALTER TABLE ${features}
          ALTER COLUMN source_ctid SET NOT NULL,
          ALTER COLUMN source_xmin SET NOT NULL,
          ADD CHECK (source_table IN ('visitors', 'visitor_images')),
          ADD COLUMN version bigint NOT NULL DEFAULT nextval('${schema.versions}');
        CREATE INDEX ${FEATURES_TABLE}_version ON ${features} (model, version);
        CREATE TABLE ${schema.removals} (
          version bigint PRIMARY KEY DEFAULT nextval('${schema.versions}'),
          model text NOT NULL,
          feature_id bigint NOT NULL,
          removed_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ${REMOVALS_TABLE}_model ON ${schema.removals} (model, version);
        CREATE TABLE ${schema.leases} (
          model text PRIMARY KEY,
          holder text,
          epoch bigint NOT NULL DEFAULT 0,
          expires_at timestamptz NOT NULL DEFAULT '-infinity'
        );
      `,
    },
  ];
}

export interface MigrationReport {
  /** Versions applied now. */
  applied: number[];
  /** Objects of an older version moved into the schema (schema.name). */
  moved: string[];
  /** Objects of an older version found elsewhere and left there: this role does not own them. */
  leftBehind: string[];
}

interface SchemaAccess {
  role: string;
  exists: boolean;
  usage: boolean;
  create: boolean;
  canCreateSchema: boolean;
}

async function schemaAccess(tx: Queryable, schema: ServiceSchema): Promise<SchemaAccess> {
  const [row] = await tx.query<{ role: string; exists: boolean; usage: boolean | null; create: boolean | null; can_create_schema: boolean }>(
    `SELECT current_user AS role, n.oid IS NOT NULL AS exists,
            has_schema_privilege(n.oid, 'USAGE') AS usage, has_schema_privilege(n.oid, 'CREATE') AS create,
            has_database_privilege(current_database(), 'CREATE') AS can_create_schema
       FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = $1`,
    [schema.name],
  );
  return { role: row.role, exists: row.exists, usage: row.usage === true, create: row.create === true, canCreateSchema: row.can_create_schema };
}

/** The schema exists and this role may use it (and create in it, when `needCreate`); creates it when allowed. */
async function ensureSchema(tx: Queryable, schema: ServiceSchema, needCreate: () => Promise<boolean>): Promise<void> {
  const access = await schemaAccess(tx, schema);
  const fixSchema = `GRANT USAGE, CREATE ON SCHEMA ${schema.quoted} TO ${quoted(access.role)};`;
  if (!access.exists) {
    if (!access.canCreateSchema) {
      throw new DatabasePermissionError([
        permissionProblem(access.role, null, `may not create the schema ${schema.quoted} for the service's tables`,
          `CREATE SCHEMA ${schema.quoted} AUTHORIZATION ${quoted(access.role)};`),
      ]);
    }
    await tx.query(`CREATE SCHEMA ${schema.quoted}`);
    return;
  }
  if (!access.usage) {
    throw new DatabasePermissionError([permissionProblem(access.role, null, `may not use the schema ${schema.quoted}`, fixSchema)]);
  }
  if (!access.create && (await needCreate())) {
    throw new DatabasePermissionError([permissionProblem(access.role, null, `may not create the service's tables in the schema ${schema.quoted}`, fixSchema)]);
  }
}

async function exists(tx: Queryable, relation: string): Promise<boolean> {
  const [row] = await tx.query<{ found: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS found`, [relation]);
  return row.found;
}

interface LegacyObject {
  kind: 'TABLE' | 'FUNCTION';
  /** schema.name, quoted, as found now; with () for the function. */
  signature: string;
  owned: boolean;
}

/** The service's objects of an older version: where unqualified names resolve, outside our schema. */
async function legacyObjects(tx: Queryable, schema: ServiceSchema): Promise<LegacyObject[]> {
  const rows = await tx.query<{ kind: 'TABLE' | 'FUNCTION'; schema: string; name: string; owned: boolean }>(
    `SELECT 'TABLE' AS kind, n.nspname AS schema, c.relname AS name, pg_has_role(c.relowner, 'USAGE') AS owned
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid IN (to_regclass($1), to_regclass($2)) AND n.nspname <> $4
     UNION ALL
     SELECT 'FUNCTION', n.nspname, p.proname, pg_has_role(p.proowner, 'USAGE')
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE p.oid = to_regprocedure($3) AND n.nspname <> $4
      ORDER BY kind DESC, name`,
    [quoted(FEATURES_TABLE), quoted(MIGRATIONS_TABLE), `${quoted(NOTIFY_FUNCTION)}()`, schema.name],
  );
  return rows.map((r) => ({
    kind: r.kind,
    signature: `${relationSql(r.schema, r.name)}${r.kind === 'FUNCTION' ? '()' : ''}`,
    owned: r.owned,
  }));
}

/** Moves an older version's objects into the schema, when they are all this role's to move. */
async function adoptLegacy(tx: Queryable, schema: ServiceSchema, report: MigrationReport): Promise<void> {
  if (await exists(tx, schema.migrations)) return;
  const found = await legacyObjects(tx, schema);
  if (found.length === 0) return;
  if (found.some((o) => !o.owned)) {
    report.leftBehind.push(...found.map((o) => o.signature));
    return;
  }
  for (const object of found) {
    await tx.query(`ALTER ${object.kind} ${object.signature} SET SCHEMA ${schema.quoted}`);
    report.moved.push(object.signature);
  }
}

/** Read and write on our tables: granted to their owner, missing when another role created them. */
async function checkTableAccess(tx: Queryable, schema: ServiceSchema): Promise<void> {
  const [row] = await tx.query<{ role: string; ok: boolean }>(
    `SELECT current_user AS role,
            has_table_privilege($1::regclass, 'SELECT') AND has_table_privilege($1::regclass, 'INSERT')
              AND has_table_privilege($1::regclass, 'UPDATE') AND has_table_privilege($1::regclass, 'DELETE')
              AND has_sequence_privilege(pg_get_serial_sequence($1::text, 'id')::regclass, 'USAGE') AS ok`,
    [schema.features],
  );
  if (row.ok) return;
  throw new DatabasePermissionError([
    permissionProblem(row.role, schema.features.replaceAll('"', ''), `may not read and write the feature cache ${schema.features}`,
      `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema.quoted} TO ${quoted(row.role)}; ` +
        `GRANT USAGE ON ALL SEQUENCES IN SCHEMA ${schema.quoted} TO ${quoted(row.role)};`),
  ]);
}

/**
 * Creates the schema if need be, moves an older version's tables into it, and applies the
 * migrations not yet applied. Throws DatabasePermissionError (with the fixing SQL) when the role
 * lacks what this needs.
 */
export async function migrate(database: Database): Promise<MigrationReport> {
  const schema = database.schema;
  const all = migrations(schema);
  const report: MigrationReport = { applied: [], moved: [], leftBehind: [] };
  const pending = async (tx: Queryable): Promise<Migration[]> => {
    if (!(await exists(tx, schema.migrations))) return all;
    const done = new Set((await tx.query<{ version: number }>(`SELECT version FROM ${schema.migrations}`)).map((r) => r.version));
    return all.filter((m) => !done.has(m.version));
  };
  await database.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await ensureSchema(tx, schema, async () => (await pending(tx)).length > 0);
    await adoptLegacy(tx, schema, report);
    const todo = await pending(tx);
    if (todo.length > 0) {
      await tx.query(`CREATE TABLE IF NOT EXISTS ${schema.migrations} (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
    }
    for (const migration of todo.sort((a, b) => a.version - b.version)) {
      await tx.query(migration.sql);
      await tx.query(`INSERT INTO ${schema.migrations} (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      report.applied.push(migration.version);
    }
    await checkTableAccess(tx, schema);
  });
  return report;
}
