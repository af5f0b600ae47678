// What the gallery knows in memory: every cached stored image (by row slot, to diff against the
// visitor tables), and the searchable faces among them (by feature id, the vector index's key).
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

export class Catalog {
  readonly index: VectorIndex;
  /** Per table, by ctid (the row's slot): keys are the ctid strings the faces hold anyway. */
  private readonly bySlot = new Map<SourceTable, Map<string, Face>>(SOURCE_TABLES.map((t) => [t, new Map()]));
  /** Every known stored image by feature id, searchable or not. */
  private readonly byFeature = new Map<number, Face>();
  private readonly facesPerVisitor = new Map<string, number>();
  private failedCount = 0;

  constructor(index: VectorIndex) {
    this.index = index;
  }

  get faces(): number {
    return this.byFeature.size - this.failedCount;
  }

  get visitors(): number {
    return this.facesPerVisitor.size;
  }

  get failed(): number {
    return this.failedCount;
  }

  /** Adds cached features (replacing any face in the same row slot). */
  async add(features: CachedFeature[]): Promise<void> {
    const replaced: Face[] = [];
    const vectors: { key: number; vector: Float32Array }[] = [];
    for (const f of features) {
      const previous = this.slots(f.source.table).get(f.source.ctid) ?? this.byFeature.get(f.id);
      if (previous) replaced.push(previous);
      if (f.embedding) vectors.push({ key: f.id, vector: f.embedding });
    }
    await this.remove(replaced);
    await this.index.add(vectors);
    for (const f of features) {
      const face: Face = { featureId: f.id, visitorId: f.visitorId, source: f.source, searchable: f.embedding !== null };
      this.slots(f.source.table).set(f.source.ctid, face);
      this.byFeature.set(face.featureId, face);
      if (face.searchable) this.facesPerVisitor.set(face.visitorId, (this.facesPerVisitor.get(face.visitorId) ?? 0) + 1);
      else this.failedCount++;
    }
  }

  async remove(faces: Face[]): Promise<void> {
    const present = [...new Set(faces)].filter((f) => this.byFeature.get(f.featureId) === f);
    await this.index.remove(present.filter((f) => f.searchable).map((f) => f.featureId));
    for (const face of present) {
      if (this.slots(face.source.table).get(face.source.ctid) === face) this.slots(face.source.table).delete(face.source.ctid);
      this.byFeature.delete(face.featureId);
      if (!face.searchable) {
        this.failedCount--;
        continue;
      }
      const left = (this.facesPerVisitor.get(face.visitorId) ?? 1) - 1;
      if (left === 0) this.facesPerVisitor.delete(face.visitorId);
      else this.facesPerVisitor.set(face.visitorId, left);
    }
  }

  /** Compares the known stored images with the rows the visitor tables hold now. */
  diff(rows: SourceRow[]): Diff {
    const gone: Face[] = [];
    const fresh: SourceRow[] = [];
    for (const table of SOURCE_TABLES) {
      const known = this.slots(table);
      const current = new Map(rows.filter((r) => r.table === table).map((r) => [r.ctid, r]));
      for (const [ctid, face] of known) {
        if (current.get(ctid)?.xmin !== face.source.xmin) gone.push(face);
      }
      for (const [ctid, row] of current) {
        if (known.get(ctid)?.source.xmin !== row.xmin) fresh.push(row);
      }
    }
    return { gone, fresh };
  }

  /** The known faces of these feature ids (removed from the cache by another replica, say). */
  byIds(ids: number[]): Face[] {
    return ids.flatMap((id) => this.byFeature.get(id) ?? []);
  }

  /** The known faces that come from exactly these row versions (same slot, same xmin). */
  byVersions(rows: SourceRow[]): Face[] {
    return rows.flatMap((r) => {
      const face = this.slots(r.table).get(r.ctid);
      return face && face.source.xmin === r.xmin ? [face] : [];
    });
  }

  private slots(table: SourceTable): Map<string, Face> {
    return this.bySlot.get(table)!;
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
      const vectors = await current(keys.flatMap((key) => this.byFeature.get(key) ?? []));
      for (const face of vectors.keys()) vouched.set(face.featureId, face);
      return new Map([...vectors].map(([face, vector]) => [face.featureId, vector]));
    };
    const hits = await this.index.search(queries, k, vectorsOf, limit);
    return hits.map((list) => list.map((hit) => ({ face: vouched.get(hit.key)!, similarity: hit.similarity })));
  }
}
