// The visitor gallery the server searches: every stored visitor image's face, kept in memory as
// codes (vector-index.ts) in sync with the visitor tables, so recognition costs one pass over the
// codes and one small query whatever the number of visitors. The query reads the float32
// embeddings of the few faces that can be the best from the feature cache, which holds them
// anyway, rather than a copy of them all in memory (512 MB at a million faces).
//
// Correctness does not rest on the sync being quick: the same query confirms each of those faces
// against the visitor tables in the request's own snapshot, so a visitor deleted (or an image
// changed) by a transaction that committed before the request is never returned.
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import { redactUrl } from '../redact.js';
import { Catalog, type Face } from './catalog.js';
import { openDatabase, type OpenDatabase } from './connect.js';
import { DATABASE_RETRY_AFTER_S, sqlState, type Database } from './db.js';
import { DotKernel } from './dot-kernel.js';
import { FeatureCache, type CachedEmbedding } from './feature-cache.js';
import { listImages, type ImagePage, type ImageQuery } from './images.js';
import { describeProblem } from './problems.js';
import { rowVersionKey, rowVersionKeys, rowVersionsStatement, type Source } from './sources.js';
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

type Connection = NonNullable<GallerySync['connection']>;

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
    let staleSeen = false;
    const nearest = await this.catalog.nearest(
      queries,
      1,
      async (faces) => {
        const current = await this.current(connection, faces, limit);
        staleSeen ||= current.size < faces.length;
        return current;
      },
      limit,
    );
    // A face whose stored image is gone or changed: the sync has something to catch up on.
    if (staleSeen) this.sync.wake(true);
    return nearest.map(([best]) => (best ? { visitorId: best.face.visitorId, similarity: best.similarity } : null));
  }

  /**
   * The embeddings of the faces whose stored image is still there, unchanged, now, from the
   * feature cache: the cached row and the visitor row each checked against the face's row
   * version, in one round trip.
   */
  private async current(connection: Connection, faces: Face[], limit: TimeLimit | undefined): Promise<Map<Face, Float32Array>> {
    try {
      const { embeddings, present } = await this.read(connection, faces, limit);
      return new Map(
        faces.flatMap((face) => {
          const version = rowVersionKey(face.source);
          const cached = embeddings.get(face.featureId);
          return cached && cached.source === version && present.has(version) ? [[face, cached.embedding] as const] : [];
        }),
      );
    } catch (error) {
      if (error instanceof FaceRecogError && error.code === 'gallery_unavailable') this.sync.markDown(error);
      throw error;
    }
  }

  private async read(connection: Connection, faces: Face[], limit: TimeLimit | undefined): Promise<{ embeddings: Map<number, CachedEmbedding>; present: Set<string> }> {
    const { db, cache, sources } = connection;
    const cached = cache.embeddingsStatement(faces.map((f) => f.featureId));
    const rows = faces.map((f) => f.source);
    const versions = rowVersionsStatement(sources, rows);
    try {
      const [embeddingRows, versionRows = []] = await db.read(versions ? [cached, versions] : [cached], limit);
      return { embeddings: cache.embeddingsFrom(embeddingRows), present: rowVersionKeys(versionRows) };
    } catch (error) {
      if (!['42P01', '42703'].includes(sqlState(error) ?? '')) throw error;
      // A visitor table was dropped or altered since the sync last looked: check table by table,
      // counting the rows of a table that cannot be read as gone (but not a table out of time).
      this.sync.wake(true);
      const [embeddingRows] = await db.read([cached], limit);
      const perTable = await Promise.all(
        sources.map(async (source: Source) => {
          const statement = rowVersionsStatement([source], rows);
          if (!statement) return new Set<string>();
          return db.read([statement], limit).then(
            ([found]) => rowVersionKeys(found),
            (failure: unknown) => {
              if (failure instanceof FaceRecogError && failure.code === 'timeout') throw failure;
              return new Set<string>();
            },
          );
        }),
      );
      return { embeddings: cache.embeddingsFrom(embeddingRows), present: new Set(perTable.flatMap((s) => [...s])) };
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
  const kernel = await DotKernel.get();
  // Which form of the search kernel this CPU got (dot-kernel.ts): 'native' where packages/dot-native was built.
  logger.info({ form: kernel.form, timesMs: kernel.formTimesMs }, 'search kernel');
  const catalog = new Catalog(await VectorIndex.create(options.dimension, { kernel }));
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
