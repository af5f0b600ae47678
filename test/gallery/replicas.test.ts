// Three replicas, each its own process as `npm start` runs it, on one PostgreSQL (Debian's server,
// as the README's read-only role): one extracts, the others follow its feature cache. Every stored
// image is extracted once in all (the replicas' counters summed), every replica recognises each
// new image within the contract's 2 seconds, and when the extractor is killed another takes over
// within its 10 seconds, losing nothing and extracting nothing again.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { median } from '../../bench/common.js';
import { freePort } from '../../src/gallery/embedded.js';
import { fixturesMissing, readTestdata } from '../helpers/fixtures.js';
import { postgresMissing, startPostgresServer, type PostgresServer } from '../helpers/postgres-server.js';
import { launchService, type ServiceProcess } from '../helpers/service-process.js';

const REPLICAS = 3;
const FIRST_IMAGES = 25;
const IMAGES_AFTER_KILL = 5;
/** The contract's promises. */
const RECOGNISED_WITHIN_MS = 2_000;
const TAKEOVER_WITHIN_MS = 10_000;
/** Generous waits: the assertions above are what must hold; these only keep a broken build from hanging. */
const START_TIMEOUT_MS = 120_000;
const WAIT_MS = 60_000;
const POLL_MS = 50;

interface Replica {
  url: string;
  service: ServiceProcess;
}

interface Health {
  gallery: { role: 'extractor' | 'follower' | null; faces: number; failed: number } | null;
}

async function health(replica: Replica): Promise<Health> {
  return (await (await fetch(`${replica.url}/health`)).json()) as Health;
}

async function extractions(replica: Replica): Promise<number> {
  const text = await (await fetch(`${replica.url}/metrics`)).text();
  const match = /^face_recog_gallery_extractions_total (\d+)$/m.exec(text);
  if (!match) throw new Error('no face_recog_gallery_extractions_total in /metrics');
  return Number(match[1]);
}

async function recognises(replica: Replica, image: string, visitorId: string): Promise<boolean> {
  const response = await fetch(`${replica.url}/api/v1/recognize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image }),
  });
  const body = (await response.json()) as { visitor_id: string | null };
  return body.visitor_id === visitorId;
}

async function launch(databaseUrl: string): Promise<Replica> {
  const service = launchService({ env: { PORT: String(await freePort()), DATABASE_URL: databaseUrl, LOG_LEVEL: process.env.REPLICAS_LOG ?? 'warn' } });
  return { url: await service.url(), service };
}

/** Distinct photos (one per file, several people), re-encoded smaller: each its own stored image and its own query. */
async function storedImages(count: number): Promise<string[]> {
  const [, ...rows] = readTestdata('labels.csv').toString('utf8').trim().split('\n');
  const byIdentity = new Map<string, string[]>();
  for (const [path, identity] of rows.map((r) => r.split(','))) {
    if (path.startsWith('faces/')) byIdentity.set(identity, [...(byIdentity.get(identity) ?? []), path]);
  }
  // Round-robin over the people, so that look-alike photos of one person are few.
  const paths: string[] = [];
  for (let round = 0; paths.length < count; round++) {
    for (const list of byIdentity.values()) if (list[round] && paths.length < count) paths.push(list[round]);
  }
  return Promise.all(
    paths.map(async (path, i) => (await sharp(readTestdata(path)).rotate().resize(480, 480, { fit: 'inside' }).jpeg({ quality: 80 + (i % 15) }).toBuffer()).toString('base64')),
  );
}

describe.skipIf(fixturesMissing || postgresMissing)('replicas on one PostgreSQL', () => {
  let server: PostgresServer;
  let serviceUrl: string;
  const replicas: Replica[] = [];
  let images: string[];
  const recognitionMs: number[] = [];

  const insert = (ids: string[], batch: string[]) =>
    server.sql(`INSERT INTO visitor_images (visitor_id, "base64Image") SELECT * FROM unnest($1::text[], $2::text[])`, [ids, batch], 'backend');
  const alive = () => replicas.filter((r) => r.service.child.exitCode === null && r.service.child.signalCode === null);
  const roles = async () => Promise.all(alive().map(async (r) => (await health(r)).gallery?.role ?? null));
  const extractor = async (): Promise<Replica> =>
    vi.waitFor(
      async () => {
        const found = (await Promise.all(alive().map(async (r) => ((await health(r)).gallery?.role === 'extractor' ? r : null)))).filter(Boolean);
        if (found.length !== 1) throw new Error(`${found.length} extractors`);
        return found[0]!;
      },
      { timeout: WAIT_MS, interval: POLL_MS },
    );

  /**
   * Waits until every live replica holds `faces` faces (read from /health, which costs no
   * inference: recognize requests polled in a loop would take the models from the extractor,
   * whose work runs behind requests), then checks that each recognises every one of `batch`.
   * Returns the ms from `since` until the last replica held them.
   */
  async function everyReplicaRecognises(ids: string[], batch: string[], faces: number, since: number): Promise<number> {
    await Promise.all(
      alive().map((replica) =>
        vi.waitFor(
          async () => {
            const held = (await health(replica)).gallery?.faces ?? 0;
            if (held < faces) throw new Error(`${replica.url} holds ${held} of ${faces} faces`);
          },
          { timeout: WAIT_MS, interval: POLL_MS },
        ),
      ),
    );
    const ms = performance.now() - since;
    for (const replica of alive()) {
      for (const [i, id] of ids.entries()) expect(await recognises(replica, batch[i], id), `${replica.url} recognises ${id}`).toBe(true);
    }
    return ms;
  }

  /** SIGKILLs the extractor and waits until another holds the lease: when it was killed, and the ms the takeover took. */
  async function killExtractor(killed: Replica, which: string): Promise<{ killedAt: number; takeoverMs: number }> {
    killed.service.child.kill('SIGKILL');
    const killedAt = performance.now();
    await killed.service.exited;
    await extractor();
    const takeoverMs = performance.now() - killedAt;
    console.log(`replicas: takeover after SIGKILL of ${which} extractor in ${Math.round(takeoverMs)} ms`);
    return { killedAt, takeoverMs };
  }

  /** Inserts the images; returns the ms from the commit until every live replica recognised them. */
  async function insertAndRecognise(ids: string[], batch: string[]): Promise<number> {
    const faces = ((await health(alive()[0])).gallery?.faces ?? 0) + ids.length;
    await insert(ids, batch);
    return everyReplicaRecognises(ids, batch, faces, performance.now());
  }

  beforeAll(async () => {
    images = await storedImages(FIRST_IMAGES + 2 * IMAGES_AFTER_KILL);
    server = await startPostgresServer();
    await server.createDatabase('backend');
    await server.sql(`CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, "base64Image" text)`, [], 'backend');
    serviceUrl = await server.createRole('face_recog', 'backend');
    await server.sql(`GRANT SELECT ON visitor_images TO face_recog; CREATE SCHEMA face_recog AUTHORIZATION face_recog`, [], 'backend');
    for (let i = 0; i < REPLICAS; i++) replicas.push(await launch(serviceUrl));
    await Promise.all(replicas.map((r) => r.service.healthy(START_TIMEOUT_MS)));
  }, START_TIMEOUT_MS + 30_000);

  afterAll(async () => {
    await Promise.all(alive().map((r) => r.service.stop()));
    await server?.destroy();
    if (process.env.REPLICAS_LOG) for (const r of replicas) console.log(`--- ${r.url}\n${r.service.tail(Infinity)}`);
    if (recognitionMs.length) console.log(`replicas: slowest recognition per image ${Math.round(Math.max(...recognitionMs))} ms, median ${Math.round(median(recognitionMs))} ms`);
  });

  it('has one extractor and two followers', async () => {
    await extractor();
    // A replica has no role until its first round against the database ends, which may come after
    // another has taken the lease: wait for every replica's first round, then look at the roles.
    const settled = await vi.waitFor(
      async () => {
        const now = await roles();
        if (now.includes(null)) throw new Error(`roles so far: ${now.join(', ')}`);
        return now;
      },
      { timeout: WAIT_MS, interval: POLL_MS },
    );
    expect(settled.sort()).toEqual(['extractor', 'follower', 'follower']);
  });

  it(`extracts ${FIRST_IMAGES} new images once in all, each recognised by every replica within 2 s`, async () => {
    for (let i = 0; i < FIRST_IMAGES; i++) recognitionMs.push(await insertAndRecognise([`visitor-${i}`], [images[i]]));
    console.log(`replicas: recognised by all ${REPLICAS} after ${recognitionMs.map(Math.round).join(', ')} ms`);
    expect(Math.max(...recognitionMs)).toBeLessThanOrEqual(RECOGNISED_WITHIN_MS);
    const counts = await Promise.all(replicas.map(extractions));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(FIRST_IMAGES);
    // The followers extracted nothing: they loaded what the extractor wrote.
    expect(counts.filter((c) => c === 0)).toHaveLength(REPLICAS - 1);
  }, 10 * WAIT_MS);

  it('after SIGKILL of the idle extractor, another takes over within 10 s and extracts only the new images', async () => {
    const killed = await extractor();
    const survivors = alive().filter((r) => r !== killed);
    const before = await Promise.all(survivors.map(extractions));
    const { takeoverMs } = await killExtractor(killed, 'an idle');
    expect(takeoverMs).toBeLessThanOrEqual(TAKEOVER_WITHIN_MS);

    const ids = Array.from({ length: IMAGES_AFTER_KILL }, (_, i) => `after-kill-${i}`);
    await insertAndRecognise(ids, images.slice(FIRST_IMAGES, FIRST_IMAGES + IMAGES_AFTER_KILL));
    const after = await Promise.all(survivors.map(extractions));
    expect(after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0)).toBe(IMAGES_AFTER_KILL);
  }, 10 * WAIT_MS);

  it('after SIGKILL of the extractor while images wait, the next one extracts what was left: none lost, none saved twice', async () => {
    const killed = await extractor();
    const survivors = alive().filter((r) => r !== killed);
    const ids = Array.from({ length: IMAGES_AFTER_KILL }, (_, i) => `mid-kill-${i}`);
    const batch = images.slice(FIRST_IMAGES + IMAGES_AFTER_KILL);
    const before = await Promise.all(survivors.map(extractions));
    const faces = ((await health(survivors[0])).gallery?.faces ?? 0) + ids.length;
    await insert(ids, batch);
    const { killedAt, takeoverMs } = await killExtractor(killed, 'a busy');
    expect(takeoverMs).toBeLessThanOrEqual(TAKEOVER_WITHIN_MS);
    await everyReplicaRecognises(ids, batch, faces, killedAt);
    // One cached row per image, each written once: an image saved by the killed extractor was not extracted again.
    const rows = await server.sql<{ visitor_id: string; rewritten: boolean }>(
      `SELECT visitor_id, updated_at <> created_at AS rewritten FROM face_recog.face_recog_features WHERE visitor_id LIKE 'mid-kill-%' ORDER BY visitor_id`,
      [],
      'backend',
    );
    expect(rows).toEqual(ids.map((visitor_id) => ({ visitor_id, rewritten: false })));
    const extractedBySurvivors = (await Promise.all(survivors.map(extractions))).reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0);
    expect(extractedBySurvivors).toBeGreaterThanOrEqual(0);
    expect(extractedBySurvivors).toBeLessThanOrEqual(IMAGES_AFTER_KILL);
    console.log(`replicas: of ${IMAGES_AFTER_KILL} images waiting at the kill, the new extractor extracted ${extractedBySurvivors}`);
  }, 10 * WAIT_MS);
});
