// The feature cache: our own table of what the recognizer made of each stored image, so an image
// is extracted once per model, not on every recognition (the guide's on-the-fly design).
import { textArrayLiteral, type Database, type Queryable, type Row } from './db.js';
import { rowVersionKey, type SourceRow, type SourceTable } from './sources.js';
import type { ImageReason, Rotation } from './types.js';

export type FaceBox = [number, number, number, number];

/** Why a stored image was not enrolled. */
export type FailureReason = Exclude<ImageReason, 'several_faces'>;

/** What extraction made of one stored image. */
export type Outcome =
  | { status: 'ok'; embedding: Float32Array; box: FaceBox; score: number; rotation: Rotation; reason: 'several_faces' | null }
  | { status: 'failed'; reason: FailureReason; message: string };

export interface CachedFeature {
  id: number;
  source: SourceRow;
  visitorId: string;
  /** Null when the image yielded no face. */
  embedding: Float32Array | null;
}

export interface NewFeature {
  row: SourceRow;
  /** Null for an image that was not read (unsupported column): nothing to reuse it by. */
  digest: Buffer | null;
  outcome: Outcome;
}

export interface CacheCounts {
  model: string;
  ok: number;
  failed: number;
}

/** What changed in the cache after a version: rows written (added or replaced), and feature ids removed. */
export interface CacheChanges {
  features: CachedFeature[];
  removed: number[];
  /** The newest version among them (the one given when nothing changed). */
  version: number;
}

const LOAD_PAGE = 20_000;
const MAX_MESSAGE = 300;

/** float32, little-endian, as stored in `embedding`. */
export function encodeEmbedding(vector: Float32Array): Buffer {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
}

export function decodeEmbedding(bytes: Buffer): Float32Array {
  const vector = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(vector.buffer).set(bytes);
  return vector;
}

interface OutcomeRow {
  status: 'ok' | 'failed';
  reason: ImageReason | null;
  message: string | null;
  embedding: Buffer | null;
  box: number[] | null;
  score: number | null;
  rotation: number | null;
}

export function outcomeOf(row: OutcomeRow): Outcome {
  if (row.status === 'ok') {
    const reason = row.reason === 'several_faces' ? row.reason : null;
    return { status: 'ok', embedding: decodeEmbedding(row.embedding!), box: row.box as FaceBox, score: row.score ?? 0, rotation: (row.rotation ?? 0) as Rotation, reason };
  }
  return { status: 'failed', reason: row.reason as FailureReason, message: row.message ?? '' };
}

interface FeatureRow {
  feature_id: string;
  source_table: SourceTable;
  source_ctid: string;
  source_xmin: string;
  visitor_id: string;
  embedding: Buffer | null;
  version: string;
}

type EmbeddingRow = Pick<FeatureRow, 'feature_id' | 'source_table' | 'source_ctid' | 'source_xmin'> & { embedding: Buffer };

/** A cached embedding and the row version (rowVersionKey) it was made from. */
export interface CachedEmbedding {
  source: string;
  embedding: Float32Array;
}

const FEATURE_COLUMNS = `id::text AS feature_id, source_table, source_ctid::text AS source_ctid, source_xmin::text AS source_xmin, visitor_id, embedding, version::text AS version`;

export class FeatureCache {
  private readonly db: Database;
  readonly model: string;
  private readonly table: string;

  constructor(db: Database, model: string) {
    this.db = db;
    this.model = model;
    this.table = db.schema.features;
  }

  /**
   * Every cached row of this model, in pages, oldest first, all in one snapshot; returns that
   * snapshot's newest version, from which changesSince() follows. Rows of other models are ignored.
   */
  async load(onPage: (features: CachedFeature[]) => Promise<void>): Promise<number> {
    return this.db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const version = await this.newestVersion(tx);
      for (let after = 0; ; ) {
        const rows = await tx.query<FeatureRow>(
          // The output is named feature_id so that ORDER BY sorts by the bigint column, not its text.
          `SELECT ${FEATURE_COLUMNS} FROM ${this.table} WHERE model = $1 AND id > $2 ORDER BY id LIMIT ${LOAD_PAGE}`,
          [this.model, after],
        );
        if (rows.length === 0) break;
        after = Number(rows[rows.length - 1].feature_id);
        await onPage(rows.map(cachedFeature));
        if (rows.length < LOAD_PAGE) break;
      }
      return version;
    });
  }

  private async newestVersion(tx: Queryable): Promise<number> {
    const [row] = await tx.query<{ version: string }>(
      `SELECT greatest((SELECT max(version) FROM ${this.table} WHERE model = $1), (SELECT max(version) FROM ${this.db.schema.removals} WHERE model = $1), 0)::text AS version`,
      [this.model],
    );
    return Number(row.version);
  }

  /** The rows written and the ids removed after `version`, in one snapshot (index range scans: cheap whatever the cache's size). */
  async changesSince(version: number): Promise<CacheChanges> {
    return this.db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const rows = await tx.query<FeatureRow>(
        `SELECT ${FEATURE_COLUMNS} FROM ${this.table} WHERE model = $1 AND version > $2 ORDER BY version`,
        [this.model, version],
      );
      const removed = await tx.query<{ feature_id: string; version: string }>(
        `SELECT feature_id::text, version::text FROM ${this.db.schema.removals} WHERE model = $1 AND version > $2 ORDER BY version`,
        [this.model, version],
      );
      const newest = [...rows, ...removed].reduce((max, r) => Math.max(max, Number(r.version)), version);
      return { features: rows.map(cachedFeature), removed: removed.map((r) => Number(r.feature_id)), version: newest };
    });
  }

  /**
   * A statement listing the embeddings of these feature ids with the row version each comes
   * from (read them with `embeddingsFrom`). It takes no parameters, so that it can be sent with
   * others in one round trip (Database.read).
   */
  embeddingsStatement(ids: number[]): string {
    return `SELECT id::text AS feature_id, source_table, source_ctid::text AS source_ctid, source_xmin::text AS source_xmin, embedding
      FROM ${this.table} WHERE id = ANY (${textArrayLiteral(ids.map(String))}::bigint[]) AND embedding IS NOT NULL`;
  }

  /** What embeddingsStatement listed, by feature id. */
  embeddingsFrom(rows: Row[]): Map<number, CachedEmbedding> {
    return new Map(
      (rows as unknown as EmbeddingRow[]).map((r) => [
        Number(r.feature_id),
        { source: rowVersionKey({ table: r.source_table, ctid: r.source_ctid, xmin: Number(r.source_xmin) }), embedding: decodeEmbedding(r.embedding) },
      ]),
    );
  }

  /** Outcomes already known for these image digests (any row identity), by hex digest. */
  async findByDigest(digests: Buffer[]): Promise<Map<string, Outcome>> {
    if (digests.length === 0) return new Map();
    const rows = await this.db.query<OutcomeRow & { digest: Buffer }>(
      `SELECT DISTINCT ON (image_sha256) image_sha256 AS digest, status, reason, message, embedding, box, score, rotation
         FROM ${this.table} WHERE model = $1 AND image_sha256 = ANY ($2::bytea[])
        ORDER BY image_sha256, id DESC`,
      [this.model, digests],
    );
    return new Map(rows.map((r) => [r.digest.toString('hex'), outcomeOf(r)]));
  }

  /**
   * Records outcomes (replacing what was cached for the same row slot), in the extractor's fenced
   * transaction `tx`; returns their ids in order and the newest version written.
   */
  async save(tx: Queryable, features: NewFeature[]): Promise<{ ids: number[]; version: number }> {
    if (features.length === 0) return { ids: [], version: 0 };
    const ok = features.map((f) => (f.outcome.status === 'ok' ? f.outcome : null));
    const rows = await tx.query<{ slot: string; id: string; version: string }>(
      `INSERT INTO ${this.table}
              (model, source_table, source_ctid, source_xmin, visitor_id, image_sha256, status, reason, message, embedding, box, score, rotation)
       SELECT $1, t, c, x, v, d, s, r, m, e, b::real[], sc, ro
         FROM unnest($2::text[], $3::tid[], $4::bigint[], $5::text[], $6::bytea[], $7::text[], $8::text[], $9::text[], $10::bytea[],
                     $11::text[], $12::real[], $13::smallint[])
              AS u(t, c, x, v, d, s, r, m, e, b, sc, ro)
       ON CONFLICT (model, source_table, source_ctid) WHERE source_ctid IS NOT NULL DO UPDATE SET
              source_xmin = EXCLUDED.source_xmin, visitor_id = EXCLUDED.visitor_id, image_sha256 = EXCLUDED.image_sha256,
              status = EXCLUDED.status, reason = EXCLUDED.reason, message = EXCLUDED.message, embedding = EXCLUDED.embedding,
              box = EXCLUDED.box, score = EXCLUDED.score, rotation = EXCLUDED.rotation, updated_at = now(),
              version = nextval('${this.db.schema.versions}')
       RETURNING source_table || ':' || source_ctid::text AS slot, id::text AS id, version::text AS version`,
      [
        this.model,
        features.map((f) => f.row.table),
        features.map((f) => f.row.ctid),
        features.map((f) => f.row.xmin),
        features.map((f) => f.row.visitorId),
        features.map((f) => f.digest),
        features.map((f) => f.outcome.status),
        features.map((f) => f.outcome.reason),
        features.map((f) => (f.outcome.status === 'failed' ? f.outcome.message.slice(0, MAX_MESSAGE) : null)),
        ok.map((o) => (o ? encodeEmbedding(o.embedding) : null)),
        ok.map((o) => (o ? `{${o.box.join(',')}}` : null)),
        ok.map((o) => o?.score ?? null),
        ok.map((o) => o?.rotation ?? null),
      ],
    );
    const ids = new Map(rows.map((r) => [r.slot, Number(r.id)]));
    return { ids: features.map((f) => ids.get(`${f.row.table}:${f.row.ctid}`)!), version: rows.reduce((max, r) => Math.max(max, Number(r.version)), 0) };
  }

  /** Deletes rows (in the extractor's fenced transaction), leaving their ids for the followers; returns the newest version written. */
  async remove(tx: Queryable, ids: number[]): Promise<number> {
    if (ids.length === 0) return 0;
    const [row] = await tx.query<{ version: string | null }>(
      `WITH gone AS (DELETE FROM ${this.table} WHERE id = ANY ($1::bigint[]) RETURNING id),
            noted AS (INSERT INTO ${this.db.schema.removals} (model, feature_id) SELECT $2, id FROM gone RETURNING version)
       SELECT max(version)::text AS version FROM noted`,
      [ids, this.model],
    );
    return Number(row.version ?? 0);
  }
}

function cachedFeature(row: FeatureRow): CachedFeature {
  const source = { table: row.source_table, ctid: row.source_ctid, xmin: Number(row.source_xmin), visitorId: row.visitor_id };
  return { id: Number(row.feature_id), source, visitorId: row.visitor_id, embedding: row.embedding ? decodeEmbedding(row.embedding) : null };
}

/** Rows per model and status, for `face-recog gallery status`. */
export async function cacheCounts(db: Database): Promise<CacheCounts[]> {
  const rows = await db.query<{ model: string; ok: string; failed: string }>(
    `SELECT model, count(*) FILTER (WHERE status = 'ok')::text AS ok, count(*) FILTER (WHERE status = 'failed')::text AS failed
       FROM ${db.schema.features} GROUP BY model ORDER BY model`,
  );
  return rows.map((r) => ({ model: r.model, ok: Number(r.ok), failed: Number(r.failed) }));
}
