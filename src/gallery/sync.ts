// Keeps the catalog equal to the visitor tables without anyone calling us: a full reconcile at
// start, then a cheap change check every pollMs (and at once on NOTIFY when the optional triggers
// are installed), extracting only new or changed images. Never throws: a database error marks the
// gallery down, and the loop retries with backoff until the database answers again.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import type { Catalog, Face } from './catalog.js';
import type { Database, Listener } from './db.js';
import { sqlState } from './db.js';
import type { CachedFeature, FeatureCache, NewFeature, Outcome } from './feature-cache.js';
import { migrate } from './migrations.js';
import {
  NOTIFY_CHANNEL,
  SCHEMA_CHANGED,
  digestSourceRows,
  fetchSourceImages,
  introspectSources,
  listSourceRows,
  listSourceRowsSince,
  sameSummary,
  sourceFingerprint,
  sourceOids,
  summarise,
  type DigestedRow,
  type Source,
  type SourceRow,
  type SourceTable,
  type TableSummary,
} from './sources.js';
import type { Extractor, GalleryStatus } from './types.js';

/** What the gallery reports; written by the sync loop (and by search when the database fails it). */
export interface SyncState {
  database: GalleryStatus['database'];
  syncing: boolean;
  lastSyncAt: string | null;
  error: string | null;
}

export interface SyncOptions {
  /** Opens the database (starting the embedded one if need be); retried until it succeeds. */
  open: () => Promise<Database>;
  cache: (db: Database) => FeatureCache;
  catalog: Catalog;
  extractor: Extractor;
  dimension: number;
  pollMs: number;
  batchSize: number;
  logger: Logger;
}

/** Rows whose digest is asked for in one query. */
const DIGEST_CHUNK = 1_000;
/** With the notify triggers on every table, polling is only a safety net. */
const LISTENING_POLL_FACTOR = 10;
const MAX_BACKOFF_MS = 5_000;
const PROGRESS_EVERY_MS = 5_000;
/** Extractor failures that say something about the stored image, so retrying cannot help. */
const IMAGE_ERRORS = new Set(['invalid_image', 'image_too_large', 'too_many_faces']);

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function digestOf(image: string): Buffer {
  return createHash('sha256').update(image, 'utf8').digest();
}

function byTable<T extends SourceRow>(rows: T[], sources: Source[]): [Source, T[]][] {
  return sources.map((s) => [s, rows.filter((r) => r.table === s.table)] as [Source, T[]]).filter(([, list]) => list.length > 0);
}

/** What the catalog holds of one table: the summary of the rows it was built from, and their newest xmin. */
interface Reflection {
  summary: TableSummary;
  maxXmin: number;
}

function reflection(rows: SourceRow[]): Reflection {
  return { summary: summarise(rows), maxXmin: rows.reduce((max, r) => Math.max(max, r.xmin), 0) };
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

class Progress {
  private readonly started = performance.now();
  private lastLog = this.started;
  extracted = 0;
  reused = 0;
  failed = 0;

  constructor(
    private readonly logger: Logger,
    private readonly total: number,
  ) {}

  get done(): number {
    return this.extracted + this.reused;
  }

  rate(): number {
    const seconds = (performance.now() - this.started) / 1000;
    return seconds > 0 ? Math.round((this.extracted / seconds) * 10) / 10 : 0;
  }

  tick(): void {
    if (performance.now() - this.lastLog < PROGRESS_EVERY_MS) return;
    this.lastLog = performance.now();
    this.logger.info({ done: this.done, total: this.total, imagesPerSecond: this.rate() }, 'gallery sync progress');
  }

  seconds(): number {
    return Math.round(performance.now() - this.started) / 1000;
  }
}

export class GallerySync {
  readonly state: SyncState = { database: 'down', syncing: true, lastSyncAt: null, error: 'connecting to the visitor database' };
  /** Resolves after the first complete reconcile (or when closed before it). */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private readonly options: SyncOptions;
  private readonly logger: Logger;
  private db: Database | null = null;
  private cache: FeatureCache | null = null;
  private migrated = false;
  private loaded = false;
  private listener: Listener | null = null;
  private sources: Source[] = [];
  /** The visitor tables must be looked at again (start, error, DDL, triggers installed). */
  private introspectionDue = true;
  private problems = '';
  private reflected = new Map<SourceTable, Reflection>();
  private force = true;
  private closed = false;
  private failures = 0;
  private wakeUp: (() => void) | null = null;
  private wokenEarly = false;
  private loop: Promise<void> | null = null;

  constructor(options: SyncOptions) {
    this.options = options;
    this.logger = options.logger;
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
  }

  /** The open database and cache, or null before the first connection. */
  get connection(): { db: Database; cache: FeatureCache; sources: Source[] } | null {
    return this.db && this.cache ? { db: this.db, cache: this.cache, sources: this.sources } : null;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Check for changes now; `reconcile` asks for a full reconcile, not only the change check. */
  wake(reconcile = false): void {
    if (reconcile) this.force = true;
    this.wokenEarly = true;
    this.wakeUp?.();
  }

  /** A request found the database unreachable. */
  markDown(error: FaceRecogError): void {
    if (this.state.database === 'down') return;
    this.state.database = 'down';
    this.state.error = error.message;
    this.wake(true);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeUp?.();
    await this.loop;
    await this.listener?.close();
    this.resolveReady();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        await this.connect();
        await this.cycle();
        this.failures = 0;
      } catch (error) {
        this.fail(error);
      }
      await this.sleep(this.failures > 0 ? this.backoffMs() : this.pollMs());
    }
  }

  private backoffMs(): number {
    return Math.min(MAX_BACKOFF_MS, this.options.pollMs * 2 ** (this.failures - 1));
  }

  private pollMs(): number {
    const listening = this.listener && this.sources.length > 0 && this.sources.every((s) => s.notifies);
    return listening ? this.options.pollMs * LISTENING_POLL_FACTOR : this.options.pollMs;
  }

  private async sleep(ms: number): Promise<void> {
    if (this.wokenEarly || this.closed) {
      this.wokenEarly = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wakeUp = null;
    this.wokenEarly = false;
  }

  private fail(error: unknown): void {
    this.failures++;
    this.force = true;
    this.introspectionDue = true;
    this.state.syncing = false;
    if (error instanceof FaceRecogError && error.code === 'gallery_unavailable') this.state.database = 'down';
    // Unavailable, overloaded, timed out: expected to pass. Anything else is a bug worth an error line.
    const transient = error instanceof FaceRecogError && error.status === 503;
    const text = message(error);
    if (this.state.error !== text) {
      this.logger[transient ? 'warn' : 'error']({ err: text, retryInMs: this.backoffMs() }, 'gallery sync failed; retrying');
    }
    this.state.error = text;
  }

  private async connect(): Promise<void> {
    if (!this.db) {
      this.db = await this.options.open();
      this.cache = this.options.cache(this.db);
    }
    if (!this.migrated) {
      const applied = await migrate(this.db);
      if (applied.length) this.logger.info({ versions: applied }, 'feature cache migrations applied');
      this.migrated = true;
      this.markUp();
    }
    if (!this.loaded) {
      await this.loadCache();
      this.loaded = true;
    }
    if (!this.listener) await this.listen();
  }

  private async loadCache(): Promise<void> {
    const started = performance.now();
    await this.cache!.load((features) => this.options.catalog.add(features.filter((f) => this.fits(f))));
    const { faces, failed } = this.options.catalog;
    this.logger.info({ faces, failed, model: this.cache!.model, ms: Math.round(performance.now() - started) }, 'feature cache loaded');
  }

  private fits(feature: CachedFeature): boolean {
    if (!feature.embedding || feature.embedding.length === this.options.dimension) return true;
    this.logger.warn({ featureId: feature.id, dimension: feature.embedding.length }, 'cached embedding has the wrong dimension; ignored');
    return false;
  }

  private async listen(): Promise<void> {
    try {
      this.listener = await this.db!.listen(
        NOTIFY_CHANNEL,
        (payload) => {
          if (payload === SCHEMA_CHANGED) this.introspectionDue = true;
          this.wake();
        },
        (error) => {
          this.logger.debug({ err: error.message }, 'notification connection lost');
          this.listener = null;
          this.wake();
        },
      );
    } catch (error) {
      this.logger.debug({ err: message(error) }, 'LISTEN failed; polling only');
    }
  }

  private async cycle(): Promise<void> {
    const db = this.db!;
    if (this.introspectionDue) await this.introspect();
    let fingerprint = await sourceFingerprint(db, this.sources).catch((error) => this.onSchemaError(error));
    if (!fingerprint || fingerprint.tables !== sourceOids(this.sources)) {
      await this.introspect();
      fingerprint = await sourceFingerprint(db, this.sources);
      this.force = true;
    }
    this.markUp();
    const changed = this.sources.filter((s) => !sameSummary(fingerprint.summaries.get(s.table), this.reflected.get(s.table)?.summary));
    if (this.force) {
      this.force = false;
      await this.reconcile();
    } else if (changed.length > 0) {
      await this.follow(changed);
    }
    this.state.syncing = false;
    this.state.lastSyncAt = new Date().toISOString();
    this.resolveReady();
  }

  private markUp(): void {
    if (this.state.database === 'down') this.logger.info('visitor database reachable');
    this.state.database = 'up';
    this.state.error = null;
  }

  /** A dropped table or renamed column fails the fingerprint: look at the tables again. */
  private onSchemaError(error: unknown): null {
    if (sqlState(error) === undefined || !['42P01', '42703'].includes(sqlState(error)!)) throw error;
    return null;
  }

  private async introspect(): Promise<void> {
    const { sources, problems } = await introspectSources(this.db!);
    this.sources = sources;
    this.introspectionDue = false;
    const summary = problems.join('; ');
    if (summary !== this.problems && summary) this.logger.warn({ problems }, 'some visitor tables cannot be read');
    this.problems = summary;
    this.logger.debug({ sources: sources.map((s) => ({ table: s.table, image: s.imageColumnName, notifies: s.notifies })) }, 'visitor tables');
  }

  /** Lists every row holding an image, drops the faces whose row version is gone, adds the new ones. */
  private async reconcile(): Promise<void> {
    const listed = await Promise.all(this.sources.map(async (s) => [s.table, await listSourceRows(this.db!, s)] as const));
    const { gone, fresh } = this.options.catalog.diff(listed.flatMap(([, rows]) => rows));
    // Gone faces leave the index at once; their cache rows are deleted after the new rows are in,
    // so an unchanged image under a new row version can reuse its embedding.
    await this.options.catalog.remove(gone);
    await this.store(fresh, gone);
    this.reflected = new Map(listed.map(([table, rows]) => [table, reflection(rows)]));
  }

  /**
   * The common change, new images, without listing every row: the row versions newer than the
   * newest one the catalog holds. If the tables' summaries grew by exactly those rows, nothing
   * else changed; otherwise (update, delete, a late commit of an older transaction) reconcile.
   */
  private async follow(changed: Source[]): Promise<void> {
    const { fingerprint, added } = await this.db!.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const fingerprint = await sourceFingerprint(tx, this.sources);
      const added = new Map<SourceTable, SourceRow[]>();
      for (const s of changed) added.set(s.table, await listSourceRowsSince(tx, s, this.reflected.get(s.table)?.maxXmin ?? 0));
      return { fingerprint, added };
    });
    const insertsOnly = this.sources.every((s) => {
      const before = this.reflected.get(s.table);
      const extra = summarise(added.get(s.table) ?? []);
      return before && sameSummary(fingerprint.summaries.get(s.table), { count: before.summary.count + extra.count, xminSum: before.summary.xminSum + extra.xminSum });
    });
    if (!insertsOnly) {
      this.logger.debug('visitor tables changed beyond inserts; reconciling every row');
      return this.reconcile();
    }
    await this.store([...added.values()].flat(), []);
    for (const [table, rows] of added) {
      const before = this.reflected.get(table)!;
      this.reflected.set(table, { summary: fingerprint.summaries.get(table)!, maxXmin: Math.max(before.maxXmin, reflection(rows).maxXmin) });
    }
  }

  /** Extracts (or reuses) the fresh rows, then deletes the cache rows of the gone faces. */
  private async store(fresh: SourceRow[], gone: Face[]): Promise<void> {
    const { catalog } = this.options;
    if (fresh.length === 0) {
      await this.cache!.remove(gone.map((f) => f.featureId));
      if (gone.length) this.logger.info({ removed: gone.length, faces: catalog.faces }, 'gallery updated');
      return;
    }
    this.state.syncing = true;
    const progress = new Progress(this.logger, fresh.length);
    this.logger.info({ images: fresh.length, removed: gone.length }, 'gallery sync: new or changed images');
    const saved = new Set<number>();
    for (const chunk of chunks(fresh, DIGEST_CHUNK)) {
      if (this.closed) return;
      for (const id of await this.processChunk(this.sources, chunk, progress)) saved.add(id);
    }
    // An upsert into a reused row slot keeps the slot's id: never delete what was just saved.
    await this.cache!.remove(gone.map((f) => f.featureId).filter((id) => !saved.has(id)));
    this.state.syncing = false;
    this.logger.info(
      {
        images: fresh.length,
        extracted: progress.extracted,
        reused: progress.reused,
        failed: progress.failed,
        removed: gone.length,
        faces: catalog.faces,
        seconds: progress.seconds(),
        imagesPerSecond: progress.rate(),
      },
      'gallery sync done',
    );
  }

  /** Digests a chunk of new rows, reuses known outcomes, extracts the rest; returns the saved ids. */
  private async processChunk(sources: Source[], rows: SourceRow[], progress: Progress): Promise<number[]> {
    const digested: DigestedRow[] = [];
    for (const [source, list] of byTable(rows, sources)) {
      digested.push(...(await digestSourceRows(this.db!, source, list.map((r) => r.ctid))));
    }
    const known = await this.cache!.findByDigest([...new Map(digested.map((r) => [r.digest.toString('hex'), r.digest])).values()]);
    const reused: NewFeature[] = [];
    const pending: DigestedRow[] = [];
    for (const row of digested) {
      const outcome = known.get(row.digest.toString('hex'));
      if (outcome) reused.push({ row, digest: row.digest, outcome });
      else pending.push(row);
    }
    const ids = await this.save(reused);
    progress.reused += reused.length;
    for (const batch of chunks(pending, this.options.batchSize)) {
      // Closing does not wait for a long reconcile: what is saved stays, the rest is done next start.
      if (this.closed) break;
      const extracted = await this.extractBatch(sources, batch);
      ids.push(...(await this.save(extracted)));
      progress.extracted += extracted.length;
      progress.failed += extracted.filter((f) => f.outcome.status === 'failed').length;
      progress.tick();
    }
    return ids;
  }

  private async extractBatch(sources: Source[], rows: SourceRow[]): Promise<NewFeature[]> {
    const features: NewFeature[] = [];
    for (const [source, list] of byTable(rows, sources)) {
      for (const row of await fetchSourceImages(this.db!, source, list.map((r) => r.ctid))) {
        features.push({ row, digest: digestOf(row.image), outcome: await this.extract(row.image) });
      }
    }
    return features;
  }

  private async extract(image: string): Promise<Outcome> {
    try {
      const result = await this.options.extractor(image);
      if (!result.ok) return { status: 'failed', reason: result.message };
      const { embedding, box, score } = result.face;
      if (embedding.length !== this.options.dimension) {
        throw new FaceRecogError('internal', `the extractor returned ${embedding.length} dimensions; the gallery expects ${this.options.dimension}`);
      }
      return { status: 'ok', embedding, box, score };
    } catch (error) {
      if (error instanceof FaceRecogError && IMAGE_ERRORS.has(error.code)) return { status: 'failed', reason: error.message };
      throw error;
    }
  }

  private async save(features: NewFeature[]): Promise<number[]> {
    const ids = await this.cache!.save(features);
    const cached: CachedFeature[] = features.map((f, i) => ({
      id: ids[i],
      source: { table: f.row.table, ctid: f.row.ctid, xmin: f.row.xmin, visitorId: f.row.visitorId },
      visitorId: f.row.visitorId,
      embedding: f.outcome.status === 'ok' ? f.outcome.embedding : null,
    }));
    await this.options.catalog.add(cached);
    return ids;
  }
}
