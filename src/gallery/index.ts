// The visitor gallery the server searches: embeddings of every stored visitor image, kept in
// memory and in sync with the visitor tables, so recognition costs one matrix product and one
// small query whatever the number of visitors.
//
// Correctness does not rest on the sync being quick: every candidate a search returns is first
// confirmed against the visitor tables in the request's own snapshot, so a visitor deleted (or
// an image changed) by a transaction that committed before the request is never returned.
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { Catalog, type Face } from './catalog.js';
import { openDatabase, type OpenDatabase } from './connect.js';
import { DATABASE_RETRY_AFTER_S, sqlState, type Database } from './db.js';
import { FeatureCache } from './feature-cache.js';
import { listImages, type ImagePage, type ImageQuery } from './images.js';
import { describeProblem } from './problems.js';
import { existingRowVersions, rowVersionKey, type RowVersion, type Source, type SourceRow } from './sources.js';
import { GallerySync } from './sync.js';
import type { TimeLimit } from './time-limit.js';
import type { Extractor, Gallery, GalleryStatus, Match } from './types.js';
import { VectorIndex } from './vector-index.js';

export interface GalleryOptions {
  /** PostgreSQL holding the visitor tables; null: the embedded PostgreSQL under dataDir. */
  databaseUrl: string | null;
  dataDir: string;
  /** The schema holding the service's own tables (DATABASE_SCHEMA). */
  databaseSchema: string;
  /** Recognizer name; cached features of other models are ignored (a switch re-extracts). */
  model: string;
  dimension: number;
  extractor: Extractor;
  pollMs: number;
  batchSize: number;
  /** Extractor calls in flight at once while reconciling (the extractor must take that many). */
  concurrency: number;
  logger: Logger;
}

export interface GalleryHandle extends Gallery {
  /** Resolves after the first complete reconcile with the visitor tables (or on close). */
  readonly ready: Promise<void>;
}

/** Candidates fetched per query at first; multiplied while every candidate turns out stale. */
const FIRST_CANDIDATES = 8;
const DEEPER = 4;

type Connection = NonNullable<GallerySync['connection']>;

/** Runs statements on the database, within `limit` when there is one. */
function reader(db: Database, limit: TimeLimit | undefined): (statement: string) => Promise<RowVersion[]> {
  return (statement) => (limit ? db.readWithin<RowVersion>(limit, statement) : db.query<RowVersion>(statement));
}

class PostgresGallery implements GalleryHandle {
  readonly ready: Promise<void>;

  constructor(
    private readonly options: GalleryOptions,
    private readonly catalog: Catalog,
    private readonly sync: GallerySync,
    private readonly closeDatabase: () => Promise<void>,
  ) {
    this.ready = sync.ready;
  }

  /** The open connection, or gallery_unavailable: not connected, down, or a permission missing. */
  private usable(): Connection {
    const connection = this.sync.connection;
    const blocked = this.sync.blocked;
    if (connection && this.sync.state.database === 'up' && blocked.length === 0) return connection;
    const why = blocked.length > 0 ? blocked.map(describeProblem).join('; ') : (this.sync.state.error ?? 'not connected');
    throw new FaceRecogError('gallery_unavailable', `the visitor gallery is unavailable: ${why}`, { retryAfterS: DATABASE_RETRY_AFTER_S });
  }

  async search(queries: Float32Array[], limit?: TimeLimit): Promise<(Match | null)[]> {
    const connection = this.usable();
    const results: (Match | null)[] = queries.map(() => null);
    let open = queries.map((_, i) => i);
    for (let k = FIRST_CANDIDATES; open.length > 0 && this.catalog.faces > 0; k *= DEEPER) {
      const candidates = await this.catalog.nearest(open.map((i) => queries[i]), k, limit);
      const alive = await this.confirm(connection, candidates.flat().map((c) => c.face), limit);
      let staleSeen = false;
      open = open.filter((query, j) => {
        const best = candidates[j].find((c) => alive.has(c.face));
        if (best) results[query] = { visitorId: best.face.visitorId, similarity: best.similarity };
        staleSeen ||= candidates[j].some((c) => !alive.has(c.face));
        // Every candidate was stale: look further down the list, while there is further.
        return !best && k < this.catalog.faces;
      });
      if (staleSeen) this.sync.wake(true);
    }
    return results;
  }

  /** The faces whose stored image is still there, unchanged, now. */
  private async confirm(connection: Connection, faces: Face[], limit: TimeLimit | undefined): Promise<Set<Face>> {
    const unique = [...new Set(faces)];
    try {
      const versions = await this.existingVersions(connection, unique.map((f) => f.source), limit);
      return new Set(unique.filter((f) => versions.has(rowVersionKey(f.source))));
    } catch (error) {
      if (error instanceof FaceRecogError && error.code === 'gallery_unavailable') this.sync.markDown(error);
      throw error;
    }
  }

  private async existingVersions(connection: Connection, rows: SourceRow[], limit: TimeLimit | undefined): Promise<Set<string>> {
    if (rows.length === 0) return new Set();
    try {
      return await existingRowVersions(reader(connection.db, limit), connection.sources, rows);
    } catch (error) {
      if (!['42P01', '42703'].includes(sqlState(error) ?? '')) throw error;
      // A visitor table was dropped or altered since the sync last looked: check table by table,
      // counting the rows of a table that cannot be read as gone (but not a table out of time).
      this.sync.wake(true);
      const perTable = await Promise.all(
        connection.sources.map((source: Source) =>
          existingRowVersions(reader(connection.db, limit), [source], rows).catch((failure: unknown) => {
            if (failure instanceof FaceRecogError && failure.code === 'timeout') throw failure;
            return new Set<string>();
          }),
        ),
      );
      return new Set(perTable.flatMap((s) => [...s]));
    }
  }

  async images(query: ImageQuery): Promise<ImagePage> {
    const connection = this.usable();
    try {
      return await listImages(connection.db, this.options.model, connection.sources, query);
    } catch (error) {
      if (error instanceof FaceRecogError && error.code === 'gallery_unavailable') this.sync.markDown(error);
      throw error;
    }
  }

  status(): GalleryStatus {
    const { state } = this.sync;
    return {
      database: state.database,
      syncing: state.syncing,
      faces: this.catalog.faces,
      visitors: this.catalog.visitors,
      failed: this.catalog.failed,
      model: this.options.model,
      lastSyncAt: state.lastSyncAt,
      error: state.error,
      problems: state.problems,
      role: state.role,
      extractions: state.extractions,
    };
  }

  async close(): Promise<void> {
    await this.sync.close();
    await this.catalog.index.close();
    await this.closeDatabase();
  }
}

/**
 * Starts the gallery and returns at once: connecting (or starting the embedded PostgreSQL),
 * loading the feature cache and reconciling run in the background, retried until they succeed.
 */
export async function startGallery(options: GalleryOptions): Promise<GalleryHandle> {
  const logger = options.logger.child({ component: 'gallery' });
  const catalog = new Catalog(await VectorIndex.create(options.dimension));
  let opened: OpenDatabase | null = null;
  const open = async (): Promise<Database> => {
    opened = await openDatabase(options, logger);
    logger.info({ database: redactUrl(opened.db.url), model: options.model }, 'gallery database');
    return opened.db;
  };
  const sync = new GallerySync({
    open,
    cache: (db) => new FeatureCache(db, options.model),
    catalog,
    extractor: options.extractor,
    model: options.model,
    dimension: options.dimension,
    pollMs: options.pollMs,
    batchSize: options.batchSize,
    concurrency: options.concurrency,
    logger,
  });
  sync.start();
  return new PostgresGallery(options, catalog, sync, async () => {
    await opened?.close();
  });
}

export type { Extractor, ExtractResult, ExtractedFace, Gallery, GalleryStatus, Match } from './types.js';
