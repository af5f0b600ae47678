// Optional statement-level triggers on the visitor tables: each INSERT, UPDATE, DELETE or
// TRUNCATE sends pg_notify('face_recog_gallery', table), so a running gallery syncs at once
// instead of at its next poll. Installing them is the one change made to the backend's tables,
// and only on request (`face-recog db install-triggers`).
import type { Database } from './db.js';
import { quoteIdentifier } from './db.js';
import { NOTIFY_CHANNEL, NOTIFY_TRIGGER, SCHEMA_CHANGED, introspectSources, type Source } from './sources.js';

const FUNCTION = `${NOTIFY_TRIGGER}()`;

/** Installs (or re-installs) the triggers on every visitor table present; returns their names. */
export async function installTriggers(db: Database): Promise<string[]> {
  return db.transaction(async (tx) => {
    const { sources } = await introspectSources(tx);
    await tx.query(`CREATE OR REPLACE FUNCTION ${FUNCTION} RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('${NOTIFY_CHANNEL}', TG_TABLE_NAME);
        RETURN NULL;
      END $$`);
    for (const source of sources) {
      await tx.query(`DROP TRIGGER IF EXISTS ${NOTIFY_TRIGGER} ON ${source.relation}`);
      await tx.query(`CREATE TRIGGER ${NOTIFY_TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${source.relation}
        FOR EACH STATEMENT EXECUTE FUNCTION ${FUNCTION}`);
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
    await tx.query(`DROP FUNCTION IF EXISTS ${FUNCTION}`);
    await tx.query(`SELECT pg_notify($1, $2)`, [NOTIFY_CHANNEL, SCHEMA_CHANGED]);
    return tables.map((t) => `${t.schema}.${t.table}`);
  });
}

function tableName(source: Source): string {
  return source.relation.replaceAll('"', '');
}
