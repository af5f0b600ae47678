// Keeps the catalog equal to the visitor tables without anyone calling us, with any number of
// replicas on one database. One replica per model holds the extractor's lease (lease.ts): it
// reconciles at start, watches the visitor tables (watch.ts) and extracts what is new
// (extraction.ts). Every other replica loads the feature cache and follows it: the extractor's
// writes are announced on CACHE_CHANNEL and read by version, so a new image is recognised by
// every replica moments after it is extracted. When the extractor goes, another takes its lease,
// catches up with the cache and reconciles.
//
// Never throws: a database error marks the gallery down, and the loop retries with backoff until
// the database answers again.
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import type { Catalog } from './catalog.js';
import { GalleryConnection, type Notification } from './connection.js';
import type { Database } from './db.js';
import { isPermissionDenied } from './db.js';
import { Extraction, type ExtractionReport } from './extraction.js';
import type { CachedFeature, FeatureCache } from './feature-cache.js';
import { ExtractorLease, type Role } from './lease.js';
import { DatabasePermissionError, isBlocking } from './problems.js';
import { CACHE_CHANNEL } from './service-schema.js';
import { SCHEMA_CHANGED, type Source } from './sources.js';
import type { Extractor, GalleryProblem, GalleryStatus } from './types.js';
import { SourceWatcher, type Work } from './watch.js';

/** What a round of the sync works with, once connected. */
interface Round {
  db: Database;
  cache: FeatureCache;
  watcher: SourceWatcher;
  lease: ExtractorLease;
}

/** What the gallery reports; written by the sync loop (and by search when the database fails it). */
export interface SyncState {
  database: GalleryStatus['database'];
  syncing: boolean;
  lastSyncAt: string | null;
  error: string | null;
  /** What keeps the gallery from reading every stored image, as last found. */
  problems: GalleryProblem[];
  /** Whether this replica extracts or follows; null before it first asked. */
  role: Role | null;
  /** Stored images this replica extracted (face_recog_gallery_extractions_total). */
  extractions: number;
}

export interface SyncOptions {
  /** Opens the database (starting the embedded one if need be); retried until it succeeds. */
  open: () => Promise<Database>;
  cache: (db: Database) => FeatureCache;
  catalog: Catalog;
  extractor: Extractor;
  model: string;
  dimension: number;
  pollMs: number;
  batchSize: number;
  /** Extractor calls in flight at once while reconciling. */
  concurrency: number;
  logger: Logger;
}

const MAX_BACKOFF_MS = 5_000;
/** A follower told of every write by NOTIFY still reads the cache this often, in case one was lost. */
const FOLLOW_SAFETY_MS = 5_000;
/** How often a follower looks at the visitor tables' definitions (for search and /health). */
const FOLLOWER_INTROSPECT_MS = 10_000;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class GallerySync {
  readonly state: SyncState = {
    database: 'down',
    syncing: true,
    lastSyncAt: null,
    error: 'connecting to the visitor database',
    problems: [],
    role: null,
    extractions: 0,
  };
  /** Resolves after the first complete reconcile, or the first catch-up of a follower (or when closed before). */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private readonly options: SyncOptions;
  private readonly logger: Logger;
  private readonly link: GalleryConnection;
  private watcher: SourceWatcher | null = null;
  private lease: ExtractorLease | null = null;
  private leaseStarted = false;
  /** The newest cache version the catalog holds, once the cache is loaded. */
  private version = 0;
  private cacheLoaded = false;
  /** This replica just became the extractor: catch up with the cache, then reconcile. */
  private newTerm = false;
  private force = true;
  private lastIntrospection = 0;
  private closed = false;
  private failures = 0;
  private wakeUp: (() => void) | null = null;
  private wokenEarly = false;
  private loop: Promise<void> | null = null;

  constructor(options: SyncOptions) {
    this.options = options;
    this.logger = options.logger;
    this.link = new GalleryConnection({ open: options.open, cache: options.cache, logger: options.logger });
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
  }

  /** The open database and cache, or null before the first connection. */
  get connection(): { db: Database; cache: FeatureCache; sources: Source[] } | null {
    const current = this.link.current;
    return current && this.watcher ? { ...current, sources: this.watcher.sources } : null;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Check for changes now; `reconcile` asks for a full reconcile, not only the change check. */
  wake(reconcile = false): void {
    if (reconcile) {
      this.force = true;
      if (this.watcher) this.watcher.introspectionDue = true;
    }
    this.wokenEarly = true;
    this.wakeUp?.();
  }

  /** A request found the database unreachable (or refusing this role: the next round says what to grant). */
  markDown(error: FaceRecogError): void {
    if (isPermissionDenied(error)) return this.wake(true);
    if (this.state.database === 'down') return;
    this.state.database = 'down';
    this.state.error = error.message;
    this.wake(true);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeUp?.();
    await this.loop;
    await this.lease?.stop();
    await this.link.close();
    this.resolveReady();
  }

  /** The gallery must not answer: a permission is missing (or a visitor table is out of sight). */
  get blocked(): GalleryProblem[] {
    return this.state.problems.filter(isBlocking);
  }

  private get role(): Role {
    return this.lease?.role ?? 'follower';
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      try {
        await this.cycle(await this.connect());
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
    if (this.role === 'extractor' && this.watcher && !this.force && !this.newTerm) return this.watcher.nextLookInMs();
    if (this.role === 'follower' && this.link.listening) return FOLLOW_SAFETY_MS;
    return this.options.pollMs;
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
    if (this.watcher) this.watcher.introspectionDue = true;
    this.state.syncing = false;
    if (error instanceof DatabasePermissionError) {
      // The database answers; the retry runs on new connections, so that a grant (or a role
      // setting) made meanwhile is seen.
      this.state.problems = [...this.state.problems.filter((p) => !isBlocking(p)), ...error.problems];
      this.state.database = 'up';
      this.link.recycle();
    } else if (isPermissionDenied(error)) {
      // Revoked while running: the next round's checks say what to grant.
      this.link.recycle();
    } else if (error instanceof FaceRecogError && error.code === 'gallery_unavailable') {
      this.state.database = 'down';
    }
    // Unavailable, overloaded, timed out: expected to pass. Anything else is a bug worth an error line.
    const transient = error instanceof FaceRecogError && error.status === 503;
    const text = message(error);
    if (this.state.error !== text) {
      this.logger[transient ? 'warn' : 'error']({ err: text, retryInMs: this.backoffMs() }, 'gallery sync failed; retrying');
    }
    this.state.error = text;
  }

  /** Connects (again) if need be; what a round works with. */
  private async connect(): Promise<Round> {
    // The problems found so far stay reported until the tables are looked at again (next, in cycle()).
    const { db, cache, migratedNow } = await this.link.ensure();
    if (migratedNow) this.markUp();
    const watcher = (this.watcher ??= new SourceWatcher(db, this.options.pollMs, this.logger));
    const lease = (this.lease ??= new ExtractorLease(db, this.options.model, this.logger, (role) => {
      this.state.role = role;
      if (role === 'extractor') this.newTerm = true;
      this.wake();
    }));
    if (!this.cacheLoaded) {
      this.version = await this.loadCache(cache);
      this.cacheLoaded = true;
    }
    await this.link.listen((n) => this.onNotify(n));
    if (!this.leaseStarted) {
      await lease.start();
      this.leaseStarted = true;
      this.state.role = lease.role;
    }
    return { db, cache, watcher, lease };
  }

  private onNotify({ channel, payload }: Notification): void {
    if (payload === SCHEMA_CHANGED && this.watcher) this.watcher.introspectionDue = true;
    // The extractor is told of its own writes too: nothing to follow there.
    if (channel === CACHE_CHANNEL && (payload !== this.options.model || this.role === 'extractor')) return;
    if (channel !== CACHE_CHANNEL) this.watcher?.nudge();
    this.wake();
  }

  private async loadCache(cache: FeatureCache): Promise<number> {
    const started = performance.now();
    const version = await cache.load((features) => this.options.catalog.add(features.filter((f) => this.fits(f))));
    const { faces, failed } = this.options.catalog;
    this.logger.info({ faces, failed, model: cache.model, ms: Math.round(performance.now() - started) }, 'feature cache loaded');
    return version;
  }

  private fits(feature: CachedFeature): boolean {
    if (!feature.embedding || feature.embedding.length === this.options.dimension) return true;
    this.logger.warn({ featureId: feature.id, dimension: feature.embedding.length }, 'cached embedding has the wrong dimension; ignored');
    return false;
  }

  private async cycle(round: Round): Promise<void> {
    const { watcher } = round;
    this.state.role = this.role;
    if (this.role === 'extractor') {
      if (this.newTerm) {
        // What the previous extractor wrote up to the moment its lease ended is all committed by now.
        this.newTerm = false;
        await this.follow(round);
        this.force = true;
      }
      if (this.force) {
        this.force = false;
        watcher.forget();
      }
      await this.apply(await watcher.look(), round);
    } else {
      if (watcher.introspectionDue || performance.now() - this.lastIntrospection > FOLLOWER_INTROSPECT_MS) {
        await watcher.introspect();
        this.lastIntrospection = performance.now();
      }
      await this.follow(round);
    }
    this.state.problems = watcher.problems;
    this.markUp();
    const blocked = this.blocked;
    // Readable tables are kept in sync meanwhile; the gallery stays unavailable until the grant.
    if (blocked.length > 0) throw new DatabasePermissionError(blocked);
    this.state.syncing = false;
    this.state.lastSyncAt = new Date().toISOString();
    this.resolveReady();
  }

  private markUp(): void {
    if (this.state.database === 'down') this.logger.info('visitor database reachable');
    this.state.database = 'up';
    this.state.error = null;
  }

  /** Takes in what was written to the cache since the catalog's version (by the extractor, or a previous one). */
  private async follow({ cache }: Round): Promise<void> {
    const { catalog } = this.options;
    const changes = await cache.changesSince(this.version);
    if (changes.features.length > 0) await catalog.add(changes.features.filter((f) => this.fits(f)));
    if (changes.removed.length > 0) await catalog.remove(catalog.byIds(changes.removed));
    if (changes.version !== this.version) this.logger.debug({ added: changes.features.length, removed: changes.removed.length, faces: catalog.faces }, 'followed the feature cache');
    this.version = changes.version;
  }

  private async apply(work: Work, round: Round): Promise<void> {
    if (work.kind === 'nothing') return;
    const { catalog } = this.options;
    const { gone, fresh } =
      work.kind === 'reconcile'
        ? catalog.diff(work.rows)
        : { gone: catalog.byVersions(work.gone), fresh: work.fresh };
    // Gone faces leave the index at once; their cache rows are deleted after the new rows are in,
    // so an unchanged image under a new row version can reuse its embedding.
    await catalog.remove(gone);
    if (fresh.length > 0) {
      this.state.syncing = true;
      this.logger.info({ images: fresh.length, removed: gone.length }, 'gallery sync: new or changed images');
    }
    const report = await this.extraction(round).run(fresh, gone);
    if (this.closed || this.role !== 'extractor') {
      // Stopped part way: what is saved stays, the next extractor reconciles.
      this.force = true;
      return;
    }
    work.done();
    this.log(report);
  }

  private extraction({ db, cache, lease, watcher }: Round): Extraction {
    return new Extraction(
      {
        db,
        cache,
        catalog: this.options.catalog,
        extractor: this.options.extractor,
        dimension: this.options.dimension,
        batchSize: this.options.batchSize,
        concurrency: this.options.concurrency,
        fenced: (work) => lease.fenced(work),
        stopped: () => this.closed || this.role !== 'extractor',
        onSaved: (version, extracted) => {
          this.version = Math.max(this.version, version);
          this.state.extractions += extracted;
        },
        logger: this.logger,
      },
      watcher.sources,
    );
  }

  private log(report: ExtractionReport): void {
    if (report.images === 0) {
      if (report.removed > 0) this.logger.info({ removed: report.removed, faces: this.options.catalog.faces }, 'gallery updated');
      return;
    }
    this.logger.info({ ...report, faces: this.options.catalog.faces }, 'gallery sync done');
  }
}
