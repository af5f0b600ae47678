// Watching the visitor tables (the extractor's job), at a cost the backend's database can carry
// as they grow. Each look is one pass over a table's heap (scanSource: no TOAST, no image read),
// classified by detectChange (changes.ts); a full listing only when something beyond recent rows
// changed. How often a pass runs adapts to what it costs:
// - Between passes, the tables' write counters (pg_stat_get_tuples_*: shared memory, the same cost
//   at any size) say whether anything was written; the optional notify triggers say it at once.
// - With no sign of a write, a pass runs only as often as keeps it under IDLE_BUDGET of one
//   database core (at least every pollMs): it catches what the counters miss (track_counts off,
//   statistics flushed late, reset).
// - On a sign of a write, a pass runs at once, unless passes are so dear that this would spend
//   more than CHANGE_BUDGET of a core while the tables keep changing.
import type { Logger } from 'pino';
import { detectChange, diffRows, TableReflection } from './changes.js';
import type { Database } from './db.js';
import { sqlState } from './db.js';
import { describeProblem } from './problems.js';
import { introspectSources, listSourceRows, resolvedOids, scanSource, sourceOids, type Source, type SourceRow, type SourceTable } from './sources.js';
import type { GalleryProblem } from './types.js';

/**
 * Share of one database core that passes may take while nothing is written: half the 1% allowed,
 * since a pass's cost is its statement's time on the server, and its round trip and the counters'
 * reads come on top.
 */
export const IDLE_BUDGET = 0.005;
/** Share they may take while the tables keep changing (new images must show within 2 s). */
export const CHANGE_BUDGET = 0.1;
/** Weight of the latest pass in the running estimate of a pass's cost. */
const COST_SMOOTHING = 0.3;
/** With every write announced by the triggers, idle passes are only a safety net. */
const ANNOUNCED_POLL_FACTOR = 10;

export type Work =
  | { kind: 'nothing' }
  /** Rows written since the last look (fresh) and the recent ones no longer there (gone). */
  | { kind: 'changes'; fresh: SourceRow[]; gone: SourceRow[]; done: () => void }
  /** Every row holding an image now: diff the whole catalog against it. */
  | { kind: 'reconcile'; rows: SourceRow[]; done: () => void };

export class SourceWatcher {
  sources: Source[] = [];
  problems: GalleryProblem[] = [];
  /** The visitor tables must be looked at again (start, error, DDL, triggers installed). */
  introspectionDue = true;
  private reflections = new Map<SourceTable, TableReflection>();
  private counters: string | null = null;
  /** A write was signalled (NOTIFY, counters) and no pass has run since. */
  private nudged = false;
  private lastPassAt = -Infinity;
  /** Running estimate of one pass over every table, in ms. */
  private passMs = 0;
  private loggedProblems = '';

  constructor(
    private readonly db: Database,
    private readonly pollMs: number,
    private readonly logger: Logger,
  ) {}

  /** All tables carry the notify trigger: writes are announced, counters need not be read. */
  get announced(): boolean {
    return this.sources.length > 0 && this.sources.every((s) => s.notifies);
  }

  nudge(): void {
    this.nudged = true;
  }

  /** The next look must list every row (start, a failure, stale rows seen by a search). */
  forget(): void {
    this.reflections.clear();
  }

  /** How long a pass may wait without a sign of a write, and after one. */
  intervalsMs(): { idle: number; changed: number } {
    const floor = this.announced ? this.pollMs * ANNOUNCED_POLL_FACTOR : this.pollMs;
    return { idle: Math.max(floor, this.passMs / IDLE_BUDGET), changed: this.passMs / CHANGE_BUDGET };
  }

  /** When to look next: when a pass is due, and at least every pollMs to read the counters unless writes are announced. */
  nextLookInMs(): number {
    const { idle, changed } = this.intervalsMs();
    const due = Math.max(0, (this.nudged ? changed : idle) - (performance.now() - this.lastPassAt));
    return this.announced ? due : Math.min(this.pollMs, due);
  }

  async introspect(): Promise<void> {
    const { sources, problems } = await introspectSources(this.db, this.db.schema.name);
    this.sources = sources;
    this.introspectionDue = false;
    this.problems = problems;
    const summary = problems.map(describeProblem).join('; ');
    if (summary !== this.loggedProblems && summary) this.logger.warn({ problems: problems.map(describeProblem) }, 'some visitor tables cannot be read');
    this.loggedProblems = summary;
    this.logger.debug({ sources: sources.map((s) => ({ table: s.table, image: s.imageColumnName, notifies: s.notifies })) }, 'visitor tables');
  }

  /** Looks at the tables if it is time to; returns what the catalog must take in. */
  async look(): Promise<Work> {
    if (this.introspectionDue) await this.introspect();
    if ((await resolvedOids(this.db)) !== sourceOids(this.sources)) {
      await this.introspect();
      this.forget();
    }
    if (this.reflections.size === 0 && this.sources.length > 0) return this.listAll();
    if (!this.announced && (await this.countersMoved())) this.nudged = true;
    const { idle, changed } = this.intervalsMs();
    const since = performance.now() - this.lastPassAt;
    if (since < (this.nudged ? changed : idle)) return { kind: 'nothing' };
    this.nudged = false;
    try {
      return await this.pass();
    } finally {
      this.lastPassAt = performance.now();
    }
  }

  /**
   * Folds a pass's cost into the running estimate. The server's own time, not the client's wall
   * time: a busy client (the service under load) must not make it look dearer and space the
   * passes out, which only the database's cost should do.
   */
  private observePassCost(serverMs: number): void {
    this.passMs = this.lastPassAt === -Infinity ? serverMs : COST_SMOOTHING * serverMs + (1 - COST_SMOOTHING) * this.passMs;
  }

  /** The tables' insert, update and delete counters, moved since the last call? */
  private async countersMoved(): Promise<boolean> {
    const [row] = await this.db.query<{ counters: string }>(
      `SELECT string_agg(concat_ws(':', o, pg_stat_get_tuples_inserted(o), pg_stat_get_tuples_updated(o), pg_stat_get_tuples_deleted(o)), ',') AS counters
         FROM unnest($1::oid[]) AS o`,
      [this.sources.map((s) => s.oid)],
    );
    const moved = this.counters !== null && row.counters !== this.counters;
    this.counters = row.counters;
    return moved;
  }

  private async listAll(): Promise<Work> {
    // The tables' definitions too: a column's type may have changed (ALTER ... TYPE rewrites every row).
    await this.introspect();
    const listings = await Promise.all(this.sources.map(async (s) => [s.table, await listSourceRows(this.db, s)] as const));
    return {
      kind: 'reconcile',
      rows: listings.flatMap(([, l]) => l.rows),
      done: () => (this.reflections = new Map(listings.map(([table, l]) => [table, TableReflection.of(l.rows, l.window)]))),
    };
  }

  private async pass(): Promise<Work> {
    const scans = await Promise.all(
      this.sources.map(async (s) => {
        const known = this.reflections.get(s.table)!;
        return { table: s.table, known, scan: await scanSource(this.db, s, known.window.lo).catch((e) => this.onSchemaError(e)) };
      }),
    );
    this.observePassCost(scans.reduce((sum, { scan }) => sum + (scan?.serverMs ?? 0), 0));
    if (scans.some(({ scan }) => scan === null)) return this.listAll();
    const changes = scans.map(({ table, known, scan }) => ({ table, known, scan: scan!, change: detectChange(known.summary, scan!.summary) }));
    if (changes.some((c) => c.change === 'reconcile')) {
      this.logger.debug('visitor tables changed beyond new rows; reconciling every row');
      return this.listAll();
    }
    const changed = changes.filter((c) => c.change === 'inserts');
    const diffs = changed.map((c) => diffRows(c.known.recent, c.scan.recent));
    const done = () => {
      for (const { table, known, scan } of changes) this.reflections.set(table, known.advance(scan.recent, scan.next));
    };
    if (changed.length === 0) {
      done();
      return { kind: 'nothing' };
    }
    return { kind: 'changes', fresh: diffs.flatMap((d) => d.fresh), gone: diffs.flatMap((d) => d.gone), done };
  }

  /** A dropped table or renamed column fails the pass: look at the tables again. */
  private onSchemaError(error: unknown): null {
    if (!['42P01', '42703'].includes(sqlState(error) ?? '')) throw error;
    this.introspectionDue = true;
    return null;
  }
}
