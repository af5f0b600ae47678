// The visitor backend's tables, read and never written: which of them exist, how their image
// column is spelt, which rows hold an image, and those images.
//
// A stored image is identified by its row version: (table, ctid, xmin). Any UPDATE or DELETE of
// the row changes or removes that identity, so comparing identities finds every change without
// reading a single image; images (TOASTed, large) are read only for rows that are new.
import { summariseRows, XID_MODULUS, type TableSummary, type XidWindow } from './changes.js';
import type { Database, Queryable, Row } from './db.js';
import { quoteIdentifier, textArrayLiteral } from './db.js';
import { permissionProblem, relationSql } from './problems.js';
import type { GalleryProblem } from './types.js';

export const SOURCE_TABLES = ['visitors', 'visitor_images'] as const;
export type SourceTable = (typeof SOURCE_TABLES)[number];

/** pg_notify channel of the optional triggers (`face-recog db install-triggers`). */
export const NOTIFY_CHANNEL = 'face_recog_gallery';
export const NOTIFY_TRIGGER = 'face_recog_notify';
/** NOTIFY payload telling a running gallery that the visitor tables' definition changed (triggers added or removed). */
export const SCHEMA_CHANGED = 'schema';

/** Base types of an image column holding base64 or a data URL. */
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar']);
/** Relation kinds read: plain tables (a view has no row identity; a partitioned table's ctids repeat across partitions). */
const READABLE_KIND = 'r';
const KIND_NAMES: Record<string, string> = { v: 'a view', m: 'a materialized view', p: 'a partitioned table', f: 'a foreign table' };

/** How the image column holds the image: text (base64 or a data URL), bytea (the encoded bytes), or neither. */
export type ImageKind = 'text' | 'bytea' | 'unsupported';

export interface Source {
  table: SourceTable;
  /** The table's oid, to notice it being dropped and re-created. */
  oid: string;
  schema: string;
  /** schema.table, quoted. */
  relation: string;
  /** The visitor id and image columns, quoted. */
  visitorColumn: string;
  imageColumn: string;
  /** The image column's name as created: `base64Image` (quoted) or `base64image`. */
  imageColumnName: string;
  imageKind: ImageKind;
  /** The image column's type as the database names it (e.g. `character varying(255)`). */
  imageType: string;
  /** The visitor id column's type, whether it holds text, and whether the database fills it by itself (serial, identity, default). */
  visitorType: string;
  visitorIsText: boolean;
  visitorHasDefault: boolean;
  /** SQL giving a row's key as text: its primary key, or its ctid when it has none. */
  keySql: string;
  /** Our notify trigger is installed on it. */
  notifies: boolean;
}

/** A row holding an image, without the image. */
export interface SourceRow {
  table: SourceTable;
  ctid: string;
  xmin: number;
  visitorId: string;
}

export interface DigestedRow extends SourceRow {
  /** sha256 of the stored text, or of the stored bytes. */
  digest: Buffer;
}

export interface ImageRow extends SourceRow {
  /** The stored text (base64 or a data URL), or the stored bytes (bytea). */
  image: string | Buffer;
}

export interface Introspection {
  /** The role the service connects as. */
  role: string;
  sources: Source[];
  /** Tables found but not (fully) usable, and why. */
  problems: GalleryProblem[];
}

interface ColumnInfo {
  name: string;
  /** As format_type() gives it. */
  type: string;
  /** The type's name, or its base type's for a domain. */
  base: string;
  has_default: boolean;
}

interface TableRow {
  oid: string;
  schema: string;
  table: SourceTable;
  kind: string;
  resolved: boolean;
  schema_usage: boolean;
  readable: boolean;
  role: string;
  notifies: boolean;
  columns: ColumnInfo[];
  key_columns: string[] | null;
}

/**
 * Every table named like a visitor table, from the catalog (which, unlike information_schema,
 * shows tables this role may not read), with whether an unqualified name resolves to it.
 */
async function candidateTables(db: Queryable, serviceSchema: string): Promise<TableRow[]> {
  return db.query<TableRow>(
    `SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS table, c.relkind::text AS kind,
            c.oid = to_regclass(quote_ident(c.relname))::oid AS resolved,
            has_schema_privilege(n.oid, 'USAGE') AS schema_usage, has_table_privilege(c.oid, 'SELECT') AS readable,
            current_user AS role,
            EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = $2) AS notifies,
            (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                      'base', coalesce(base.typname, ty.typname), 'has_default', a.atthasdef OR a.attidentity <> '') ORDER BY a.attnum)
               FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
               LEFT JOIN pg_type base ON ty.typtype = 'd' AND base.oid = ty.typbasetype
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
            (SELECT json_agg(a.attname ORDER BY k.ord)
               FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = c.oid AND i.indisprimary) AS key_columns
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = ANY ($1::text[]) AND n.nspname <> $3
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
      ORDER BY c.relname, n.nspname`,
    [SOURCE_TABLES, NOTIFY_TRIGGER, serviceSchema],
  );
}

function imageKind(base: string): ImageKind {
  if (TEXT_TYPES.has(base)) return 'text';
  return base === 'bytea' ? 'bytea' : 'unsupported';
}

function keySql(keyColumns: string[] | null): string {
  if (!keyColumns || keyColumns.length === 0) return 'ctid::text';
  if (keyColumns.length === 1) return `${quoteIdentifier(keyColumns[0])}::text`;
  return `json_build_array(${keyColumns.map((c) => `${quoteIdentifier(c)}::text`).join(', ')})::text`;
}

/** Why no table of this name resolves although some exist: the schema's USAGE, or the search path. */
function invisibleProblem(candidate: TableRow): GalleryProblem {
  const name = `${candidate.schema}.${candidate.table}`;
  const role = quoteIdentifier(candidate.role);
  if (!candidate.schema_usage) {
    const grantSelect = candidate.readable ? '' : ` GRANT SELECT ON ${relationSql(candidate.schema, candidate.table)} TO ${role};`;
    return permissionProblem(candidate.role, name, `may not use the schema ${quoteIdentifier(candidate.schema)} holding ${name}`,
      `GRANT USAGE ON SCHEMA ${quoteIdentifier(candidate.schema)} TO ${role};${grantSelect}`);
  }
  return {
    code: 'not_on_search_path',
    table: name,
    message: `${name} is not on the search path of the database role ${role}, so the service does not see it`,
    sql: `ALTER ROLE ${role} SET search_path = "$user", public, ${quoteIdentifier(candidate.schema)};`,
  };
}

/** The table as a source, or the problem that keeps it from being one. */
function sourceOf(t: TableRow): Source | GalleryProblem {
  const name = `${t.schema}.${t.table}`;
  const unusable = (message: string): GalleryProblem => ({ code: 'unusable_table', table: name, message, sql: null });
  if (t.kind !== READABLE_KIND) return unusable(`${name} is ${KIND_NAMES[t.kind] ?? `a relation of kind ${t.kind}`}; only plain tables are read`);
  if (!t.readable) {
    return permissionProblem(t.role, name, `may not read ${name}`, `GRANT SELECT ON ${relationSql(t.schema, t.table)} TO ${quoteIdentifier(t.role)};`);
  }
  const find = (wanted: string) => t.columns.find((c) => c.name === wanted) ?? t.columns.find((c) => c.name.toLowerCase() === wanted.toLowerCase());
  const visitor = find('visitor_id');
  const image = find('base64Image');
  if (!visitor || !image) return unusable(`${name} has no ${visitor ? 'base64Image' : 'visitor_id'} column; it is not read`);
  return {
    table: t.table,
    oid: t.oid,
    schema: t.schema,
    relation: relationSql(t.schema, t.table),
    visitorColumn: quoteIdentifier(visitor.name),
    imageColumn: quoteIdentifier(image.name),
    imageColumnName: image.name,
    imageKind: imageKind(image.base),
    imageType: image.type,
    visitorType: visitor.type,
    visitorIsText: TEXT_TYPES.has(visitor.base),
    visitorHasDefault: visitor.has_default,
    keySql: keySql(t.key_columns),
    notifies: t.notifies,
  };
}

/**
 * Finds the visitor tables the way an unqualified query would (first match on the search path),
 * their visitor_id and image columns (`base64Image` quoted or `base64image`), and what keeps any
 * of them from being read: a missing permission, a schema off the search path, an image column
 * that is neither text nor bytea (its rows are listed as unsupported_column, never read).
 */
export async function introspectSources(db: Queryable, serviceSchema: string): Promise<Introspection> {
  const tables = await candidateTables(db, serviceSchema);
  const role = tables[0]?.role ?? (await db.query<{ role: string }>('SELECT current_user AS role'))[0].role;
  const sources: Source[] = [];
  const problems: GalleryProblem[] = [];
  for (const table of SOURCE_TABLES) {
    const named = tables.filter((t) => t.table === table);
    const resolved = named.find((t) => t.resolved);
    if (!resolved) {
      problems.push(...named.map(invisibleProblem));
      continue;
    }
    const source = sourceOf(resolved);
    if ('code' in source) {
      problems.push(source);
      continue;
    }
    sources.push(source);
    if (source.imageKind === 'unsupported') {
      problems.push({
        code: 'unsupported_column',
        table: `${source.schema}.${table}`,
        message: `${source.schema}.${table}.${source.imageColumnName} is ${source.imageType}, neither text (base64 or a data URL) nor bytea (the image's bytes); its images are listed as unsupported_column and not read`,
        sql: null,
      });
    }
  }
  return { role, sources, problems };
}

/** A text image column's stored text or a bytea column's bytes, as the server hashes them for digestSourceRows. */
function storedBytes(source: Source): string {
  return source.imageKind === 'bytea' ? source.imageColumn : `convert_to(${source.imageColumn}, 'UTF8')`;
}

function rowsWithImage(source: Source): string {
  return `${source.imageColumn} IS NOT NULL AND ${source.visitorColumn} IS NOT NULL`;
}

function sourceRow(table: SourceTable, row: { ctid: string; xmin: string; visitor_id: string }): SourceRow {
  return { table, ctid: row.ctid, xmin: Number(row.xmin), visitorId: row.visitor_id };
}

function windowOf(row: { lo: string; hi: string }): XidWindow {
  return { lo: BigInt(row.lo), hi: BigInt(row.hi) };
}

/** The bounds of the current snapshot as xid8: its oldest running transaction and the next id. */
const SNAPSHOT_BOUNDS = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS lo, pg_snapshot_xmax(pg_current_snapshot())::text AS hi`;

export interface Listing {
  rows: SourceRow[];
  /** The listing's snapshot: rows written by transactions from window.lo on may still come. */
  window: XidWindow;
}

/** Every row holding an image, and the snapshot they were read in; reads the heap only (the null bitmap), never the images. */
export async function listSourceRows(db: Database, source: Source): Promise<Listing> {
  return db.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    const [bounds] = await tx.query<{ lo: string; hi: string }>(SNAPSHOT_BOUNDS);
    const rows = await tx.query<{ ctid: string; xmin: string; visitor_id: string }>(
      `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id
         FROM ${source.relation} WHERE ${rowsWithImage(source)}`,
    );
    return { rows: rows.map((r) => sourceRow(source.table, r)), window: windowOf(bounds) };
  });
}

/** The current version of the given rows with the sha256 of their image, hashed by the server. */
export async function digestSourceRows(db: Queryable, source: Source, ctids: string[]): Promise<DigestedRow[]> {
  const rows = await db.query<{ ctid: string; xmin: string; visitor_id: string; digest: Buffer }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id,
            sha256(${storedBytes(source)}) AS digest
       FROM ${source.relation} WHERE ctid = ANY ($1::tid[]) AND ${rowsWithImage(source)}`,
    [ctids],
  );
  return rows.map((r) => ({ ...sourceRow(source.table, r), digest: r.digest }));
}

/** The current version of the given rows with their stored image (text or bytes). */
export async function fetchSourceImages(db: Queryable, source: Source, ctids: string[]): Promise<ImageRow[]> {
  const rows = await db.query<{ ctid: string; xmin: string; visitor_id: string; image: string | Buffer }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id, ${source.imageColumn} AS image
       FROM ${source.relation} WHERE ctid = ANY ($1::tid[]) AND ${rowsWithImage(source)}`,
    [ctids],
  );
  return rows.map((r) => ({ ...sourceRow(source.table, r), image: r.image }));
}

export interface SourceScan {
  /** The table split by the window from `lo` to this scan's snapshot. */
  summary: TableSummary;
  recent: SourceRow[];
  /** This scan's snapshot: where the next window starts, and its end. */
  next: XidWindow;
  /** What the pass cost the database: from the statement's start to its row, on the server's clock. */
  serverMs: number;
}

/**
 * One pass over the table's heap (TOAST untouched): the count and xmin sum of the rows written
 * before `lo`, and the rows written since, listed (see changes.ts).
 */
export async function scanSource(db: Queryable, source: Source, lo: bigint): Promise<SourceScan> {
  const [row] = await db.query<{ lo: string; hi: string; settled_count: string; settled_sum: string; recent: [string, string, string][]; server_ms: number }>(
    `WITH snapshot AS (${SNAPSHOT_BOUNDS}),
          versions AS (
            SELECT ctid::text AS ctid, xmin::text::bigint AS x, ${source.visitorColumn}::text AS visitor_id,
                   ((xmin::text::bigint - $2::bigint + ${XID_MODULUS}) % ${XID_MODULUS}) < snapshot.hi::bigint - $1::bigint AS recent
              FROM ${source.relation}, snapshot WHERE ${rowsWithImage(source)})
     SELECT snapshot.lo, snapshot.hi, v.settled_count, v.settled_sum, v.recent,
            (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::float8 AS server_ms
       FROM snapshot, (SELECT count(*) FILTER (WHERE NOT recent)::text AS settled_count,
                              coalesce(sum(x) FILTER (WHERE NOT recent), 0)::text AS settled_sum,
                              coalesce(json_agg(json_build_array(ctid, x::text, visitor_id)) FILTER (WHERE recent), '[]') AS recent
                         FROM versions) v`,
    [lo.toString(), (lo % XID_MODULUS).toString()],
  );
  const next = windowOf(row);
  const recent = row.recent.map(([ctid, xmin, visitorId]) => sourceRow(source.table, { ctid, xmin, visitor_id: visitorId }));
  return {
    summary: { window: { lo, hi: next.hi }, settled: { count: Number(row.settled_count), xminSum: BigInt(row.settled_sum) }, recent: summariseRows(recent) },
    recent,
    next,
    serverMs: row.server_ms,
  };
}

/** The visitor tables' oids as an unqualified name resolves them now ('' for an absent one), in SOURCE_TABLES order. */
export async function resolvedOids(db: Queryable): Promise<string> {
  const tables = SOURCE_TABLES.map((t) => `coalesce(to_regclass('${t}')::oid::text, '')`).join(', ');
  const [row] = await db.query<{ tables: string }>(`SELECT concat_ws('/', ${tables}) AS tables`);
  return row.tables;
}

/** The oids of the visitor tables as resolved now ('' for an absent one), in SOURCE_TABLES order. */
export function sourceOids(sources: Source[]): string {
  return SOURCE_TABLES.map((t) => sources.find((s) => s.table === t)?.oid ?? '').join('/');
}

/**
 * Which of the given row versions still exist, as `${table}:${ctid}:${xmin}` keys. One
 * statement for all tables, run in its own snapshot: a row deleted or updated by a transaction
 * committed before this call is absent.
 */
/**
 * A statement listing which of these row versions the visitor tables still hold (as RowVersion
 * rows), or null when none is of these sources. It takes no parameters, so that it can be sent
 * with others in one round trip (Database.read).
 */
export function rowVersionsStatement(sources: Source[], rows: SourceRow[]): string | null {
  const parts: string[] = [];
  for (const source of sources) {
    const ctids = rows.filter((r) => r.table === source.table).map((r) => r.ctid);
    if (ctids.length === 0) continue;
    parts.push(
      `SELECT '${source.table}' AS t, ctid::text AS ctid, xmin::text AS xmin FROM ${source.relation}
        WHERE ctid = ANY (${textArrayLiteral(ctids)}::tid[]) AND ${rowsWithImage(source)}`,
    );
  }
  return parts.length === 0 ? null : parts.join(' UNION ALL ');
}

/** A row version as rowVersionsStatement lists it. */
interface RowVersion {
  t: string;
  ctid: string;
  xmin: string;
}

/** The rowVersionKey of each row version rowVersionsStatement listed. */
export function rowVersionKeys(found: Row[]): Set<string> {
  return new Set((found as unknown as RowVersion[]).map((r) => `${r.t}:${r.ctid}:${r.xmin}`));
}

/** Which of these row versions the visitor tables still hold, by rowVersionKey. */
export async function existingRowVersions(db: Queryable, sources: Source[], rows: SourceRow[]): Promise<Set<string>> {
  const statement = rowVersionsStatement(sources, rows);
  return statement ? rowVersionKeys(await db.query(statement)) : new Set();
}

export function rowVersionKey(row: { table: string; ctid: string; xmin: number }): string {
  return `${row.table}:${row.ctid}:${row.xmin}`;
}

/** How many rows of the table hold an image (for `face-recog gallery status`). */
export async function countSourceRows(db: Queryable, source: Source): Promise<number> {
  const [row] = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${source.relation} WHERE ${rowsWithImage(source)}`);
  return Number(row.n);
}

/** The keys (primary key, or ctid) of the given row versions, by rowVersionKey; a row changed or gone since is absent. */
export async function sourceKeys(db: Queryable, source: Source, rows: SourceRow[]): Promise<Map<string, string>> {
  if (rows.length === 0) return new Map();
  const found = await db.query<{ ctid: string; xmin: string; key: string }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.keySql} AS key FROM ${source.relation} WHERE ctid = ANY ($1::tid[])`,
    [rows.map((r) => r.ctid)],
  );
  return new Map(found.map((r) => [rowVersionKey({ table: source.table, ctid: r.ctid, xmin: Number(r.xmin) }), r.key]));
}

/** Base64 or a data URL, as some backends store in a bytea column too (the text's bytes). */
const BASE64_TEXT = /^(data:image\/[a-z0-9.+-]+;base64,)?[A-Za-z0-9+/_=\r\n-]+$/i;
/** Enough of the start of the bytes to tell an image file from base64 text. */
const SNIFF_BYTES = 64;

/**
 * What to hand the extractor: a text column's text; a bytea column's bytes, unless they are the
 * bytes of base64 text (no image file starts with only base64 characters), then that text.
 */
export function storedImage(image: string | Buffer): string | Buffer {
  if (typeof image === 'string') return image;
  return BASE64_TEXT.test(image.subarray(0, SNIFF_BYTES).toString('latin1')) ? image.toString('latin1') : image;
}
