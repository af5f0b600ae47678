// Optional statement-level triggers on the visitor tables: each INSERT, UPDATE, DELETE or
// TRUNCATE sends pg_notify('face_recog_gallery', table), so a running gallery syncs at once
// instead of at its next poll. Installing them is the one change made to the backend's tables,
// and only on request (`face-recog db install-triggers`). Their function lives in the service's
// schema (DATABASE_SCHEMA); the triggers themselves belong to the tables.
//
// Installing needs, for the role running the command: TRIGGER on each visitor table (its owner
// has it) and USAGE and CREATE on the service's schema (for the function). The roles writing the visitor
// tables need nothing more: a trigger runs its function whatever their privileges.
import type { Database, Queryable } from './db.js';
import { quoteIdentifier } from './db.js';
import { DatabasePermissionError, permissionProblem } from './problems.js';
import type { ServiceSchema } from './service-schema.js';
import { NOTIFY_CHANNEL, NOTIFY_TRIGGER, SCHEMA_CHANGED, introspectSources, type Source } from './sources.js';
import type { GalleryProblem } from './types.js';

/** What the role lacks to install the triggers on these tables, with the SQL that grants it. */
async function installProblems(tx: Queryable, schema: ServiceSchema, sources: Source[]): Promise<GalleryProblem[]> {
  const [row] = await tx.query<{ role: string; schema_exists: boolean; can_create: boolean | null; no_trigger: string[] }>(
    `SELECT current_user AS role, n.oid IS NOT NULL AS schema_exists, has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE') AS can_create,
            ARRAY(SELECT t FROM unnest($2::text[]) AS t WHERE NOT has_table_privilege(t, 'TRIGGER')) AS no_trigger
       FROM (SELECT 1) one LEFT JOIN pg_namespace n ON n.nspname = $1`,
    [schema.name, sources.map((s) => s.relation)],
  );
  const role = quoteIdentifier(row.role);
  const problems: GalleryProblem[] = [];
  if (!row.schema_exists) {
    problems.push({
      code: 'permission_denied',
      table: null,
      message: `the schema ${schema.quoted} does not exist yet: start the service once (it creates it), or have a DBA create it for the service's role`,
      sql: `CREATE SCHEMA ${schema.quoted} AUTHORIZATION <the service's role>;`,
    });
  } else if (!row.can_create) {
    problems.push(permissionProblem(row.role, null, `may not create the triggers' function in the schema ${schema.quoted}`, `GRANT USAGE, CREATE ON SCHEMA ${schema.quoted} TO ${role};`));
  }
  if (row.no_trigger.length > 0) {
    problems.push(
      permissionProblem(row.role, null, `may not create triggers on ${row.no_trigger.join(', ')} (run this as their owner, or grant it)`,
        `GRANT TRIGGER ON ${row.no_trigger.join(', ')} TO ${role};`),
    );
  }
  return problems;
}

/** Installs (or re-installs) the triggers on every visitor table present; returns their names. */
export async function installTriggers(db: Database): Promise<string[]> {
  const schema = db.schema;
  return db.transaction(async (tx) => {
    const { sources } = await introspectSources(tx, schema.name);
    const problems = await installProblems(tx, schema, sources);
    if (problems.length > 0) throw new DatabasePermissionError(problems);
    await tx.query(`CREATE OR REPLACE FUNCTION ${schema.notifyFunction}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('${NOTIFY_CHANNEL}', TG_TABLE_NAME);
        RETURN NULL;
      END $$`);
    for (const source of sources) {
      await tx.query(`DROP TRIGGER IF EXISTS ${NOTIFY_TRIGGER} ON ${source.relation}`);
      await tx.query(`CREATE TRIGGER ${NOTIFY_TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${source.relation}
        FOR EACH STATEMENT EXECUTE FUNCTION ${schema.notifyFunction}()`);
    }
    await tx.query(`SELECT pg_notify($1, $2)`, [NOTIFY_CHANNEL, SCHEMA_CHANGED]);
    return sources.map(tableName);
  });
}

/** Removes the triggers wherever they are, and their function; returns the tables they were on. */
export async function uninstallTriggers(db: Database): Promise<string[]> {
  return db.transaction(async (tx) => {
    const tables = await tx.query<{ schema: string; table: string }>(
      `SELECT n.nspname AS schema, c.relname AS table FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE t.tgname = $1 ORDER BY 1, 2`,
      [NOTIFY_TRIGGER],
    );
    for (const { schema, table } of tables) {
      await tx.query(`DROP TRIGGER ${NOTIFY_TRIGGER} ON ${quoteIdentifier(schema)}.${quoteIdentifier(table)}`);
    }
    await tx.query(`DROP FUNCTION IF EXISTS ${db.schema.notifyFunction}()`);
    await tx.query(`SELECT pg_notify($1, $2)`, [NOTIFY_CHANNEL, SCHEMA_CHANGED]);
    return tables.map((t) => `${t.schema}.${t.table}`);
  });
}

function tableName(source: Source): string {
  return `${source.schema}.${source.table}`;
}
