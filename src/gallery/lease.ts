// One extractor per model among any number of replicas, coordinated through PostgreSQL: a lease
// row per model in DATABASE_SCHEMA names the replica that reconciles and extracts, until a time
// the database's own clock sets. The holder renews it every second; any other replica takes it
// once it has expired, so a replica killed or cut off from the database is replaced within the
// TTL and a second. A lease row, unlike an advisory lock, also expires when the network is cut
// without the server noticing the dead connection.
//
// Every write to the feature cache runs in a fenced transaction: it first locks the lease row and
// checks that it is still this replica's, same term. So a holder that lost its lease (paused,
// partitioned) can never write after its successor took over, and writes, serialised by that row
// lock, commit in the order of the versions they take (which followers rely on).
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import type { Database, Queryable } from './db.js';
import { CACHE_CHANNEL } from './service-schema.js';

/** How long a lease lasts without renewal: the longest an extractor's death goes unnoticed. */
export const LEASE_TTL_MS = 5_000;
/** How often the holder renews, and the others try to take it. */
export const CLAIM_EVERY_MS = 1_000;
/** The holder stops counting on its lease this long before the database would let it expire. */
const SAFETY_MARGIN_MS = 1_000;

export type Role = 'extractor' | 'follower';

/** The lease was lost (expired, taken over) before a write: nothing was written. */
export class LeaseLostError extends FaceRecogError {
  constructor() {
    super('gallery_unavailable', 'this replica is no longer the extractor: another one took over');
  }
}

export class ExtractorLease {
  /** This replica, as the lease row names it. */
  readonly holder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private epoch: number | null = null;
  /** performance.now() after which this replica no longer counts on its lease. */
  private validUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  private claiming: Promise<void> | null = null;
  private created = false;

  constructor(
    private readonly db: Database,
    private readonly model: string,
    private readonly logger: Logger,
    /** Called when this replica becomes the extractor (a new term) or stops being it. */
    private readonly onChange: (role: Role) => void,
  ) {}

  get role(): Role {
    return this.epoch !== null && performance.now() < this.validUntil ? 'extractor' : 'follower';
  }

  /** Claims now, then every CLAIM_EVERY_MS until stopped. */
  start(): Promise<void> {
    this.timer ??= setInterval(() => void this.claim(), CLAIM_EVERY_MS);
    return this.claim();
  }

  /** Renews this replica's lease, or takes it when free or expired. Never throws. */
  claim(): Promise<void> {
    this.claiming ??= this.tryClaim().finally(() => (this.claiming = null));
    return this.claiming;
  }

  private async tryClaim(): Promise<void> {
    const before = this.role;
    const asked = performance.now();
    try {
      if (!this.created) {
        await this.db.query(`INSERT INTO ${this.db.schema.leases} (model) VALUES ($1) ON CONFLICT DO NOTHING`, [this.model]);
        this.created = true;
      }
      // Matches no row (and writes nothing) while another replica's lease runs.
      const [row] = await this.db.query<{ epoch: string }>(
        `UPDATE ${this.db.schema.leases}
            SET epoch = CASE WHEN holder = $2 AND epoch = $3 AND expires_at > now() THEN epoch ELSE epoch + 1 END,
                holder = $2, expires_at = now() + make_interval(secs => $4)
          WHERE model = $1 AND (expires_at <= now() OR (holder = $2 AND epoch = $3))
          RETURNING epoch::text AS epoch`,
        [this.model, this.holder, this.epoch ?? -1, LEASE_TTL_MS / 1000],
      );
      const epoch = row ? Number(row.epoch) : null;
      const newTerm = epoch !== null && epoch !== this.epoch;
      this.epoch = epoch;
      this.validUntil = epoch === null ? 0 : asked + LEASE_TTL_MS - SAFETY_MARGIN_MS;
      if (newTerm) {
        this.logger.info({ model: this.model, epoch }, 'this replica is the extractor');
        this.onChange('extractor');
        return;
      }
    } catch (error) {
      this.logger.debug({ err: (error as Error).message }, 'lease claim failed');
    }
    if (before === 'extractor' && this.role === 'follower') {
      this.epoch = null;
      this.logger.warn({ model: this.model }, 'extractor lease lost; following the feature cache');
      this.onChange('follower');
    }
  }

  /**
   * Runs `work` in a transaction that holds the lease row, only while the lease is this
   * replica's; announces the write to the followers on commit. Throws LeaseLostError otherwise.
   */
  async fenced<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    if (this.epoch === null) throw new LeaseLostError();
    const epoch = this.epoch;
    return this.db.transaction(async (tx) => {
      const held = await tx.query(
        `SELECT 1 FROM ${this.db.schema.leases} WHERE model = $1 AND holder = $2 AND epoch = $3 AND expires_at > now() FOR UPDATE`,
        [this.model, this.holder, epoch],
      );
      if (held.length === 0) throw new LeaseLostError();
      const result = await work(tx);
      await tx.query('SELECT pg_notify($1, $2)', [CACHE_CHANNEL, this.model]);
      return result;
    });
  }

  /** Stops claiming and hands the lease back at once (a graceful stop needs no TTL to pass). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.claiming;
    if (this.epoch === null) return;
    const epoch = this.epoch;
    this.epoch = null;
    await this.db
      .query(`UPDATE ${this.db.schema.leases} SET expires_at = '-infinity' WHERE model = $1 AND holder = $2 AND epoch = $3`, [this.model, this.holder, epoch])
      .catch(() => undefined);
  }
}
