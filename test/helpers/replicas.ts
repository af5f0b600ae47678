// Replicas of the service, each its own process, on one PostgreSQL server (Debian's, as the
// README's narrow role): test/gallery/replicas.test.ts checks what they promise, bench/replicas.ts
// times it (recognition of a new image by every replica, takeover after the extractor dies).
import sharp from 'sharp';
import { freePort } from '../../src/gallery/embedded.js';
import { readTestdata } from './fixtures.js';
import { startPostgresServer, type PostgresServer } from './postgres-server.js';
import { launchService, type LaunchOptions, type ServiceProcess } from './service-process.js';

/** Generous waits: they keep a broken build from hanging, and bound nothing that is measured. */
export const START_TIMEOUT_MS = 120_000;
const WAIT_MS = 60_000;

export interface Replica {
  url: string;
  service: ServiceProcess;
}

export type Role = 'extractor' | 'follower' | null;

interface Health {
  gallery: { role: Role; faces: number; failed: number } | null;
}

async function health(replica: Replica): Promise<Health> {
  return (await (await fetch(`${replica.url}/health`)).json()) as Health;
}

/** Stored images this replica has extracted since it started (its /metrics). */
export async function extractions(replica: Replica): Promise<number> {
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

/** Distinct photos (one per file, several people), re-encoded smaller: each its own stored image and its own query. */
export async function storedImages(count: number): Promise<string[]> {
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

/**
 * `count` replicas on a fresh server: the backend's database with the guide's `visitor_images`,
 * a role `face_recog` granted SELECT on it and its own schema, as the README tells a DBA.
 */
export class ReplicaSet {
  private constructor(
    readonly server: PostgresServer,
    readonly replicas: Replica[],
  ) {}

  static async start(count: number, entry: LaunchOptions['entry'] = 'source'): Promise<ReplicaSet> {
    const server = await startPostgresServer();
    await server.createDatabase('backend');
    await server.sql(`CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, "base64Image" text)`, [], 'backend');
    const databaseUrl = await server.createRole('face_recog', 'backend');
    await server.sql(`GRANT SELECT ON visitor_images TO face_recog; CREATE SCHEMA face_recog AUTHORIZATION face_recog`, [], 'backend');
    const replicas: Replica[] = [];
    for (let i = 0; i < count; i++) {
      const service = launchService({ entry, env: { PORT: String(await freePort()), DATABASE_URL: databaseUrl, LOG_LEVEL: process.env.REPLICAS_LOG ?? 'warn' } });
      replicas.push({ url: await service.url(), service });
    }
    await Promise.all(replicas.map((r) => r.service.healthy(START_TIMEOUT_MS)));
    return new ReplicaSet(server, replicas);
  }

  alive(): Replica[] {
    return this.replicas.filter((r) => r.service.child.exitCode === null && r.service.child.signalCode === null);
  }

  /** Each live replica's role, once every one has ended its first round against the database (until then a replica has none). */
  roles(): Promise<Role[]> {
    return this.until('every replica to have a role', async () => {
      const now = await Promise.all(this.alive().map(async (r) => (await health(r)).gallery?.role ?? null));
      return now.includes(null) ? undefined : now;
    });
  }

  /** The one live replica holding the extractor's lease, once there is exactly one. */
  extractor(): Promise<Replica> {
    return this.until('exactly one extractor', async () => {
      const found = (await Promise.all(this.alive().map(async (r) => ((await health(r)).gallery?.role === 'extractor' ? r : null)))).filter((r) => r !== null);
      return found.length === 1 ? found[0] : undefined;
    });
  }

  /** Faces the first live replica holds now. */
  async faces(): Promise<number> {
    return (await health(this.alive()[0])).gallery?.faces ?? 0;
  }

  insert(ids: string[], images: string[]): Promise<unknown> {
    return this.server.sql(`INSERT INTO visitor_images (visitor_id, "base64Image") SELECT * FROM unnest($1::text[], $2::text[])`, [ids, images], 'backend');
  }

  /**
   * Resolves once every live replica holds `faces` faces, read from /health (which costs no
   * inference: recognize requests polled in a loop would take the models from the extractor,
   * whose work runs behind requests).
   */
  async holdEverywhere(faces: number): Promise<void> {
    await Promise.all(
      this.alive().map((replica) =>
        replica.service.until(`${replica.url} to hold ${faces} faces`, async () => (((await health(replica)).gallery?.faces ?? 0) >= faces ? true : undefined), WAIT_MS),
      ),
    );
  }

  /** Inserts the images; the ms from the commit until every live replica holds them. */
  async insertAndHold(ids: string[], images: string[]): Promise<number> {
    const faces = (await this.faces()) + ids.length;
    await this.insert(ids, images);
    const committed = performance.now();
    await this.holdEverywhere(faces);
    return performance.now() - committed;
  }

  /** Which of `ids` some live replica does not recognise in its photo (`url: id`; none when all is well). */
  async unrecognised(ids: string[], images: string[]): Promise<string[]> {
    const missed: string[] = [];
    for (const replica of this.alive()) {
      for (const [i, id] of ids.entries()) if (!(await recognises(replica, images[i], id))) missed.push(`${replica.url}: ${id}`);
    }
    return missed;
  }

  /** SIGKILLs `killed` (the extractor) and waits until another holds the lease: the ms from the kill to that takeover. */
  async killExtractor(killed: Replica): Promise<number> {
    killed.service.child.kill('SIGKILL');
    const killedAt = performance.now();
    await killed.service.exited;
    await this.extractor();
    return performance.now() - killedAt;
  }

  /** Polls a condition over all replicas (through a live one's service, which fails at once should it exit). */
  private until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    return this.alive()[0].service.until(what, probe, WAIT_MS);
  }

  async stop(): Promise<void> {
    await Promise.all(this.alive().map((r) => r.service.stop()));
    await this.server.destroy();
    if (process.env.REPLICAS_LOG) for (const r of this.replicas) console.log(`--- ${r.url}\n${r.service.tail(Infinity)}`);
  }
}
