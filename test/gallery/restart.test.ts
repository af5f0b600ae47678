// A database outage: the gallery reports it, recognition answers 503, and everything comes back
// by itself when the database does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/gallery/db.js';
import type { GalleryHandle } from '../../src/gallery/index.js';
import { FaceRecogError } from '../../src/errors.js';
import { fixturesMissing } from '../helpers/fixtures.js';
import { base64Of, embeddingOf, engineExtractor, openGallery, startTestPostgres, waitFor, type TestPostgres } from './helpers.js';

describe.skipIf(fixturesMissing)('gallery across a database restart', () => {
  let pg: TestPostgres;
  let db: Database;
  let url: string;
  let gallery: GalleryHandle;

  beforeAll(async () => {
    pg = await startTestPostgres();
    ({ url, db } = await pg.database('restart'));
    await db.query(`CREATE TABLE visitors (visitor_id text PRIMARY KEY, base64image text)`);
    await db.query(`INSERT INTO visitors VALUES ('obama', $1)`, [base64Of('faces/obama/1.jpg')]);
    gallery = await openGallery(url, (await engineExtractor()).extractor);
    await gallery.ready;
  });

  afterAll(async () => {
    await gallery?.close();
    await pg?.destroy();
  });

  it('goes down with the database, answers 503, and recovers when it returns', async () => {
    const obama = await embeddingOf('faces/obama/2.jpg');
    expect((await gallery.search([obama]))[0]?.visitorId).toBe('obama');

    await pg.stop();
    const error = await gallery.search([obama]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FaceRecogError);
    expect(error).toMatchObject({ code: 'gallery_unavailable', status: 503 });
    expect((error as FaceRecogError).retryAfterS).toBeGreaterThan(0);
    await waitFor('the gallery to report the database down', () => (gallery.status().database === 'down' ? true : undefined));
    expect(gallery.status().error).toMatch(/unavailable|ECONNREFUSED|terminat/i);
    // Faces stay in memory; they are not returned while they cannot be confirmed.
    expect(gallery.status().faces).toBe(1);
    await expect(gallery.search([obama])).rejects.toMatchObject({ code: 'gallery_unavailable' });

    await pg.start();
    await waitFor('the gallery to report the database up', () => (gallery.status().database === 'up' ? true : undefined), 15_000);
    expect(gallery.status().error).toBeNull();
    expect((await gallery.search([obama]))[0]?.visitorId).toBe('obama');
  });

  it('follows changes made after the restart', async () => {
    await db.query(`INSERT INTO visitors VALUES ('kit', $1)`, [base64Of('faces/kit_harington/1.jpg')]);
    const kit = await embeddingOf('faces/kit_harington/2.jpg');
    const match = await waitFor('kit to be recognised', async () => {
      const [m] = await gallery.search([kit]);
      return m?.visitorId === 'kit' ? m : undefined;
    });
    expect(match.similarity).toBeGreaterThan(0.44);
  });

  it('starts while the database is down and connects when it comes up', async () => {
    await pg.stop();
    const counting = await engineExtractor();
    const late = await openGallery(url, counting.extractor);
    try {
      let ready = false;
      void late.ready.then(() => (ready = true));
      expect(late.status()).toMatchObject({ database: 'down', faces: 0 });
      await expect(late.search([await embeddingOf('faces/obama/2.jpg')])).rejects.toMatchObject({ code: 'gallery_unavailable' });
      await waitFor('a failed connection attempt', () => (/unavailable/.test(late.status().error ?? '') ? true : undefined));
      expect(ready).toBe(false);

      await pg.start();
      await late.ready;
      expect(late.status()).toMatchObject({ database: 'up', syncing: false, faces: 2, error: null });
      expect(counting.calls).toEqual([]);
    } finally {
      await late.close();
    }
  });
});
