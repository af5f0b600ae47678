// What became of each stored image (GET /api/v1/gallery/images): the feature cache's rows of the
// current model, newest knowledge of each stored image, so that the backend can ask a visitor for
// a better photo. Pages follow the cache's ids; the cursor is the last id of a page.
import type { Database } from './db.js';
import type { FaceBox } from './feature-cache.js';
import { rowVersionKey, sourceKeys, type Source, type SourceRow, type SourceTable } from './sources.js';
import type { ImageReason, Rotation } from './types.js';

export const DEFAULT_IMAGES_LIMIT = 100;
export const MAX_IMAGES_LIMIT = 1000;

export type ImageStatusFilter = 'ok' | 'failed' | ImageReason;

export interface ImageQuery {
  /** ok, failed, or one reason. */
  status?: ImageStatusFilter;
  visitorId?: string;
  limit: number;
  /** The `next` of the previous page. */
  after?: string;
}

export interface ImageEntry {
  table: SourceTable;
  /** The row's primary key as text (composite keys as a JSON array), its ctid without one; null when the row changed since. */
  key: string | null;
  visitorId: string;
  status: 'ok' | 'failed';
  reason: ImageReason | null;
  face: { box: FaceBox; score: number; rotation: Rotation } | null;
  checkedAt: string;
}

export interface ImagePage {
  images: ImageEntry[];
  /** Cursor of the next page; null on the last one. */
  next: string | null;
}

interface ImageRow {
  feature_id: string;
  source_table: SourceTable;
  source_ctid: string;
  source_xmin: string;
  visitor_id: string;
  status: 'ok' | 'failed';
  reason: ImageReason | null;
  box: number[] | null;
  score: number | null;
  rotation: number | null;
  checked_at: Date;
}

function conditions(query: ImageQuery, values: unknown[]): string[] {
  const where = [`model = $1`];
  const param = (value: unknown) => {
    values.push(value);
    return `$${values.length}`;
  };
  if (query.after !== undefined) where.push(`id > ${param(query.after)}::bigint`);
  if (query.visitorId !== undefined) where.push(`visitor_id = ${param(query.visitorId)}`);
  if (query.status === 'ok' || query.status === 'failed') where.push(`status = ${param(query.status)}`);
  else if (query.status !== undefined) where.push(`reason = ${param(query.status)}`);
  return where;
}

/** The keys of the listed rows, looked up now by row version in their visitor tables. */
async function keysOf(db: Database, sources: Source[], rows: SourceRow[]): Promise<Map<string, string>> {
  const keys = await Promise.all(sources.map((s) => sourceKeys(db, s, rows.filter((r) => r.table === s.table))));
  return new Map(keys.flatMap((m) => [...m]));
}

/** One page of stored images of `model`, oldest cache row first. */
export async function listImages(db: Database, model: string, sources: Source[], query: ImageQuery): Promise<ImagePage> {
  const values: unknown[] = [model];
  const where = conditions(query, values);
  const rows = await db.query<ImageRow>(
    // Named feature_id so that ORDER BY sorts by the bigint column, not its text.
    `SELECT id::text AS feature_id, source_table, source_ctid::text AS source_ctid, source_xmin::text AS source_xmin, visitor_id,
            status, reason, box, score, rotation, updated_at AS checked_at
       FROM ${db.schema.features} WHERE ${where.join(' AND ')} ORDER BY id LIMIT ${query.limit + 1}`,
    values,
  );
  const page = rows.slice(0, query.limit);
  const sourceRows = page.map((r) => ({ table: r.source_table, ctid: r.source_ctid, xmin: Number(r.source_xmin), visitorId: r.visitor_id }));
  const keys = await keysOf(db, sources, sourceRows);
  return {
    images: page.map((r, i) => ({
      table: r.source_table,
      key: keys.get(rowVersionKey(sourceRows[i])) ?? null,
      visitorId: r.visitor_id,
      status: r.status,
      reason: r.reason,
      face: r.status === 'ok' ? { box: r.box as FaceBox, score: r.score ?? 0, rotation: (r.rotation ?? 0) as Rotation } : null,
      checkedAt: r.checked_at.toISOString(),
    })),
    next: rows.length > query.limit ? page[page.length - 1].feature_id : null,
  };
}
