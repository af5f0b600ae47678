// What the gallery knows in memory: every cached stored image (by row slot, to diff against the
// visitor tables), and the searchable faces among them (by feature id, the vector index's key).
//
// Kept as columns, one slot per stored image, not as an object per face: at a million faces
// objects (a face, its row version, its ctid string, two map entries) held 330 bytes apiece on
// V8's heap, which the collector then let grow with the load's garbage (the service's RSS
// 1,350-1,370 MB). Columns hold 25 bytes a face, the maps small numbers and each visitor id is
// kept once: 190 bytes a face in all, RSS 1,200-1,210 MB. A Face is made only when one is handed
// out (a search's candidates, a diff's gone faces): a copy of its slot.
import type { CachedFeature } from './feature-cache.js';
import { SOURCE_TABLES, type SourceRow, type SourceTable } from './sources.js';
import type { TimeLimit } from './time-limit.js';
import type { VectorIndex } from './vector-index.js';

export interface Face {
  featureId: number;
  visitorId: string;
  /** The row version the embedding came from. */
  source: SourceRow;
  /** False for a stored image that yielded no face: known, counted, not searchable. */
  searchable: boolean;
}

export interface Diff {
  /** Known faces whose row version is gone (deleted, updated, or its table dropped). */
  gone: Face[];
  /** Rows holding an image that no known face comes from. */
  fresh: SourceRow[];
}

const FIRST_SLOTS = 1_024;
/** A slot's kind: its table's place in SOURCE_TABLES, plus SEARCHABLE when its image yielded a face. */
const SEARCHABLE = 0x80;
const tableOf = (kind: number) => kind & ~SEARCHABLE;
const isSearchable = (kind: number) => (kind & SEARCHABLE) !== 0;
/** A ctid (block, offset) as one number: offsets are under 2^16, blocks under 2^32, so it is exact. */
const OFFSET_RANGE = 65_536;

/** The ctid text PostgreSQL gives, "(block,offset)", as one number. */
function packCtid(ctid: string): number {
  const comma = ctid.indexOf(',');
  return Number(ctid.slice(1, comma)) * OFFSET_RANGE + Number(ctid.slice(comma + 1, -1));
}

function ctidText(packed: number): string {
  return `(${Math.floor(packed / OFFSET_RANGE)},${packed % OFFSET_RANGE})`;
}

/** Visitor ids held once each, by number, with how many known faces (and searchable ones) name them. */
class VisitorNames {
  private readonly numbers = new Map<string, number>();
  private readonly names: string[] = [];
  private readonly faces: number[] = [];
  private readonly searchableFaces: number[] = [];
  private readonly unused: number[] = [];
  /** Visitors with at least one searchable face. */
  searchable = 0;

  add(name: string, searchable: boolean): number {
    let n = this.numbers.get(name);
    if (n === undefined) {
      n = this.unused.pop() ?? this.names.length;
      this.numbers.set(name, n);
      this.names[n] = name;
      this.faces[n] = 0;
      this.searchableFaces[n] = 0;
    }
    this.faces[n]++;
    if (searchable && this.searchableFaces[n]++ === 0) this.searchable++;
    return n;
  }

  remove(n: number, searchable: boolean): void {
    if (searchable && --this.searchableFaces[n] === 0) this.searchable--;
    if (--this.faces[n] > 0) return;
    this.numbers.delete(this.names[n]);
    this.names[n] = '';
    this.unused.push(n);
  }

  name(n: number): string {
    return this.names[n];
  }
}

export class Catalog {
  readonly index: VectorIndex;
  private featureIds = new Float64Array(FIRST_SLOTS);
  private ctids = new Float64Array(FIRST_SLOTS);
  private xmins = new Uint32Array(FIRST_SLOTS);
  private visitorOf = new Int32Array(FIRST_SLOTS);
  private kinds = new Uint8Array(FIRST_SLOTS);
  private slotsInUse = 0;
  private readonly freeSlots: number[] = [];
  /** Per table (SOURCE_TABLES' order), packed ctid to slot. */
  private readonly bySlot = SOURCE_TABLES.map(() => new Map<number, number>());
  /** Every known stored image by feature id, searchable or not, to its slot. */
  private readonly byFeature = new Map<number, number>();
  private readonly visitorNames = new VisitorNames();
  private failedCount = 0;

  constructor(index: VectorIndex) {
    this.index = index;
  }

  get faces(): number {
    return this.byFeature.size - this.failedCount;
  }

  get visitors(): number {
    return this.visitorNames.searchable;
  }

  get failed(): number {
    return this.failedCount;
  }

  /** Adds cached features, replacing any face in the same row slot and any of the same feature. */
  async add(features: CachedFeature[]): Promise<void> {
    const replaced = new Set<number>();
    const vectors: { key: number; vector: Float32Array }[] = [];
    const ctids = features.map((f) => packCtid(f.source.ctid));
    features.forEach((f, i) => {
      for (const previous of [this.tableSlots(f.source.table).get(ctids[i]), this.byFeature.get(f.id)]) {
        if (previous !== undefined) replaced.add(previous);
      }
      if (f.embedding) vectors.push({ key: f.id, vector: f.embedding });
    });
    await this.removeSlots(replaced);
    await this.index.add(vectors);
    features.forEach((f, i) => this.store(f, ctids[i]));
  }

  /** Removes these faces where they are still the ones known (the same feature from the same row version). */
  async remove(faces: Face[]): Promise<void> {
    const present = new Set<number>();
    for (const face of faces) {
      const slot = this.byFeature.get(face.featureId);
      if (slot !== undefined && this.holds(slot, face.source)) present.add(slot);
    }
    await this.removeSlots(present);
  }

  /** Compares the known stored images with the rows the visitor tables hold now. */
  diff(rows: SourceRow[]): Diff {
    const gone: Face[] = [];
    const fresh: SourceRow[] = [];
    SOURCE_TABLES.forEach((table, t) => {
      const known = this.bySlot[t];
      const current = new Map(rows.filter((r) => r.table === table).map((r) => [packCtid(r.ctid), r]));
      for (const [ctid, slot] of known) {
        if (current.get(ctid)?.xmin !== this.xmins[slot]) gone.push(this.faceAt(slot));
      }
      for (const [ctid, row] of current) {
        const slot = known.get(ctid);
        if (slot === undefined || this.xmins[slot] !== row.xmin) fresh.push(row);
      }
    });
    return { gone, fresh };
  }

  /** The known faces of these feature ids (removed from the cache by another replica, say). */
  byIds(ids: number[]): Face[] {
    return ids.flatMap((id) => {
      const slot = this.byFeature.get(id);
      return slot === undefined ? [] : [this.faceAt(slot)];
    });
  }

  /** The known faces that come from exactly these row versions (same slot, same xmin). */
  byVersions(rows: SourceRow[]): Face[] {
    return rows.flatMap((r) => {
      const slot = this.tableSlots(r.table).get(packCtid(r.ctid));
      return slot !== undefined && this.xmins[slot] === r.xmin ? [this.faceAt(slot)] : [];
    });
  }

  /**
   * The k nearest searchable faces per query that `current` still vouches for (it answers the
   * embeddings of the faces whose stored image is still there, unchanged), within `limit` when given.
   */
  async nearest(
    queries: Float32Array[],
    k: number,
    current: (faces: Face[]) => Promise<Map<Face, Float32Array>>,
    limit?: TimeLimit,
  ): Promise<{ face: Face; similarity: number }[][]> {
    const vouched = new Map<number, Face>();
    const vectorsOf = async (keys: number[]) => {
      const vectors = await current(this.byIds(keys));
      for (const face of vectors.keys()) vouched.set(face.featureId, face);
      return new Map([...vectors].map(([face, vector]) => [face.featureId, vector]));
    };
    const hits = await this.index.search(queries, k, vectorsOf, limit);
    return hits.map((list) => list.map((hit) => ({ face: vouched.get(hit.key)!, similarity: hit.similarity })));
  }

  private tableSlots(table: SourceTable): Map<number, number> {
    return this.bySlot[SOURCE_TABLES.indexOf(table)];
  }

  private faceAt(slot: number): Face {
    const visitorId = this.visitorNames.name(this.visitorOf[slot]);
    const kind = this.kinds[slot];
    return {
      featureId: this.featureIds[slot],
      visitorId,
      source: { table: SOURCE_TABLES[tableOf(kind)], ctid: ctidText(this.ctids[slot]), xmin: this.xmins[slot], visitorId },
      searchable: isSearchable(kind),
    };
  }

  private holds(slot: number, source: SourceRow): boolean {
    return (
      SOURCE_TABLES[tableOf(this.kinds[slot])] === source.table &&
      this.ctids[slot] === packCtid(source.ctid) &&
      this.xmins[slot] === source.xmin
    );
  }

  private store(f: CachedFeature, ctid: number): void {
    const slot = this.freeSlots.pop() ?? this.newSlot();
    const t = SOURCE_TABLES.indexOf(f.source.table);
    const searchable = f.embedding !== null;
    this.featureIds[slot] = f.id;
    this.ctids[slot] = ctid;
    this.xmins[slot] = f.source.xmin;
    this.visitorOf[slot] = this.visitorNames.add(f.visitorId, searchable);
    this.kinds[slot] = searchable ? t | SEARCHABLE : t;
    this.bySlot[t].set(ctid, slot);
    this.byFeature.set(f.id, slot);
    if (!searchable) this.failedCount++;
  }

  private async removeSlots(slots: Set<number>): Promise<void> {
    const searchable = [...slots].filter((slot) => isSearchable(this.kinds[slot]));
    await this.index.remove(searchable.map((slot) => this.featureIds[slot]));
    for (const slot of slots) {
      const kind = this.kinds[slot];
      const known = this.bySlot[tableOf(kind)];
      const ctid = this.ctids[slot];
      if (known.get(ctid) === slot) known.delete(ctid);
      if (this.byFeature.get(this.featureIds[slot]) === slot) this.byFeature.delete(this.featureIds[slot]);
      if (!isSearchable(kind)) this.failedCount--;
      this.visitorNames.remove(this.visitorOf[slot], isSearchable(kind));
      this.freeSlots.push(slot);
    }
  }

  /** The next slot never used, growing the columns (by doubling) when they are full. */
  private newSlot(): number {
    if (this.slotsInUse === this.kinds.length) {
      const size = this.kinds.length * 2;
      this.featureIds = grown(this.featureIds, new Float64Array(size));
      this.ctids = grown(this.ctids, new Float64Array(size));
      this.xmins = grown(this.xmins, new Uint32Array(size));
      this.visitorOf = grown(this.visitorOf, new Int32Array(size));
      this.kinds = grown(this.kinds, new Uint8Array(size));
    }
    return this.slotsInUse++;
  }
}

function grown<T extends Float64Array | Uint32Array | Int32Array | Uint8Array>(column: T, larger: T): T {
  larger.set(column);
  return larger;
}
