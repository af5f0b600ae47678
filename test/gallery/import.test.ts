// `face-recog visitors import` into a backend's own tables (DATABASE_URL): the visitor id written
// in the key's real type (uuid, integer), or assigned by the database and reused on the next
// import; the image as text or bytes as the column holds it; a clear error when neither can be.
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/gallery/db.js';
import { fixturesMissing, readTestdata, testdataPath } from '../helpers/fixtures.js';
import { postgresMissing, startPostgresServer, type PostgresServer } from '../helpers/postgres-server.js';
import { cli, logger } from './helpers.js';

const KNOWN_UUID = '3f0c2a9e-7b1d-4c5e-9a8f-0123456789ab';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe.skipIf(fixturesMissing || postgresMissing)('face-recog visitors import into the backend key types', () => {
  let server: PostgresServer;
  let photos: string;
  const connections: Database[] = [];
  const saved = process.env.DATABASE_URL;

  /** A database with these tables, DATABASE_URL pointing at it. */
  const backend = async (name: string, ...tables: string[]): Promise<Database> => {
    await server.createDatabase(name);
    process.env.DATABASE_URL = server.url({ database: name });
    const db = new Database(process.env.DATABASE_URL, logger);
    connections.push(db);
    for (const table of tables) await db.query(table);
    return db;
  };

  beforeAll(async () => {
    server = await startPostgresServer();
    photos = await mkdtemp(join(tmpdir(), 'face-recog-import-'));
    await mkdir(join(photos, 'alice'));
    await copyFile(testdataPath('faces/obama/1.jpg'), join(photos, 'alice', '1.jpg'));
    await copyFile(testdataPath('faces/obama/2.jpg'), join(photos, 'alice', '2.jpg'));
    await copyFile(testdataPath('faces/biden/1.jpg'), join(photos, 'bob.jpg'));
    await mkdir(join(photos, KNOWN_UUID.toUpperCase()));
    await copyFile(testdataPath('faces/kit_harington/1.jpg'), join(photos, KNOWN_UUID.toUpperCase(), '1.jpg'));
  });

  afterEach(() => {
    if (saved === undefined) delete process.env.DATABASE_URL;
    else process.env.DATABASE_URL = saved;
  });

  afterAll(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await server?.destroy();
    await rm(photos, { recursive: true, force: true });
  });

  it('uuid keys: a uuid name is used as written, another name gets the uuid the database assigns, found again next time', async () => {
    const db = await backend(
      'uuid_keys',
      `CREATE TABLE visitors (visitor_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "base64Image" text)`,
      `CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id uuid NOT NULL REFERENCES visitors ON DELETE CASCADE, "base64Image" bytea)`,
    );
    const out = await cli('visitors', 'import', photos);
    const alice = /^alice: stored 1 in visitors, 1 in visitor_images as visitor_id (\S+)$/.exec(out.find((l) => l.startsWith('alice:')) ?? '')?.[1];
    const bob = /^bob: stored 1 in visitors, 0 in visitor_images as visitor_id (\S+)$/.exec(out.find((l) => l.startsWith('bob:')) ?? '')?.[1];
    expect(alice).toMatch(UUID);
    expect(bob).toMatch(UUID);
    // Written in the type's own spelling: a uuid in capitals is stored (and answered) in lower case.
    expect(out).toContain(`${KNOWN_UUID.toUpperCase()}: stored 1 in visitors, 0 in visitor_images as visitor_id ${KNOWN_UUID}`);
    expect(out[out.length - 1]).toMatch(/^stored 4 images of 3 visitors as base64 in postgres:\/\/postgres:\[redacted\]@/);

    const rows = await db.query<{ visitor_id: string; image: Buffer }>(`SELECT visitor_id::text, "base64Image" AS image FROM visitor_images`);
    expect(rows).toEqual([{ visitor_id: alice, image: readTestdata('faces/obama/2.jpg') }]);
    const main = await db.query<{ visitor_id: string; image: string }>(`SELECT visitor_id::text, "base64Image" AS image FROM visitors WHERE visitor_id = $1`, [alice]);
    expect(Buffer.from(main[0].image, 'base64').equals(readTestdata('faces/obama/1.jpg'))).toBe(true);

    const again = await cli('visitors', 'import', photos);
    expect(again).toContain(`alice: stored 0 in visitors, 0 in visitor_images as visitor_id ${alice}`);
    expect(again).toContain(`bob: stored 0 in visitors, 0 in visitor_images as visitor_id ${bob}`);
    expect(again.filter((l) => l.includes('already stored for this visitor'))).toHaveLength(4);
    expect((await db.query(`SELECT 1 FROM visitors`)).length).toBe(3);
  });

  it('integer keys: serial ids assigned in order', async () => {
    const db = await backend(
      'integer_keys',
      `CREATE TABLE visitors (visitor_id serial PRIMARY KEY, base64image text)`,
      `CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id integer REFERENCES visitors, base64image text)`,
    );
    const out = await cli('visitors', 'import', photos);
    expect(out.slice(0, 3)).toEqual([
      `${KNOWN_UUID.toUpperCase()}: stored 1 in visitors, 0 in visitor_images as visitor_id 1`,
      'alice: stored 1 in visitors, 1 in visitor_images as visitor_id 2',
      'bob: stored 1 in visitors, 0 in visitor_images as visitor_id 3',
    ]);
    const images = await db.query<{ visitor_id: number }>(`SELECT visitor_id FROM visitor_images`);
    expect(images).toEqual([{ visitor_id: 2 }]);
  });

  it('says what it needs when the key takes neither the name nor a value of its own', async () => {
    await backend('strict_keys', `CREATE TABLE visitors (visitor_id uuid PRIMARY KEY, "base64Image" text)`);
    await expect(cli('visitors', 'import', photos)).rejects.toThrow(
      /^'alice' is not a valid uuid for public\.visitors\.visitor_id, and the database does not assign one: name each folder \(or file\) by the visitor's id/,
    );
  });

  it("names the backend's own constraint when a row cannot be stored", async () => {
    await backend('required_columns', `CREATE TABLE visitors (visitor_id text PRIMARY KEY, name text NOT NULL, "base64Image" text)`);
    await expect(cli('visitors', 'import', photos)).rejects.toMatchObject({
      code: 'invalid_request',
      message: expect.stringMatching(/^cannot store .*1\.jpg in public\.visitors: null value in column "name"/),
    });
  });
});
