// The gallery's commands, run as a user would, against the embedded PostgreSQL (DATABASE_URL
// unset): import photos, status, and the notify triggers with a running gallery (beside a gallery
// too large for one page of the cache's load).
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/gallery/db.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/gallery/embedded.js';
import { decodeEmbedding } from '../../src/gallery/feature-cache.js';
import type { GalleryHandle } from '../../src/gallery/index.js';
import { migrate } from '../../src/gallery/migrations.js';
import { STORED_FACE_PREFIX, storeFaces } from '../../bench/stored-faces.js';
import { fixturesMissing, REPO_ROOT, readTestdata, testdataPath } from '../helpers/fixtures.js';
import { cli, embeddingOf, engineExtractor, logger, openGallery, waitFor } from './helpers.js';

describe.skipIf(fixturesMissing)('face-recog visitors / gallery / db commands', () => {
  let dataDir: string;
  let photos: string;
  let db: Database;
  let server: EmbeddedDatabase | undefined;
  const env = { DATA_DIR: process.env.DATA_DIR, DATABASE_URL: process.env.DATABASE_URL };

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'face-recog-cli-'));
    process.env.DATA_DIR = dataDir;
    delete process.env.DATABASE_URL;
    // A folder per visitor, and files named <visitor_id>.<ext> / <visitor_id>_<n>.<ext>.
    photos = join(dataDir, 'photos');
    await mkdir(join(photos, 'obama'), { recursive: true });
    await copyFile(testdataPath('faces/obama/1.jpg'), join(photos, 'obama', '1.jpg'));
    await copyFile(testdataPath('faces/obama/2.jpg'), join(photos, 'obama', '2.jpg'));
    await copyFile(testdataPath('faces/biden/1.jpg'), join(photos, 'biden.jpg'));
    await copyFile(testdataPath('faces/kit_harington/1.jpg'), join(photos, 'kit_1.jpg'));
    await copyFile(testdataPath('faces/kit_harington/2.jpg'), join(photos, 'kit_2.jpg'));
    await writeFile(join(photos, 'notes.txt'), 'not a photo');
    await writeFile(join(photos, 'fake.png'), 'not a png either');
  });

  afterAll(async () => {
    await db?.close();
    await server?.stop();
    process.env.DATA_DIR = env.DATA_DIR;
    if (env.DATABASE_URL !== undefined) process.env.DATABASE_URL = env.DATABASE_URL;
    await rm(dataDir, { recursive: true, force: true });
  });

  it('imports a folder of photos as the visitor backend would store them', async () => {
    const out = await cli('visitors', 'import', photos);
    expect(out).toContain('obama: stored 1 in visitors, 1 in visitor_images');
    expect(out).toContain('kit: stored 1 in visitors, 1 in visitor_images');
    expect(out).toContain('biden: stored 1 in visitors, 0 in visitor_images');
    expect(out.join('\n')).toMatch(/fake: stored 0 in visitors, 0 in visitor_images\n {2}skipped .*fake\.png: not a JPEG, PNG or WebP image/);
    expect(out.join('\n')).toMatch(/ignored .*notes\.txt/);
    expect(out[out.length - 1]).toMatch(/^stored 5 images of 3 visitors as base64 in postgres:\/\/postgres:\[redacted\]@127\.0\.0\.1:\d+\/postgres$/);

    // Read the tables back through a connection of our own. The command stopped the server it
    // started, so this starts it again; the commands and the gallery below join it.
    server = await startEmbeddedPostgres({ dataDir, logger });
    expect(server.owner).toBe(true);
    db = new Database(server.url, logger);
    const main = await db.query<{ visitor_id: string; base64image: string }>(`SELECT visitor_id, base64image FROM visitors ORDER BY visitor_id`);
    expect(main.map((r) => r.visitor_id)).toEqual(['biden', 'kit', 'obama']);
    expect(Buffer.from(main[2].base64image, 'base64').equals(readTestdata('faces/obama/1.jpg'))).toBe(true);
    const extra = await db.query<{ visitor_id: string; base64image: string }>(`SELECT visitor_id, base64image FROM visitor_images ORDER BY visitor_id`);
    expect(extra.map((r) => r.visitor_id)).toEqual(['kit', 'obama']);
    expect(Buffer.from(extra[1].base64image, 'base64').equals(readTestdata('faces/obama/2.jpg'))).toBe(true);
  });

  it('skips images already stored, and stores data URLs on request', async () => {
    const again = await cli('visitors', 'import', photos);
    expect(again.filter((l) => l.includes('already stored for this visitor'))).toHaveLength(5);
    const more = join(dataDir, 'more');
    await mkdir(more);
    await copyFile(testdataPath('faces/obama/3.jpg'), join(more, 'obama_3.jpg'));
    expect(await cli('visitors', 'import', '--data-url', more)).toContain('obama: stored 0 in visitors, 1 in visitor_images');
    const [row] = await db.query<{ base64image: string }>(`SELECT base64image FROM visitor_images ORDER BY id DESC LIMIT 1`);
    expect(row.base64image.startsWith('data:image/jpeg;base64,')).toBe(true);
  });

  it('holds more stored faces than one page of the cache load', async () => {
    // More than one page of the cache load (20,000 rows), ids past 9999 and 10000 alike.
    await migrate(db);
    await storeFaces(db, { model: 'mobilefacenet', dimension: 128, count: 25_000, first: 0 });
    const rows = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM visitor_images WHERE visitor_id LIKE '${STORED_FACE_PREFIX}%'`);
    expect(rows).toEqual([{ n: '25000' }]);
  });

  describe('with a gallery running', () => {
    let gallery: GalleryHandle;
    let storedFace: Float32Array;

    beforeAll(async () => {
      // Polls so rarely that only a notification can make it see a change quickly.
      gallery = await openGallery(null, (await engineExtractor()).extractor, { dataDir, pollMs: 600_000 });
      await gallery.ready;
    });

    afterAll(async () => {
      await gallery?.close();
    });

    it('loads the stored faces without extracting them, and searches them with the imported ones', async () => {
      expect(gallery.status()).toMatchObject({ database: 'up', faces: 25006, failed: 0, extractions: 6 });
      const [row] = await db.query<{ embedding: Buffer }>(
        `SELECT embedding FROM face_recog.face_recog_features WHERE visitor_id = '${STORED_FACE_PREFIX}12345'`,
      );
      storedFace = decodeEmbedding(row.embedding);
      const [stored, obama] = await gallery.search([storedFace, await embeddingOf('faces/obama/4.jpg')]);
      expect(stored).toMatchObject({ visitorId: `${STORED_FACE_PREFIX}12345` });
      expect(stored!.similarity).toBeCloseTo(1, 5);
      expect(obama?.visitorId).toBe('obama');
    });

    it('installs notify triggers, after which a new image is recognised at once', async () => {
      expect(await cli('db', 'install-triggers')).toEqual([
        'notify triggers installed on public.visitors, public.visitor_images (function face_recog.face_recog_notify())',
      ]);
      const functions = await db.query<{ schema: string }>(`SELECT pronamespace::regnamespace::text AS schema FROM pg_proc WHERE proname = 'face_recog_notify'`);
      expect(functions).toEqual([{ schema: 'face_recog' }]);
      const status = await cli('gallery', 'status');
      expect(status).toContain('visitors: 3 rows with an image (column base64image), notify trigger installed');
      expect(status).toContain('visitor_images: 25003 rows with an image (column base64image), notify trigger installed');
      expect(status).toContain('feature cache, mobilefacenet: 25006 faces, 0 failed images');

      const rose = join(dataDir, 'rose');
      await mkdir(rose);
      await copyFile(testdataPath('faces/rose_leslie/1.jpg'), join(rose, 'rose.jpg'));
      await cli('visitors', 'import', rose);
      const query = await embeddingOf('faces/rose_leslie/2.jpg');
      const match = await waitFor('rose to be recognised', async () => {
        const [m] = await gallery.search([query]);
        return m?.visitorId === 'rose' ? m : undefined;
      });
      expect(match.similarity).toBeGreaterThan(0.44);
    });

    it('removes the triggers; deleted stored faces are never returned and leave the gallery', async () => {
      expect(await cli('db', 'uninstall-triggers')).toEqual(['notify triggers removed from public.visitor_images, public.visitors']);
      const triggers = await db.query(`SELECT 1 FROM pg_trigger WHERE tgname = 'face_recog_notify' UNION ALL SELECT 1 FROM pg_proc WHERE proname = 'face_recog_notify'`);
      expect(triggers).toEqual([]);
      await db.query(`DELETE FROM visitor_images WHERE visitor_id LIKE '${STORED_FACE_PREFIX}%'`);
      const [match] = await gallery.search([storedFace]);
      expect(match?.visitorId ?? '').not.toMatch(new RegExp(`^${STORED_FACE_PREFIX}`));
      // The stale candidates woke the sync, which reconciles.
      await waitFor('the deleted faces to leave the gallery', () => (gallery.status().faces === 7 ? true : undefined));
    });
  });

  it("prints the embedded database's URL, which connects", async () => {
    const [url] = await cli('db', 'url');
    expect(url).toMatch(/^postgres:\/\/postgres:[^*@]+@127\.0\.0\.1:\d+\/postgres$/);
    const direct = new Database(url, logger);
    try {
      const columns = await direct.query<{ column_name: string }>(
        `SELECT column_name FROM information_schema.columns WHERE table_name = 'visitors' ORDER BY ordinal_position`,
      );
      // Unquoted, as the README says.
      expect(columns.map((c) => c.column_name)).toEqual(['visitor_id', 'base64image']);
    } finally {
      await direct.close();
    }
    process.env.DATABASE_URL = 'postgres://someone:secret@db.example:5432/backend';
    try {
      expect(await cli('db', 'url')).toEqual(['postgres://someone:secret@db.example:5432/backend']);
    } finally {
      delete process.env.DATABASE_URL;
    }
  });

  it('runs as the face-recog executable', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'gallery', 'status', '--json'], {
      env: { ...process.env, DATA_DIR: dataDir },
      cwd: REPO_ROOT,
    });
    const status = JSON.parse(stdout);
    expect(status.tables.map((t: { table: string; images: number }) => [t.table, t.images])).toEqual([
      ['visitors', 4],
      ['visitor_images', 3],
    ]);
  });
});
