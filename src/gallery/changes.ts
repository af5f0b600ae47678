// Change detection, pure: from what the catalog knows of a visitor table and what a scan of it
// found, decide whether nothing changed, only rows written since the last look changed (new
// images, in practice), or anything else did (an older row updated or deleted: reconcile).
//
// Rows are told apart by their row version (ctid, xmin). xmin is a 32-bit transaction id that
// wraps around every 2^32 transactions, so "xmin > the newest seen" stops meaning "newer" after a
// wraparound. Here "recent" is instead "written by a transaction that had not finished when the
// previous scan ran": the previous scan's snapshot gives, as 64-bit transaction ids (xid8, which
// never wrap), the oldest transaction then running (`lo`); the current scan's snapshot gives the
// next id to be assigned (`hi`). A row is recent when its xmin lies in [lo, hi) modulo 2^32. Rows
// written before lo are "settled", and only their count and xmin sum are compared.
//
// A settled row's xmin that is more than 2^32 transactions old can fall in the window modulo
// 2^32; it is then seen as recent by one side and settled by the other, and costs one needless
// reconcile, never a missed change.
import type { SourceRow } from './sources.js';

export const XID_MODULUS = 2n ** 32n;
/** Beyond half the xid space, modular comparison is ambiguous: reconcile instead. */
const MAX_SPAN = 2n ** 31n;

/** The transactions a scan counts as recent: from lo (inclusive) to hi (exclusive), as xid8. */
export interface XidWindow {
  lo: bigint;
  hi: bigint;
}

export interface RowsSummary {
  count: number;
  xminSum: bigint;
}

/** A table's rows holding an image, split by a window. */
export interface TableSummary {
  window: XidWindow;
  settled: RowsSummary;
  recent: RowsSummary;
}

export type Change = 'nothing' | 'inserts' | 'reconcile';

export const EMPTY_ROWS: RowsSummary = { count: 0, xminSum: 0n };

export function isRecent(xmin: number, window: XidWindow): boolean {
  const offset = (((BigInt(xmin) - window.lo) % XID_MODULUS) + XID_MODULUS) % XID_MODULUS;
  return offset < window.hi - window.lo;
}

export function summariseRows(rows: { xmin: number }[]): RowsSummary {
  return { count: rows.length, xminSum: rows.reduce((sum, r) => sum + BigInt(r.xmin), 0n) };
}

function sameRows(a: RowsSummary, b: RowsSummary): boolean {
  return a.count === b.count && a.xminSum === b.xminSum;
}

/**
 * What the catalog (`known`) and the table (`now`) say: 'nothing' when they agree, 'inserts'
 * when they differ only in recent rows (those are listed by the scan and diffed alone),
 * 'reconcile' when a settled row changed or the window is too wide to judge.
 */
export function detectChange(known: TableSummary, now: TableSummary): Change {
  if (now.window.hi - now.window.lo >= MAX_SPAN || now.window.lo !== known.window.lo) return 'reconcile';
  if (!sameRows(known.settled, now.settled)) return 'reconcile';
  return sameRows(known.recent, now.recent) ? 'nothing' : 'inserts';
}

/** The rows of `current` that `known` lacks (new row versions), and the known ones no longer in it. */
export function diffRows<T extends SourceRow>(known: Map<string, SourceRow>, current: T[]): { fresh: T[]; gone: SourceRow[] } {
  const now = new Map(current.map((r) => [r.ctid, r]));
  const fresh = current.filter((r) => known.get(r.ctid)?.xmin !== r.xmin);
  const gone = [...known.values()].filter((r) => now.get(r.ctid)?.xmin !== r.xmin);
  return { fresh, gone };
}

/**
 * What the catalog knows of one table, by the window of the scan that last agreed with it: the
 * settled rows summed up, the recent ones kept by ctid (few: the transactions of one interval).
 */
export class TableReflection {
  constructor(
    readonly window: XidWindow,
    readonly settled: RowsSummary,
    readonly recent: Map<string, SourceRow>,
  ) {}

  /** From a complete listing taken in a snapshot whose bounds are `window`. */
  static of(rows: SourceRow[], window: XidWindow): TableReflection {
    const { recent, settled } = splitByWindow(rows, window);
    return new TableReflection(window, settled, recent);
  }

  get summary(): TableSummary {
    return { window: this.window, settled: this.settled, recent: summariseRows([...this.recent.values()]) };
  }

  /**
   * After a scan agreed on the settled rows and its recent rows were taken in: the next window
   * starts at `nextLo`; rows older than it join the settled sum.
   */
  advance(recent: SourceRow[], next: XidWindow): TableReflection {
    const { recent: stillRecent, settled: settling } = splitByWindow(recent, next);
    return new TableReflection(next, { count: this.settled.count + settling.count, xminSum: this.settled.xminSum + settling.xminSum }, stillRecent);
  }
}

/** In one pass (a full listing holds every row of the table): the recent rows by ctid, the settled ones summed up. */
function splitByWindow(rows: SourceRow[], window: XidWindow): { recent: Map<string, SourceRow>; settled: RowsSummary } {
  const recent = new Map<string, SourceRow>();
  let count = 0;
  let xminSum = 0n;
  for (const row of rows) {
    if (isRecent(row.xmin, window)) {
      recent.set(row.ctid, row);
    } else {
      count++;
      xminSum += BigInt(row.xmin);
    }
  }
  return { recent, settled: { count, xminSum } };
}
