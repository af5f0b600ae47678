// REQUEST_TIMEOUT_MS bounds the whole of a recognition, the gallery's confirmation against the
// visitor tables included. Here the visitor table is locked by another session (as a backend's
// migration would lock it): the confirmation query waits on the lock, and the service answers
// 503 timeout while the lock is still held, over HTTP and the WebSocket, then recognises again
// once it is released, without having marked the gallery down. A real embedded PostgreSQL.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/gallery/embedded.js';
import { createService, type Service } from '../../src/server/service.js';
import { MODELS_DIR, fixturesMissing, readTestdata, testEngine } from '../helpers/fixtures.js';
import { RealtimeClient } from '../helpers/realtime-client.js';
import { base64Of } from './helpers/server.js';

// Long enough for the inference of a small photo on a loaded machine, so that the time runs out
// in the database, where the lock is.
const TIMEOUT_MS = 4_000;
const QUERY = 'hard/obama_240p.jpg';
const quiet = pino({ level: 'silent' });

describe.skipIf(fixturesMissing)('the request deadline covers the gallery search and its database confirmation', () => {
  let dataDir: string;
  let database: EmbeddedDatabase;
  let service: Service;
  let url: string;

  const recognize = async () => {
    const response = await fetch(`${url}/api/v1/recognize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: base64Of(QUERY) }),
    });
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as any };
  };

  /** Runs `work` while another session holds an ACCESS EXCLUSIVE lock on the visitor table. */
  async function whileVisitorsLocked<T>(work: () => Promise<T>): Promise<T> {
    const locker = new pg.Client({ connectionString: database.url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE visitors IN ACCESS EXCLUSIVE MODE');
      return await work();
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'face-recog-deadline-'));
    database = await startEmbeddedPostgres({ dataDir, logger: quiet });
    // Stored smaller and recompressed: not the bytes of any file the query uses.
    const stored = await sharp(readTestdata('faces/obama/2.jpg')).resize({ width: 360 }).jpeg({ quality: 80 }).toBuffer();
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    await admin.query('INSERT INTO visitors (visitor_id, base64image) VALUES ($1, $2)', ['obama', stored.toString('base64')]);
    await admin.end();

    const config = loadConfig({
      RECOGNIZER: 'mobilefacenet',
      MODELS_DIR,
      MODELS_OFFLINE: '1',
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: '0',
      REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
      GALLERY_POLL_MS: '100',
    });
    service = await createService(config, { logger: quiet, loadEngine: testEngine });
    url = await service.listen();
    await service.start();
    await vi.waitFor(() => expect(service.gallery?.status().faces).toBe(1), { timeout: 60_000, interval: 50 });
  });

  afterAll(async () => {
    await service?.close();
    await database?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('answers a recognize whose confirmation waits on a lock with 503 timeout while the lock is held, and recognises once it is released', async () => {
    const before = await recognize();
    expect(before.body).toMatchObject({ visitor_id: 'obama', matched: true });

    const locked = await whileVisitorsLocked(recognize);
    expect(locked.status).toBe(503);
    expect(locked.body.error.code).toBe('timeout');
    // The time ran out waiting for the database, not in the inference queue.
    expect(locked.body.error.message).toContain('visitor database');
    expect(Number(locked.retryAfter)).toBeGreaterThanOrEqual(1);

    const after = await recognize();
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ visitor_id: 'obama', matched: true });
    const health = await (await fetch(`${url}/health`)).json();
    expect(health).toMatchObject({ status: 'ok', gallery: { database: 'up' } });
  });

  it('answers a WebSocket frame whose confirmation waits on a lock with a timeout error, and keeps the connection', async () => {
    const camera = await RealtimeClient.connect(`${url.replace('http', 'ws')}/ws/realtime`);
    try {
      const locked = await whileVisitorsLocked(() => camera.ask({ type: 'frame', image: base64Of(QUERY), id: 'locked' }));
      expect(locked).toMatchObject({ type: 'error', code: 'timeout', id: 'locked', faces: [], count: 0 });
      expect(locked.message).toContain('visitor database');
      expect(camera.open).toBe(true);

      // The frame that failed is no evidence for the face's track: it is named by the three that follow.
      const after = [];
      for (let i = 0; i < 3; i++) after.push(await camera.ask({ type: 'frame', image: base64Of(QUERY), id: 'released' }));
      expect(after.map((a) => a.faces[0].matched)).toEqual([false, false, true]);
      expect(after[2]).toMatchObject({ type: 'results', id: 'released', count: 1, faces: [{ visitor_id: 'obama', matched: true }] });
    } finally {
      camera.socket.close();
      await camera.closed;
    }
  });
});
