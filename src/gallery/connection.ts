// The gallery's connection to PostgreSQL: opened (starting the embedded server if need be) and
// migrated once, the feature cache on it, and one LISTEN connection for the notifications the
// gallery follows (the optional triggers' and the extractor's). Each step is retried by the sync
// loop until it succeeds; a lost LISTEN connection is opened again on the next round.
import type { Logger } from 'pino';
import type { Database, Listener } from './db.js';
import type { FeatureCache } from './feature-cache.js';
import { migrate, type MigrationReport } from './migrations.js';
import { CACHE_CHANNEL } from './service-schema.js';
import { NOTIFY_CHANNEL } from './sources.js';

export interface ConnectionOptions {
  /** Opens the database (starting the embedded one if need be). */
  open: () => Promise<Database>;
  cache: (db: Database) => FeatureCache;
  logger: Logger;
}

export interface Notification {
  /** NOTIFY_CHANNEL (a visitor table written, or SCHEMA_CHANGED) or CACHE_CHANNEL (the cache written). */
  channel: string;
  payload: string;
}

export class GalleryConnection {
  private opened: { db: Database; cache: FeatureCache } | null = null;
  private migrated = false;
  private listener: Listener | null = null;

  constructor(private readonly options: ConnectionOptions) {}

  /** The open database and cache, or null before the first connection. */
  get current(): { db: Database; cache: FeatureCache } | null {
    return this.migrated ? this.opened : null;
  }

  get listening(): boolean {
    return this.listener !== null;
  }

  /** Opens and migrates, once: the open database and cache, `migratedNow` the first time it succeeds. */
  async ensure(): Promise<{ db: Database; cache: FeatureCache; migratedNow: boolean }> {
    if (!this.opened) {
      const db = await this.options.open();
      this.opened = { db, cache: this.options.cache(db) };
    }
    if (this.migrated) return { ...this.opened, migratedNow: false };
    this.report(await migrate(this.opened.db));
    this.migrated = true;
    return { ...this.opened, migratedNow: true };
  }

  /** LISTEN (again, when the connection was lost); a failure leaves the gallery polling. */
  async listen(onNotify: (notification: Notification) => void): Promise<void> {
    if (this.listener || !this.opened) return;
    try {
      this.listener = await this.opened.db.listen(
        [NOTIFY_CHANNEL, CACHE_CHANNEL],
        (channel, payload) => onNotify({ channel, payload }),
        (error) => {
          this.options.logger.debug({ err: error.message }, 'notification connection lost');
          this.listener = null;
          onNotify({ channel: '', payload: '' });
        },
      );
    } catch (error) {
      this.options.logger.debug({ err: (error as Error).message }, 'LISTEN failed; polling only');
    }
  }

  /** Later queries run on new connections (a grant or role setting made meanwhile is seen). */
  recycle(): void {
    this.opened?.db.recycle();
  }

  async close(): Promise<void> {
    await this.listener?.close();
    this.listener = null;
  }

  private report(report: MigrationReport): void {
    const { logger } = this.options;
    const schema = this.opened!.db.schema.name;
    if (report.moved.length) logger.info({ moved: report.moved, schema }, 'moved the tables of an older version into DATABASE_SCHEMA');
    if (report.leftBehind.length) {
      logger.warn({ leftBehind: report.leftBehind, schema }, "an older version's tables belong to another role and were left where they are; a new feature cache is built (drop them once it is)");
    }
    if (report.applied.length) logger.info({ versions: report.applied, schema }, 'feature cache migrations applied');
  }
}
