// The visitor backend's tables, read and never written: which of them exist, how their image
// column is spelt, which rows hold an image, and those images.
//
// A stored image is identified by its row version: (table, ctid, xmin). Any UPDATE or DELETE of
// the row changes or removes that identity, so comparing identities finds every change without
// reading a single image; images (TOASTed, large) are read only for rows that are new.
import type { Queryable } from './db.js';
import { quoteIdentifier } from './db.js';

export const SOURCE_TABLES = ['visitors', 'visitor_images'] as const;
export type SourceTable = (typeof SOURCE_TABLES)[number];

/** pg_notify channel of the optional triggers (`face-recog db install-triggers`). */
export const NOTIFY_CHANNEL = 'face_recog_gallery';
export const NOTIFY_TRIGGER = 'face_recog_notify';
/** NOTIFY payload telling a running gallery that the visitor tables' definition changed (triggers added or removed). */
export const SCHEMA_CHANGED = 'schema';

const TEXT_TYPES = new Set(['text', 'character varying', 'character']);

export interface Source {
  table: SourceTable;
  /** The table's oid, to notice it being dropped and re-created. */
  oid: string;
  /** schema.table, quoted. */
  relation: string;
  /** The visitor id and image columns, quoted. */
  visitorColumn: string;
  imageColumn: string;
  /** The image column's name as created: `base64Image` (quoted) or `base64image`. */
  imageColumnName: string;
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
  /** sha256 of the stored text. */
  digest: Buffer;
}

export interface ImageRow extends SourceRow {
  image: string;
}

export interface Introspection {
  sources: Source[];
  /** Tables found but not usable, and why. */
  problems: string[];
}

interface ColumnRow {
  table_schema: string;
  table_name: SourceTable;
  oid: string;
  column_name: string;
  data_type: string;
  notifies: boolean;
}

/**
 * Finds the visitor tables the way an unqualified query would (first match on search_path) and
 * their visitor_id and image columns (`base64Image` quoted or `base64image`, text types only).
 */
export async function introspectSources(db: Queryable): Promise<Introspection> {
  const columns = await db.query<ColumnRow>(
    `SELECT c.table_schema, c.table_name, cls.oid::text AS oid, c.column_name, c.data_type,
            EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = cls.oid AND t.tgname = $2) AS notifies
       FROM information_schema.columns c
       JOIN LATERAL (SELECT to_regclass(quote_ident(c.table_name)) AS oid) resolved ON true
       JOIN pg_class cls ON cls.oid = resolved.oid
       JOIN pg_namespace ns ON ns.oid = cls.relnamespace AND ns.nspname = c.table_schema
      WHERE c.table_name = ANY ($1::text[])
      ORDER BY c.table_name, c.ordinal_position`,
    [SOURCE_TABLES, NOTIFY_TRIGGER],
  );
  const sources: Source[] = [];
  const problems: string[] = [];
  for (const table of SOURCE_TABLES) {
    const cols = columns.filter((c) => c.table_name === table);
    if (cols.length === 0) continue;
    const { table_schema: schema, oid, notifies } = cols[0];
    const visitor = cols.find((c) => c.column_name === 'visitor_id') ?? cols.find((c) => c.column_name.toLowerCase() === 'visitor_id');
    const image = cols.find((c) => c.column_name === 'base64Image') ?? cols.find((c) => c.column_name.toLowerCase() === 'base64image');
    if (!visitor || !image) {
      problems.push(`table ${schema}.${table} has no ${visitor ? 'base64Image' : 'visitor_id'} column; it is not read`);
      continue;
    }
    if (!TEXT_TYPES.has(image.data_type)) {
      problems.push(`${schema}.${table}.${image.column_name} is ${image.data_type}, not text (base64 or data URL); it is not read`);
      continue;
    }
    sources.push({
      table,
      oid,
      relation: `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`,
      visitorColumn: quoteIdentifier(visitor.column_name),
      imageColumn: quoteIdentifier(image.column_name),
      imageColumnName: image.column_name,
      notifies,
    });
  }
  return { sources, problems };
}

function rowsWithImage(source: Source): string {
  return `${source.imageColumn} IS NOT NULL AND ${source.visitorColumn} IS NOT NULL`;
}

function sourceRow(table: SourceTable, row: { ctid: string; xmin: string; visitor_id: string }): SourceRow {
  return { table, ctid: row.ctid, xmin: Number(row.xmin), visitorId: row.visitor_id };
}

/** Every row holding an image; reads the heap only (the null bitmap), never the images. */
export async function listSourceRows(db: Queryable, source: Source): Promise<SourceRow[]> {
  const rows = await db.query<{ ctid: string; xmin: string; visitor_id: string }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id
       FROM ${source.relation} WHERE ${rowsWithImage(source)}`,
  );
  return rows.map((r) => sourceRow(source.table, r));
}

/** The current version of the given rows with the sha256 of their image, hashed by the server. */
export async function digestSourceRows(db: Queryable, source: Source, ctids: string[]): Promise<DigestedRow[]> {
  const rows = await db.query<{ ctid: string; xmin: string; visitor_id: string; digest: Buffer }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id,
            sha256(convert_to(${source.imageColumn}, 'UTF8')) AS digest
       FROM ${source.relation} WHERE ctid = ANY ($1::tid[]) AND ${rowsWithImage(source)}`,
    [ctids],
  );
  return rows.map((r) => ({ ...sourceRow(source.table, r), digest: r.digest }));
}

/** The current version of the given rows with their stored image text. */
export async function fetchSourceImages(db: Queryable, source: Source, ctids: string[]): Promise<ImageRow[]> {
  const rows = await db.query<{ ctid: string; xmin: string; visitor_id: string; image: string }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id, ${source.imageColumn} AS image
       FROM ${source.relation} WHERE ctid = ANY ($1::tid[]) AND ${rowsWithImage(source)}`,
    [ctids],
  );
  return rows.map((r) => ({ ...sourceRow(source.table, r), image: r.image }));
}

/** What a table holds, summed up: changes whenever a row holding an image is inserted, updated or deleted. */
export interface TableSummary {
  count: number;
  /** Sum of the rows' xmin: an update replaces a row version by one with a newer xmin. */
  xminSum: bigint;
}

export interface Fingerprint {
  /** The visitor tables' oids as resolved now; compare with sourceOids() to notice DDL. */
  tables: string;
  summaries: Map<SourceTable, TableSummary>;
}

export function sameSummary(a: TableSummary | undefined, b: TableSummary | undefined): boolean {
  return a !== undefined && b !== undefined && a.count === b.count && a.xminSum === b.xminSum;
}

/** The summary of a list of rows, as sourceFingerprint() would give for exactly these rows. */
export function summarise(rows: SourceRow[]): TableSummary {
  return { count: rows.length, xminSum: rows.reduce((sum, r) => sum + BigInt(r.xmin), 0n) };
}

/**
 * A cheap change check: per table count(*) and sum(xmin) of the rows holding an image (heap
 * only; TOAST untouched). Deletes lower the count; inserts and updates add a row version with a
 * new xmin.
 */
export async function sourceFingerprint(db: Queryable, sources: Source[]): Promise<Fingerprint> {
  const tables = SOURCE_TABLES.map((t) => `coalesce(to_regclass('${t}')::oid::text, '')`).join(', ');
  const perSource = sources.map(
    (s) => `(SELECT count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text FROM ${s.relation} WHERE ${rowsWithImage(s)})`,
  );
  const [row] = await db.query<{ tables: string; summaries: string[] }>(
    `SELECT concat_ws('/', ${tables}) AS tables, ARRAY[${perSource.join(', ')}]::text[] AS summaries`,
  );
  const summaries = new Map(
    sources.map((s, i) => {
      const [count, sum] = row.summaries[i].split(':');
      return [s.table, { count: Number(count), xminSum: BigInt(sum) }];
    }),
  );
  return { tables: row.tables, summaries };
}

/** Rows holding an image whose xmin is above `xmin`: the row versions written since. */
export async function listSourceRowsSince(db: Queryable, source: Source, xmin: number): Promise<SourceRow[]> {
  const rows = await db.query<{ ctid: string; xmin: string; visitor_id: string }>(
    `SELECT ctid::text AS ctid, xmin::text AS xmin, ${source.visitorColumn}::text AS visitor_id
       FROM ${source.relation} WHERE ${rowsWithImage(source)} AND xmin::text::bigint > $1`,
    [xmin],
  );
  return rows.map((r) => sourceRow(source.table, r));
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
export async function existingRowVersions(db: Queryable, sources: Source[], rows: SourceRow[]): Promise<Set<string>> {
  const parts: string[] = [];
  const values: string[][] = [];
  for (const source of sources) {
    const ctids = rows.filter((r) => r.table === source.table).map((r) => r.ctid);
    if (ctids.length === 0) continue;
    values.push(ctids);
    parts.push(
      `SELECT '${source.table}' AS t, ctid::text AS ctid, xmin::text AS xmin FROM ${source.relation}
        WHERE ctid = ANY ($${values.length}::tid[]) AND ${rowsWithImage(source)}`,
    );
  }
  if (parts.length === 0) return new Set();
  const found = await db.query<{ t: string; ctid: string; xmin: string }>(parts.join(' UNION ALL '), values);
  return new Set(found.map((r) => `${r.t}:${r.ctid}:${r.xmin}`));
}

export function rowVersionKey(row: { table: string; ctid: string; xmin: number }): string {
  return `${row.table}:${row.ctid}:${row.xmin}`;
}

/** How many rows of the table hold an image (for `face-recog gallery status`). */
export async function countSourceRows(db: Queryable, source: Source): Promise<number> {
  const [row] = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${source.relation} WHERE ${rowsWithImage(source)}`);
  return Number(row.n);
}
