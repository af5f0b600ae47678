// pgvector inside the visitors' PostgreSQL, as README "Beyond one machine's memory" designs it: the
// feature cache gains a vector column and, per model, an index over it, and a search becomes one
// SQL query that also confirms each hit's source row (the check src/gallery/index.ts makes in a
// second query today). Shared by test/gallery/pgvector.test.ts and bench/pgvector.ts; nothing in
// src/ uses it. The extension comes from .ci/pgvector.sh (Debian's source package, built against
// the system's PostgreSQL, which test/helpers/postgres-server.ts runs).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { postgresMissing, startPostgresServer, type PostgresServer } from './postgres-server.js';

/** The feature cache's shape (src/gallery/migrations.ts) reduced to what a search reads, plus the vector column. */
export const FEATURES = 'face_recog_features';
/** The guide's two visitor tables, with the image columns the confirmation looks at. */
export const VISITORS = 'visitors' as const;
export const VISITOR_IMAGES = 'visitor_images' as const;
export const MODEL = 'mobilefacenet';
export const DIMENSION = 128;

/** The sharedir of the PostgreSQL that startPostgresServer runs (PG_BIN, or the newest under /usr/lib/postgresql). */
function serverShareDir(): string | null {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = process.env.PG_BIN ?? (majors.length ? join(root, majors[0], 'bin') : null);
  const pgConfig = bin && join(bin, 'pg_config');
  if (!pgConfig || !existsSync(pgConfig)) return null;
  return spawnSync(pgConfig, ['--sharedir'], { encoding: 'utf8' }).stdout.trim() || null;
}

/** Why pgvector cannot be used here, or null. Throws in CI: a missing extension must fail the run. */
export const pgvectorMissing: string | null = (() => {
  if (postgresMissing) return postgresMissing;
  const control = join(serverShareDir() ?? '/usr/share/postgresql/<major>', 'extension', 'vector.control');
  if (existsSync(control)) return null;
  const reason = `pgvector is not installed for the system PostgreSQL (no ${control}): run bash .ci/pgvector.sh as root`;
  if (process.env.CI) throw new Error(reason);
  console.warn(`skipping: ${reason}`);
  return reason;
})();

/** Server settings for the search: every table and index in shared buffers, no JIT compile of the scans. */
export interface ServerSettings {
  sharedBuffers: string;
  maintenanceWorkMem: string;
}

/**
 * A fresh Debian PostgreSQL with the extension created in `database` (as the superuser: pgvector
 * is not a trusted extension, so a DBA creates it once and the service's narrow role uses it).
 */
export async function startPgvectorServer(database: string, settings: ServerSettings): Promise<PostgresServer> {
  const server = await startPostgresServer();
  await server.sql(`ALTER SYSTEM SET shared_buffers = ${pg.escapeLiteral(settings.sharedBuffers)}`);
  await server.sql(`ALTER SYSTEM SET maintenance_work_mem = ${pg.escapeLiteral(settings.maintenanceWorkMem)}`);
  // A JIT compile costs more than an exact scan of a large gallery saves (tens of ms a query).
  await server.sql('ALTER SYSTEM SET jit = off');
  await server.stop();
  await server.start();
  await server.createDatabase(database);
  await server.sql('CREATE EXTENSION vector', [], database);
  return server;
}

export async function extensionVersion(server: PostgresServer, database: string): Promise<string> {
  const [row] = await server.sql<{ extversion: string }>(`SELECT extversion FROM pg_extension WHERE extname = 'vector'`, [], database);
  return row.extversion;
}

/**
 * The guide's visitor tables and the feature cache with its vector column. The column has no
 * dimension (each model has its own); each model's index casts it to that model's dimension.
 */
export async function createTables(server: PostgresServer, database: string): Promise<void> {
  await server.sql(
    `CREATE TABLE ${VISITORS} (visitor_id text PRIMARY KEY, base64image text);
     CREATE TABLE ${VISITOR_IMAGES} (id serial PRIMARY KEY, visitor_id text NOT NULL, base64image text);
     CREATE TABLE ${FEATURES} (
       id bigserial PRIMARY KEY,
       model text NOT NULL,
       source_table text NOT NULL,
       source_ctid tid,
       source_xmin bigint,
       visitor_id text NOT NULL,
       status text NOT NULL,
       embedding_vector vector
     )`,
    [],
    database,
  );
}

/** The cast every query and index of this model's dimension shares, so the planner matches them. */
const VECTOR = `embedding_vector::vector(${DIMENSION})`;
const MODEL_ROWS = `model = ${pg.escapeLiteral(MODEL)} AND status = 'ok'`;

export type IndexKind = 'hnsw' | 'ivfflat';

/** The per-model approximate index; returns its name. `lists` for IVFFlat only. */
export async function createIndex(server: PostgresServer, database: string, kind: IndexKind, lists?: number): Promise<string> {
  const name = `${FEATURES}_${MODEL}_${kind}`;
  const options = kind === 'ivfflat' ? ` WITH (lists = ${lists})` : '';
  await server.sql(`CREATE INDEX ${name} ON ${FEATURES} USING ${kind} ((${VECTOR}) vector_ip_ops)${options} WHERE ${MODEL_ROWS}`, [], database);
  return name;
}

/**
 * pgvector's text form of a float32 vector. JavaScript prints each component's shortest decimal
 * that reads back as the same double, which is the float32 itself, so PostgreSQL's float4 parse
 * stores exactly the bits the in-memory index holds.
 */
export function vectorLiteral(vector: Float32Array): string {
  return `[${Array.from(vector).join(',')}]`;
}

export interface StoredFace {
  visitorId: string;
  vector: Float32Array;
  /** Which visitor table holds the face's image. */
  table: typeof VISITORS | typeof VISITOR_IMAGES;
}

/**
 * Stores the faces as the backend and the service would: a row with an image in the visitor table,
 * and the feature cache row naming that row version (ctid, xmin). Returns the feature ids, in order.
 */
export async function storeFaces(server: PostgresServer, database: string, faces: StoredFace[]): Promise<number[]> {
  const ids: number[] = [];
  for (const table of [VISITORS, VISITOR_IMAGES] as const) {
    const these = faces.map((face, i) => ({ face, i })).filter(({ face }) => face.table === table);
    if (these.length === 0) continue;
    // One statement: the visitor rows (each image distinct), then feature rows naming the row
    // versions just written.
    const rows = await server.sql<{ ordinal: number; id: string }>(
      `WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS u(visitor_id, vector, ordinal)),
            stored AS (INSERT INTO ${table} (visitor_id, base64image) SELECT visitor_id, 'image ' || ordinal FROM input
                       RETURNING ctid, xmin, visitor_id, base64image),
            features AS (INSERT INTO ${FEATURES} (model, source_table, source_ctid, source_xmin, visitor_id, status, embedding_vector)
                         SELECT ${pg.escapeLiteral(MODEL)}, '${table}', s.ctid, s.xmin::text::bigint, s.visitor_id, 'ok', i.vector::vector
                           FROM stored s JOIN input i ON s.base64image = 'image ' || i.ordinal
                         RETURNING id, source_ctid)
       SELECT f.id::text AS id, substr(s.base64image, 7)::int AS ordinal FROM features f JOIN stored s ON s.ctid = f.source_ctid`,
      [these.map(({ face }) => face.visitorId), these.map(({ face }) => vectorLiteral(face.vector)), these.map(({ i }) => i)],
      database,
    );
    for (const row of rows) ids[row.ordinal] = Number(row.id);
  }
  return ids;
}

/** A hit as the gallery returns it: the feature row, its visitor and the cosine similarity. */
export interface SqlHit {
  featureId: number;
  visitorId: string;
  similarity: number;
}

export type SearchMode =
  /** Every row scored (a parallel sequential scan), no index used: the exact k best. */
  | 'exact'
  /** The approximate index, ef_search / probes as set. */
  | 'index';

/**
 * The source row of a feature still there, unchanged (same ctid and xmin), with its image: the
 * condition existingRowVersions (src/gallery/sources.ts) checks after the search today.
 */
const CONFIRMED = `(
  (f.source_table = '${VISITORS}' AND EXISTS (SELECT 1 FROM ${VISITORS} v
     WHERE v.ctid = f.source_ctid AND v.xmin = f.source_xmin::text::xid AND v.base64image IS NOT NULL))
  OR (f.source_table = '${VISITOR_IMAGES}' AND EXISTS (SELECT 1 FROM ${VISITOR_IMAGES} v
     WHERE v.ctid = f.source_ctid AND v.xmin = f.source_xmin::text::xid AND v.base64image IS NOT NULL)))`;

/**
 * One statement for the queries (the faces of one image): each query's k best faces of the model,
 * best first. `confirmed` folds the source-row check into the same statement: with the index, the
 * scan goes on past stale rows until it has k live ones (iterative scans); with the exact scan,
 * the k best are taken first and then checked, as src/gallery/index.ts does (checking inside the
 * scan would look up the source row of every stored face). One query is sent as a plain
 * parameter, not through unnest: a LATERAL subquery never runs in parallel, a plain scan does.
 */
export function searchSql(k: number, confirmed: boolean, mode: SearchMode, queries: number): string {
  const single = queries === 1;
  const query = single ? `$1::text::vector(${DIMENSION})` : 'q.vector';
  const score = `${VECTOR} <#> ${query}`;
  const nearest = (where: string) =>
    `SELECT f.id, f.visitor_id, f.source_table, f.source_ctid, f.source_xmin, -(${score}) AS similarity
       FROM ${FEATURES} f WHERE f.${MODEL_ROWS}${where} ORDER BY ${score} LIMIT ${k}`;
  const perQuery =
    confirmed && mode === 'exact' ? `SELECT f.* FROM (${nearest('')}) f WHERE ${CONFIRMED}` : nearest(confirmed ? ` AND ${CONFIRMED}` : '');
  if (single) return `SELECT 1 AS query, hit.id::text AS feature_id, hit.visitor_id, hit.similarity FROM (${perQuery}) hit ORDER BY hit.similarity DESC`;
  return `SELECT q.n::int AS query, hit.id::text AS feature_id, hit.visitor_id, hit.similarity
            FROM unnest($1::text[]::vector(${DIMENSION})[]) WITH ORDINALITY AS q(vector, n)
            CROSS JOIN LATERAL (${perQuery}) hit
           ORDER BY q.n, hit.similarity DESC`;
}

/** The mode's session settings: the exact one forbids index scans, the other asks for them. */
function modeSettings(mode: SearchMode): string[] {
  if (mode === 'exact') return ['enable_indexscan = off'];
  // IVFFlat has only the relaxed order: the statement's ORDER BY puts each query's k hits in order.
  return ['enable_seqscan = off', 'hnsw.iterative_scan = strict_order', 'ivfflat.iterative_scan = relaxed_order'];
}

/**
 * A connection set up once for one search mode (as the service would set its pool's connections,
 * or a DBA the role: ALTER ROLE ... SET), so that each search is one statement, one round trip.
 */
export class SearchSession {
  private constructor(
    private readonly client: pg.Client,
    readonly mode: SearchMode,
  ) {}

  /** `settings`: more of them, e.g. `hnsw.ef_search = 100` or `ivfflat.probes = 10`. */
  static async open(server: PostgresServer, database: string, mode: SearchMode, settings: string[] = []): Promise<SearchSession> {
    const client = new pg.Client({ connectionString: server.url({ database }) });
    await client.connect();
    for (const setting of [...modeSettings(mode), ...settings]) await client.query(`SET ${setting}`);
    return new SearchSession(client, mode);
  }

  private async run<R extends pg.QueryResultRow>(queries: Float32Array[], k: number, confirmed: boolean, explain = ''): Promise<R[]> {
    const values = [queries.length === 1 ? vectorLiteral(queries[0]) : queries.map(vectorLiteral)];
    return (await this.client.query<R>(`${explain}${searchSql(k, confirmed, this.mode, queries.length)}`, values)).rows;
  }

  /** For each query, its k best faces, best first. */
  async search(queries: Float32Array[], k: number, confirmed: boolean): Promise<SqlHit[][]> {
    const rows = await this.run<{ query: number; feature_id: string; visitor_id: string; similarity: number }>(queries, k, confirmed);
    const hits: SqlHit[][] = queries.map(() => []);
    for (const row of rows) hits[row.query - 1].push({ featureId: Number(row.feature_id), visitorId: row.visitor_id, similarity: row.similarity });
    return hits;
  }

  /** Shared buffers (8 kB pages) one search reads, found there or not, from EXPLAIN (ANALYZE, BUFFERS). */
  async buffersRead(queries: Float32Array[], k: number, confirmed: boolean): Promise<number> {
    const [row] = await this.run<{ 'QUERY PLAN': [{ Plan: Record<string, number> }] }>(queries, k, confirmed, 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ');
    const plan = row['QUERY PLAN'][0].Plan;
    return plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

/** Fraction of `expected`'s feature ids found in `actual`, over all queries. */
export function recall(actual: { featureId: number }[][], expected: { featureId: number }[][]): number {
  let found = 0;
  let total = 0;
  expected.forEach((want, q) => {
    const got = new Set(actual[q].map((h) => h.featureId));
    total += want.length;
    found += want.filter((h) => got.has(h.featureId)).length;
  });
  return total === 0 ? 1 : found / total;
}

export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function normalised(v: Float32Array): Float32Array {
  let norm = 0;
  for (const x of v) norm += x * x;
  return v.map((x) => x / Math.sqrt(norm));
}

export function unitVector(random: () => number, dimension = DIMENSION): Float32Array {
  return normalised(Float32Array.from({ length: dimension }, () => random() * 2 - 1));
}

/** `vector` moved by up to `noise` per component and renormalised: another photo of the same face. */
export function nearby(vector: Float32Array, random: () => number, noise: number): Float32Array {
  return normalised(vector.map((x) => x + (random() * 2 - 1) * noise));
}
