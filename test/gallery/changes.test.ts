// The change check alone, without PostgreSQL: crafted row versions, including xmins on both sides
// of a transaction-id wraparound (2^32), where "xmin > the newest seen" would call every old row new.
import { describe, expect, it } from 'vitest';
import { detectChange, diffRows, isRecent, TableReflection, XID_MODULUS, type XidWindow } from '../../src/gallery/changes.js';
import type { SourceRow } from '../../src/gallery/sources.js';

const WRAP = Number(XID_MODULUS);

function row(ctid: string, xmin: number): SourceRow {
  return { table: 'visitor_images', ctid, xmin, visitorId: `v${ctid}` };
}

/** What a scan of `rows` returns for the window from `lo` to `hi` (both xid8). */
function scan(rows: SourceRow[], lo: bigint, hi: bigint) {
  const window: XidWindow = { lo, hi };
  const recent = rows.filter((r) => isRecent(r.xmin, window));
  return { summary: TableReflection.of(rows, window).summary, recent, window };
}

describe('change detection across a transaction-id wraparound', () => {
  // Epoch 0 ends at 2^32; the listing ran with xids 4294967200..4294967290 in flight.
  const lo = XID_MODULUS - 96n;
  const listedHi = XID_MODULUS - 6n;
  const old = [row('(0,1)', 1_000), row('(0,2)', 3_000_000_000), row('(0,3)', WRAP - 100), row('(0,4)', WRAP - 50)];
  const known = TableReflection.of(old, { lo, hi: listedHi });

  it('counts a row by its place in the window, not by its raw xmin', () => {
    expect(isRecent(WRAP - 50, { lo, hi: listedHi })).toBe(true);
    expect(isRecent(WRAP - 100, { lo, hi: listedHi })).toBe(false);
    // After the wrap, xmin 5 is newer than 4294967290.
    expect(isRecent(5, { lo, hi: XID_MODULUS + 10n })).toBe(true);
    expect(isRecent(3_000_000_000, { lo, hi: XID_MODULUS + 10n })).toBe(false);
  });

  it('sees nothing when nothing changed, after the wrap as before it', () => {
    const now = scan(old, lo, XID_MODULUS + 1_000n);
    expect(detectChange(known.summary, now.summary)).toBe('nothing');
  });

  it('takes rows written after the wrap (xmin 3, 7) as new rows only, and finds exactly them', () => {
    const rows = [...old, row('(1,1)', 3), row('(1,2)', 7)];
    const now = scan(rows, lo, XID_MODULUS + 10n);
    expect(detectChange(known.summary, now.summary)).toBe('inserts');
    const { fresh, gone } = diffRows(known.recent, now.recent);
    expect(fresh.map((r) => r.xmin)).toEqual([3, 7]);
    expect(gone).toEqual([]);

    // Taken in, the window moves on past the wrap; the old rows settle, the table agrees again.
    const next = known.advance(now.recent, { lo: XID_MODULUS + 8n, hi: XID_MODULUS + 10n });
    expect(detectChange(next.summary, scan(rows, XID_MODULUS + 8n, XID_MODULUS + 20n).summary)).toBe('nothing');
    expect(next.settled.count).toBe(rows.length);
  });

  it('reconciles when an older row is updated or deleted, before or after the wrap', () => {
    const updated = [row('(0,1)', 1_000), row('(0,2)', 3_000_000_000), row('(2,1)', 4), row('(0,4)', WRAP - 50)];
    expect(detectChange(known.summary, scan(updated, lo, XID_MODULUS + 10n).summary)).toBe('reconcile');
    const deleted = old.slice(1);
    expect(detectChange(known.summary, scan(deleted, lo, XID_MODULUS + 10n).summary)).toBe('reconcile');
  });

  it('finds a recent row updated again within the window as gone and fresh, not a reconcile', () => {
    const rows = [...old.filter((r) => r.ctid !== '(0,4)'), row('(0,5)', 9)];
    const now = scan(rows, lo, XID_MODULUS + 10n);
    expect(detectChange(known.summary, now.summary)).toBe('inserts');
    const { fresh, gone } = diffRows(known.recent, now.recent);
    expect(fresh.map((r) => r.ctid)).toEqual(['(0,5)']);
    expect(gone.map((r) => r.ctid)).toEqual(['(0,4)']);
  });

  it('reconciles rather than judge a window of half the xid space or more', () => {
    expect(detectChange(known.summary, scan(old, lo, lo + 2n ** 31n).summary)).toBe('reconcile');
  });
});
