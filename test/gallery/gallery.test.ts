// The gallery against a real PostgreSQL and the real engine: what it finds in the visitor tables,
// how it follows changes, and that it never answers with a visitor whose image is gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosineSimilarity } from '../../src/engine/embed.js';
import type { Database } from '../../src/gallery/db.js';
import type { GalleryHandle } from '../../src/gallery/index.js';
import { fixturesMissing } from '../helpers/fixtures.js';
import {
  base64Of,
  dataUrlOf,
  embeddingOf,
  engineExtractor,
  openGallery,
  sha256,
  startTestPostgres,
  waitFor,
  type CountingExtractor,
  type TestPostgres,
} from './helpers.js';

const TRUNCATED_JPEG = readTruncated('faces/tom_cruise/1.jpg');

function readTruncated(relative: string): string {
  const full = Buffer.from(base64Of(relative), 'base64');
  return full.subarray(0, Math.floor(full.length / 3)).toString('base64');
}

describe.skipIf(fixturesMissing)('gallery over the visitor tables', () => {
  let pg: TestPostgres;
  let db: Database;
  let url: string;
  let counting: CountingExtractor;
  let gallery: GalleryHandle;

  beforeAll(async () => {
    pg = await startTestPostgres();
    ({ url, db } = await pg.database('visitors_main'));
    // visitors with the quoted camel-case column, visitor_images with the unquoted one.
    await db.query(`CREATE TABLE visitors (visitor_id text PRIMARY KEY, "base64Image" text, name text)`);
    await db.query(`CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, base64image text)`);
    await db.query(`INSERT INTO visitors (visitor_id, "base64Image") VALUES
      ('obama', $1), ('biden', $2), ('kit', $3), ('broken', $4), ('no-face', $5), ('no-image', NULL)`, [
      base64Of('faces/obama/1.jpg'),
      dataUrlOf('faces/biden/1.jpg'),
      base64Of('faces/kit_harington/1.jpg'),
      TRUNCATED_JPEG,
      base64Of('noface/coffee.jpg'),
    ]);
    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('obama', $1), ('kit', $2), ('alex', $3), ('alex', $4)`, [
      dataUrlOf('faces/obama/2.jpg'),
      base64Of('faces/kit_harington/2.jpg'),
      base64Of('faces/alex_lacamoire/1.jpg'),
      dataUrlOf('faces/alex_lacamoire/2.jpg'),
    ]);
    counting = await engineExtractor();
    gallery = await openGallery(url, counting.extractor);
    await gallery.ready;
  });

  afterAll(async () => {
    await gallery?.close();
    await pg?.destroy();
  });

  it('extracts every stored image of both tables, plain base64 and data URLs alike', async () => {
    const status = gallery.status();
    expect(status).toMatchObject({ database: 'up', syncing: false, faces: 7, visitors: 4, failed: 2, model: 'mobilefacenet', error: null });
    expect(counting.calls).toHaveLength(9);
    const [obama, kit, alex, biden] = await gallery.search(
      await Promise.all(['faces/obama/3.jpg', 'faces/kit_harington/3.jpg', 'faces/alex_lacamoire/3.jpg', 'faces/biden/2.jpg'].map(embeddingOf)),
    );
    expect(obama?.visitorId).toBe('obama');
    expect(kit?.visitorId).toBe('kit');
    expect(alex?.visitorId).toBe('alex');
    expect(biden?.visitorId).toBe('biden');
  });

  it("answers with the visitor's best image", async () => {
    const query = await embeddingOf('faces/obama/4.jpg');
    const [stored1, stored2] = await Promise.all([embeddingOf('faces/obama/1.jpg'), embeddingOf('faces/obama/2.jpg')]);
    const best = Math.max(cosineSimilarity(query, stored1), cosineSimilarity(query, stored2));
    const [match] = await gallery.search([query]);
    expect(match?.visitorId).toBe('obama');
    expect(match?.similarity).toBeCloseTo(best, 4);
  });

  it('records undecodable and faceless images as failed, with the reason, and counts them', async () => {
    const rows = await db.query<{ visitor_id: string; reason: string; message: string; embedding: Buffer | null }>(
      `SELECT visitor_id, reason, message, embedding FROM face_recog.face_recog_features WHERE status = 'failed' ORDER BY visitor_id`,
    );
    expect(rows.map((r) => [r.visitor_id, r.reason])).toEqual([['broken', 'invalid_image'], ['no-face', 'no_face']]);
    expect(rows[0].message).toMatch(/could not be (read|decoded)/);
    expect(rows[1].message).toMatch(/no face/);
    expect(rows.every((r) => r.embedding === null)).toBe(true);
    expect(gallery.status().failed).toBe(2);
  });

  it('does not retry failed images on later syncs, nor after a restart', async () => {
    const before = counting.calls.length;
    // A change elsewhere makes the gallery reconcile; only the new image may be extracted.
    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('kit', $1)`, [base64Of('faces/kit_harington/3.jpg')]);
    await waitFor('the new image to be extracted', () => (gallery.status().faces === 8 ? true : undefined));
    expect(counting.calls.slice(before)).toEqual([sha256(base64Of('faces/kit_harington/3.jpg'))]);

    const reopened = await engineExtractor();
    const second = await openGallery(url, reopened.extractor);
    try {
      await second.ready;
      expect(reopened.calls).toEqual([]);
      expect(second.status()).toMatchObject({ faces: 8, failed: 2, visitors: 4 });
    } finally {
      await second.close();
    }
  });

  // How soon is a benchmark figure (bench/gallery.ts, reconcile); here: that it happens with no call.
  it('recognises a newly inserted image without any call', async () => {
    const query = await embeddingOf('faces/rose_leslie/2.jpg');
    const [before] = await gallery.search([query]);
    expect(before?.visitorId).not.toBe('rose');
    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('rose', $1)`, [base64Of('faces/rose_leslie/1.jpg')]);
    const match = await waitFor('rose to be recognised', async () => {
      const [m] = await gallery.search([query]);
      return m?.visitorId === 'rose' ? m : undefined;
    });
    expect(match.similarity).toBeGreaterThan(0.44);
  });

  it('reuses the cached embedding when a row changes but its image does not', async () => {
    const before = counting.calls.length;
    const faces = gallery.status().faces;
    await db.query(`UPDATE visitors SET name = 'Barack' WHERE visitor_id = 'obama'`);
    const row = await db.query<{ xmin: string }>(`SELECT xmin::text AS xmin FROM visitors WHERE visitor_id = 'obama'`);
    await waitFor('the cache to follow the new row version', async () => {
      const cached = await db.query(`SELECT 1 FROM face_recog.face_recog_features WHERE visitor_id = 'obama' AND source_xmin = $1`, [row[0].xmin]);
      return cached.length === 1 ? true : undefined;
    });
    expect(counting.calls.length).toBe(before);
    expect(gallery.status().faces).toBe(faces);
    const [match] = await gallery.search([await embeddingOf('faces/obama/3.jpg')]);
    expect(match?.visitorId).toBe('obama');
  });
});

describe.skipIf(fixturesMissing)('gallery: deletes and changes are never stale', () => {
  let pg: TestPostgres;
  let db: Database;
  let url: string;
  let counting: CountingExtractor;
  // Polls so rarely that nothing but the per-search confirmation can hide a change.
  let slow: GalleryHandle;

  beforeAll(async () => {
    pg = await startTestPostgres();
    ({ url, db } = await pg.database('visitors_stale'));
    await db.query(`CREATE TABLE visitors (visitor_id text PRIMARY KEY, base64image text)`);
    await db.query(`CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, base64image text)`);
    await db.query(`INSERT INTO visitors VALUES ('obama', $1), ('biden', $2), ('kit', $3)`, [
      base64Of('faces/obama/1.jpg'),
      base64Of('faces/biden/1.jpg'),
      base64Of('faces/kit_harington/1.jpg'),
    ]);
    await db.query(`INSERT INTO visitor_images (visitor_id, base64image) VALUES ('kit', $1)`, [base64Of('faces/kit_harington/2.jpg')]);
    counting = await engineExtractor();
    slow = await openGallery(url, counting.extractor, { pollMs: 600_000 });
    await slow.ready;
  });

  afterAll(async () => {
    await slow?.close();
    await pg?.destroy();
  });

  it('never returns a visitor deleted before the search started', async () => {
    const query = await embeddingOf('faces/obama/3.jpg');
    expect((await slow.search([query]))[0]?.visitorId).toBe('obama');
    await db.query(`DELETE FROM visitors WHERE visitor_id = 'obama'`);
    const facesBefore = slow.status().faces;
    const [match] = await slow.search([query]);
    expect(match?.visitorId).not.toBe('obama');
    // The index still held obama's face when the search ran: the confirmation removed it.
    expect(facesBefore).toBe(4);
  });

  it("never returns an image's old face after the image was replaced", async () => {
    const oldFace = await embeddingOf('faces/biden/2.jpg');
    expect((await slow.search([oldFace]))[0]?.visitorId).toBe('biden');
    await db.query(`UPDATE visitors SET base64image = $1 WHERE visitor_id = 'biden'`, [base64Of('faces/eileen_collins/1.jpg')]);
    const [match] = await slow.search([oldFace]);
    expect(match?.visitorId).not.toBe('biden');
  });

  it('still finds a visitor through another image when one of theirs is deleted', async () => {
    await db.query(`DELETE FROM visitors WHERE visitor_id = 'kit'`);
    const [match] = await slow.search([await embeddingOf('faces/kit_harington/3.jpg')]);
    expect(match?.visitorId).toBe('kit');
  });

  it('extracts the replaced image again and drops the deleted rows', async () => {
    // The stale candidates seen above woke the sync.
    const biden = await waitFor('the new image of biden to be searchable', async () => {
      const [m] = await slow.search([await embeddingOf('faces/eileen_collins/1.jpg')]);
      return m?.visitorId === 'biden' ? m : undefined;
    });
    expect(biden.similarity).toBeGreaterThan(0.9);
    expect(counting.calls).toContain(sha256(base64Of('faces/eileen_collins/1.jpg')));
    await waitFor('deleted rows to leave the gallery', () => (slow.status().faces === 2 ? true : undefined));
    // The index drops gone faces at once; their cache rows go once the new rows are saved.
    const cached = await waitFor('deleted rows to leave the feature cache', async () => {
      const rows = await db.query<{ visitor_id: string }>(`SELECT visitor_id FROM face_recog.face_recog_features ORDER BY visitor_id`);
      return rows.length === 2 ? rows : undefined;
    });
    expect(cached.map((r) => r.visitor_id)).toEqual(['biden', 'kit']);
  });

  it('extracts everything again for another model, and nothing when switching back', async () => {
    const other = await engineExtractor();
    const switched = await openGallery(url, other.extractor, { model: 'mobilefacenet-retrained' });
    try {
      await switched.ready;
      expect(other.calls).toHaveLength(2);
      expect(switched.status()).toMatchObject({ model: 'mobilefacenet-retrained', faces: 2 });
    } finally {
      await switched.close();
    }
    const models = await db.query<{ model: string; n: string }>(`SELECT model, count(*)::text AS n FROM face_recog.face_recog_features GROUP BY model ORDER BY model`);
    expect(models).toEqual([
      { model: 'mobilefacenet', n: '2' },
      { model: 'mobilefacenet-retrained', n: '2' },
    ]);
    const back = await engineExtractor();
    const original = await openGallery(url, back.extractor);
    try {
      await original.ready;
      expect(back.calls).toEqual([]);
      expect(original.status().faces).toBe(2);
    } finally {
      await original.close();
    }
  });
});

describe.skipIf(fixturesMissing)('gallery: either table may be absent', () => {
  let pg: TestPostgres;
  let counting: CountingExtractor;

  beforeAll(async () => {
    pg = await startTestPostgres();
    counting = await engineExtractor();
  });

  afterAll(async () => {
    await pg?.destroy();
  });

  it('reads visitor_images alone', async () => {
    const { url, db } = await pg.database('images_only');
    await db.query(`CREATE TABLE visitor_images (visitor_id varchar(64), "base64Image" text)`);
    await db.query(`INSERT INTO visitor_images VALUES ('tom', $1)`, [base64Of('faces/tom_cruise/1.jpg')]);
    const gallery = await openGallery(url, counting.extractor);
    try {
      await gallery.ready;
      expect(gallery.status()).toMatchObject({ database: 'up', faces: 1, visitors: 1 });
      const [match] = await gallery.search([await embeddingOf('faces/tom_cruise/1.jpg')]);
      expect(match).toMatchObject({ visitorId: 'tom' });
      expect(match!.similarity).toBeGreaterThan(0.99);
    } finally {
      await gallery.close();
    }
  });

  it('starts with no visitor table at all and picks one up when it is created', async () => {
    const { url, db } = await pg.database('no_tables');
    const gallery = await openGallery(url, counting.extractor);
    try {
      await gallery.ready;
      expect(gallery.status()).toMatchObject({ database: 'up', syncing: false, faces: 0, error: null });
      const query = await embeddingOf('faces/obama/2.jpg');
      expect(await gallery.search([query])).toEqual([null]);
      await db.query(`CREATE TABLE visitors (visitor_id text, base64image text)`);
      await db.query(`INSERT INTO visitors VALUES ('obama', $1)`, [base64Of('faces/obama/1.jpg')]);
      const match = await waitFor('the new table to be read', async () => (await gallery.search([query]))[0] ?? undefined);
      expect(match.visitorId).toBe('obama');
    } finally {
      await gallery.close();
    }
  });
});
