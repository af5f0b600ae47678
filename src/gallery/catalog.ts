// What the gallery knows in memory: every cached stored image (by row slot, to diff against the
// visitor tables), and the searchable faces among them (by feature id, the vector index's key).
import type { CachedFeature } from './feature-cache.js';
import type { SourceRow, SourceTable } from './sources.js';
import type { Hit, VectorIndex } from './vector-index.js';

export interface Face {
  featureId: number;
  visitorId: string;
  /** The row version the embedding came from; null for synthetic faces. */
  source: SourceRow | null;
  /** False for a stored image that yielded no face: known, counted, not searchable. */
  searchable: boolean;
}

export interface Diff {
  /** Known faces whose row version is gone (deleted, updated, or its table dropped). */
  gone: Face[];
  /** Rows holding an image that no known face comes from. */
  fresh: SourceRow[];
}

function slot(table: SourceTable, ctid: string): string {
  return `${table}:${ctid}`;
}

export class Catalog {
  readonly index: VectorIndex;
  private readonly bySlot = new Map<string, Face>();
  private readonly byFeature = new Map<number, Face>();
  private readonly facesPerVisitor = new Map<string, number>();
  private failedCount = 0;

  constructor(index: VectorIndex) {
    this.index = index;
  }

  get faces(): number {
    return this.byFeature.size;
  }

  get visitors(): number {
    return this.facesPerVisitor.size;
  }

  get failed(): number {
    return this.failedCount;
  }

  face(featureId: number): Face | undefined {
    return this.byFeature.get(featureId);
  }

  /** Adds cached features (replacing any face in the same row slot). */
  async add(features: CachedFeature[]): Promise<void> {
    const replaced: Face[] = [];
    const vectors: { key: number; vector: Float32Array }[] = [];
    for (const f of features) {
      if (f.source) {
        const previous = this.bySlot.get(slot(f.source.table, f.source.ctid));
        if (previous) replaced.push(previous);
      }
      if (f.embedding) vectors.push({ key: f.id, vector: f.embedding });
    }
    await this.remove(replaced);
    await this.index.add(vectors);
    for (const f of features) {
      const face: Face = { featureId: f.id, visitorId: f.visitorId, source: f.source, searchable: f.embedding !== null };
      if (f.source) this.bySlot.set(slot(f.source.table, f.source.ctid), face);
      if (face.searchable) {
        this.byFeature.set(face.featureId, face);
        this.facesPerVisitor.set(face.visitorId, (this.facesPerVisitor.get(face.visitorId) ?? 0) + 1);
      } else {
        this.failedCount++;
      }
    }
  }

  async remove(faces: Face[]): Promise<void> {
    const present = faces.filter((f) => (f.source ? this.bySlot.get(slot(f.source.table, f.source.ctid)) === f : this.byFeature.get(f.featureId) === f));
    await this.index.remove(present.filter((f) => f.searchable).map((f) => f.featureId));
    for (const face of present) {
      if (face.source) this.bySlot.delete(slot(face.source.table, face.source.ctid));
      if (!face.searchable) {
        this.failedCount--;
        continue;
      }
      this.byFeature.delete(face.featureId);
      const left = (this.facesPerVisitor.get(face.visitorId) ?? 1) - 1;
      if (left === 0) this.facesPerVisitor.delete(face.visitorId);
      else this.facesPerVisitor.set(face.visitorId, left);
    }
  }

  /** Compares the known stored images with the rows the visitor tables hold now. */
  diff(rows: SourceRow[]): Diff {
    const current = new Map(rows.map((r) => [slot(r.table, r.ctid), r]));
    const gone: Face[] = [];
    const unchanged = new Set<string>();
    for (const [key, face] of this.bySlot) {
      const row = current.get(key);
      if (row && row.xmin === face.source!.xmin) unchanged.add(key);
      else gone.push(face);
    }
    const fresh = rows.filter((r) => !unchanged.has(slot(r.table, r.ctid)));
    return { gone, fresh };
  }

  /** The k nearest searchable faces per query. */
  async nearest(queries: Float32Array[], k: number): Promise<{ face: Face; similarity: number }[][]> {
    const hits = await this.index.search(queries, k);
    return hits.map((list) => list.flatMap((h: Hit) => {
      const face = this.byFeature.get(h.key);
      return face ? [{ face, similarity: h.similarity }] : [];
    }));
  }
}
