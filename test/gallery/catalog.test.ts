// The catalog's columns against a plain model of what it means: a map of face objects by row slot
// and by feature id. Random runs of additions (replacing faces in the same slot or of the same
// feature), removals (some of faces replaced since), diffs against the tables and lookups must
// give the same faces, counts and nearest visitor, including ctids past 2^31 and at the ends of
// their ranges, which the columns pack into one number.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog, type Face } from '../../src/gallery/catalog.js';
import type { CachedFeature } from '../../src/gallery/feature-cache.js';
import { SOURCE_TABLES, type SourceRow } from '../../src/gallery/sources.js';
import { VectorIndex } from '../../src/gallery/vector-index.js';

const DIM = 16;

/** What the catalog must behave as: every known face as an object, by slot and by feature id. */
class ModelCatalog {
  readonly bySlot = new Map<string, Face>();
  readonly byFeature = new Map<number, Face>();

  add(features: CachedFeature[]): void {
    const replaced = features.flatMap((f) => [this.bySlot.get(slotOf(f.source)), this.byFeature.get(f.id)].filter((face) => face !== undefined));
    this.remove(replaced);
    for (const f of features) {
      const face: Face = { featureId: f.id, visitorId: f.visitorId, source: f.source, searchable: f.embedding !== null };
      this.bySlot.set(slotOf(f.source), face);
      this.byFeature.set(f.id, face);
    }
  }

  remove(faces: Face[]): void {
    for (const face of faces) {
      const known = this.byFeature.get(face.featureId);
      if (!known || versionOf(known.source) !== versionOf(face.source)) continue;
      if (this.bySlot.get(slotOf(known.source)) === known) this.bySlot.delete(slotOf(known.source));
      this.byFeature.delete(face.featureId);
    }
  }

  diff(rows: SourceRow[]): { gone: Face[]; fresh: SourceRow[] } {
    const current = new Map(rows.map((r) => [slotOf(r), r]));
    return {
      gone: [...this.bySlot].filter(([slot, face]) => current.get(slot)?.xmin !== face.source.xmin).map(([, face]) => face),
      fresh: [...current].filter(([slot, row]) => this.bySlot.get(slot)?.source.xmin !== row.xmin).map(([, row]) => row),
    };
  }

  counts(): { faces: number; failed: number; visitors: number } {
    const faces = [...this.byFeature.values()];
    const searchable = faces.filter((f) => f.searchable);
    return { faces: searchable.length, failed: faces.length - searchable.length, visitors: new Set(searchable.map((f) => f.visitorId)).size };
  }
}

const slotOf = (r: SourceRow) => `${r.table} ${r.ctid}`;
const versionOf = (r: SourceRow) => `${slotOf(r)} ${r.xmin}`;
/** A face as a comparable value (the catalog hands out copies). */
const valueOf = (f: Face) => `${f.featureId} ${f.visitorId} ${versionOf(f.source)} ${f.source.visitorId} ${f.searchable}`;
const values = (faces: Face[]) => faces.map(valueOf).sort();
const rowValues = (rows: SourceRow[]) => rows.map((r) => `${versionOf(r)} ${r.visitorId}`).sort();

const block = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1));
const offset = fc.oneof(fc.integer({ min: 1, max: 3 }), fc.constant(65_535));
const row: fc.Arbitrary<SourceRow> = fc.record({
  table: fc.constantFrom(...SOURCE_TABLES),
  ctid: fc.tuple(block, offset).map(([b, o]) => `(${b},${o})`),
  // Few versions, so that rows come back unchanged as well as rewritten.
  xmin: fc.constantFrom(100, 101, 2 ** 32 - 1),
  visitorId: fc.constantFrom('ana', 'bo', 'émile-ü', ''),
});

function unitVector(seed: number): Float32Array {
  const v = Float32Array.from({ length: DIM }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) + (i === seed % DIM ? 2 : 0));
  const norm = Math.hypot(...v);
  return v.map((x) => x / norm);
}

const feature: fc.Arbitrary<CachedFeature> = fc
  .record({ id: fc.integer({ min: 1, max: 12 }), source: row, faceSeed: fc.option(fc.integer({ min: 0, max: 1_000 }), { nil: null }) })
  .map(({ id, source, faceSeed }) => ({ id, source, visitorId: source.visitorId, embedding: faceSeed === null ? null : unitVector(faceSeed) }));

type Step =
  | { kind: 'add'; features: CachedFeature[] }
  | { kind: 'removeKnown'; picks: number[]; stale: boolean }
  | { kind: 'diff'; rows: SourceRow[] }
  | { kind: 'versions'; rows: SourceRow[] }
  | { kind: 'ids'; ids: number[] };

const step: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('add' as const), features: fc.array(feature, { maxLength: 6 }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant('removeKnown' as const), picks: fc.array(fc.nat(), { maxLength: 4 }), stale: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('diff' as const), rows: fc.uniqueArray(row, { selector: slotOf, maxLength: 8 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('versions' as const), rows: fc.array(row, { maxLength: 6 }) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('ids' as const), ids: fc.array(fc.integer({ min: 0, max: 13 }), { maxLength: 6 }) }), weight: 1 },
);

describe('Catalog', () => {
  let index: VectorIndex;
  beforeAll(async () => {
    index = await VectorIndex.create(DIM);
  });
  afterAll(() => index.close());

  it('behaves as a map of face objects through random additions, removals, diffs and lookups', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), async (steps) => {
        // One index, emptied between runs through the catalog itself.
        const catalog = new Catalog(index);
        const model = new ModelCatalog();
        const vectors = new Map<number, Float32Array>();
        try {
          for (const s of steps) {
            if (s.kind === 'add') {
              // Feature ids are unique within one load page.
              const features = [...new Map(s.features.map((f) => [f.id, f])).values()];
              for (const f of features) if (f.embedding) vectors.set(f.id, f.embedding);
              model.add(features);
              await catalog.add(features);
            } else if (s.kind === 'removeKnown') {
              const known = [...model.byFeature.values()];
              const faces = s.picks.flatMap((p) => (known.length ? [known[p % known.length]] : []));
              // A stale face: same feature, another row version (replaced since): left alone.
              const given = s.stale ? faces.map((f) => ({ ...f, source: { ...f.source, xmin: f.source.xmin + 1 } })) : faces;
              model.remove(given);
              await catalog.remove(given);
            } else if (s.kind === 'diff') {
              const expected = model.diff(s.rows);
              const actual = catalog.diff(s.rows);
              expect(values(actual.gone)).toEqual(values(expected.gone));
              expect(rowValues(actual.fresh)).toEqual(rowValues(expected.fresh));
            } else if (s.kind === 'versions') {
              const expected = s.rows.flatMap((r) => {
                const face = model.bySlot.get(slotOf(r));
                return face && face.source.xmin === r.xmin ? [face] : [];
              });
              expect(values(catalog.byVersions(s.rows))).toEqual(values(expected));
            } else {
              expect(values(catalog.byIds(s.ids))).toEqual(values(s.ids.flatMap((id) => model.byFeature.get(id) ?? [])));
            }
            expect({ faces: catalog.faces, failed: catalog.failed, visitors: catalog.visitors }).toEqual(model.counts());
          }
          // The nearest face to a known one's vector is that face (each vector unique by seed).
          const searchable = [...model.byFeature.values()].filter((f) => f.searchable);
          if (searchable.length > 0) {
            const target = searchable[0];
            const [[hit]] = await catalog.nearest([vectors.get(target.featureId)!], 1, async (faces) => new Map(faces.map((f) => [f, vectors.get(f.featureId)!])));
            expect(hit.similarity).toBeCloseTo(1, 5);
            expect(values(searchable)).toContain(valueOf(hit.face));
            expect(vectorsEqual(vectors.get(hit.face.featureId)!, vectors.get(target.featureId)!)).toBe(true);
          }
        } finally {
          await catalog.remove([...model.byFeature.values()]);
        }
        expect(index.size).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});

function vectorsEqual(a: Float32Array, b: Float32Array): boolean {
  return a.every((x, i) => x === b[i]);
}
