// A role the DBA has not finished setting up: /health says what is missing with the SQL that
// grants it, recognition answers 503 meanwhile, and each grant made while the service runs is
// picked up without a restart (a role setting too, which only new connections see).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Database } from '../../src/gallery/db.js';
import { FaceRecogError } from '../../src/errors.js';
import { fixturesMissing } from '../helpers/fixtures.js';
import { postgresMissing, startPostgresServer, type PostgresServer } from '../helpers/postgres-server.js';
import { base64Of, embeddingOf, logger, startGalleryService, waitFor, type GalleryService } from './helpers.js';

interface Problem {
  code: string;
  table: string | null;
  message: string;
  sql: string | null;
}

describe.skipIf(fixturesMissing || postgresMissing)('gallery permissions, granted while the service runs', () => {
  let server: PostgresServer;
  let backend: Database;
  let service: GalleryService;

  /** The next /health that differs from `previous`: ok, or degraded naming problems. */
  const nextHealth = (previous: string) =>
    waitFor(
      'the service to report a new state',
      async () => {
        const { status, body } = await service.get('/health');
        const problems = JSON.stringify(body.gallery?.problems ?? null);
        if (status === 200) return { status, body, problems };
        return body.status === 'degraded' && body.gallery?.problems.length > 0 && problems !== previous ? { status, body, problems } : undefined;
      },
      20_000,
    );

  beforeAll(async () => {
    server = await startPostgresServer();
    await server.createDatabase('perm');
    // The backend keeps its tables in a schema of its own, off the default search path.
    await server.sql(`CREATE SCHEMA backend`, [], 'perm');
    await server.sql(`CREATE TABLE backend.visitors (visitor_id text PRIMARY KEY, "base64Image" text)`, [], 'perm');
    await server.sql(`CREATE TABLE backend.visitor_images (id serial PRIMARY KEY, visitor_id text REFERENCES backend.visitors ON DELETE CASCADE, "base64Image" text)`, [], 'perm');
    backend = new Database(server.url({ database: 'perm' }), logger);
    await backend.query(`INSERT INTO backend.visitors VALUES ('obama', $1), ('biden', $2)`, [base64Of('faces/obama/1.jpg'), base64Of('faces/biden/1.jpg')]);
    await backend.query(`INSERT INTO backend.visitor_images (visitor_id, "base64Image") VALUES ('obama', $1)`, [base64Of('faces/obama/2.jpg')]);
    // A role with nothing granted at all.
    service = await startGalleryService(await server.createRole('svc', 'perm'));
  });

  afterAll(async () => {
    await service?.close();
    await backend?.close();
    await server?.destroy();
  });

  it('says what to grant, one step at a time, and runs once it is granted', async () => {
    const query = await embeddingOf('faces/obama/3.jpg');
    const steps: string[][] = [];
    let previous = '';
    for (;;) {
      const health = await nextHealth(previous);
      if (health.status === 200) break;
      expect(steps.length, `still degraded after running ${JSON.stringify(steps)}`).toBeLessThan(4);
      previous = health.problems;
      const problems = health.body.gallery.problems as Problem[];
      steps.push(problems.map((p) => p.code));
      for (const problem of problems) {
        expect(problem.sql).toBeTruthy();
        // The reasons carry the SQL too, for whoever reads only those.
        expect(health.body.reasons.join('\n')).toContain(problem.sql!);
      }
      const refused = await service.gallery.search([query]).then(() => null, (e: unknown) => e);
      expect(refused).toBeInstanceOf(FaceRecogError);
      expect(refused).toMatchObject({ code: 'gallery_unavailable', status: 503 });
      expect((refused as Error).message).toContain(problems[0].sql!);
      // Exactly what /health says, run by the DBA while the service runs: one step's statements
      // in one transaction, so that the service never sees half a step (which it would report as
      // a step of its own: one table granted, the other not yet).
      await server.sql(problems.map((p) => p.sql).join('\n'), [], 'perm');
    }
    expect(steps).toEqual([
      ['permission_denied'], // CREATE SCHEMA face_recog AUTHORIZATION svc
      ['permission_denied', 'permission_denied'], // USAGE on backend, SELECT on each table
      ['not_on_search_path', 'not_on_search_path'], // ALTER ROLE svc SET search_path (new sessions only)
    ]);
    await service.gallery.ready;
    expect(service.gallery.status()).toMatchObject({ database: 'up', faces: 3, visitors: 2, failed: 0, problems: [] });
    expect((await service.gallery.search([query]))[0]?.visitorId).toBe('obama');
  });

  it('notices a permission revoked while running, and its grant again', async () => {
    await server.sql(`REVOKE SELECT ON backend.visitor_images FROM svc`, [], 'perm');
    // A change makes the sync read the tables again.
    await backend.query(`INSERT INTO backend.visitors VALUES ('kit', $1)`, [base64Of('faces/kit_harington/1.jpg')]);
    const health = await waitFor('the service to report the revoked permission', async () => {
      const answer = await service.get('/health');
      return answer.status === 503 ? { ...answer, problems: JSON.stringify(answer.body.gallery.problems) } : undefined;
    });
    expect(health.body.status).toBe('degraded');
    expect(health.body.gallery.problems).toEqual([
      {
        code: 'permission_denied',
        table: 'backend.visitor_images',
        message: 'the database role "svc" may not read backend.visitor_images',
        sql: 'GRANT SELECT ON "backend"."visitor_images" TO "svc";',
      },
    ]);
    await server.sql(health.body.gallery.problems[0].sql, [], 'perm');
    expect((await nextHealth(health.problems)).status).toBe(200);
    const kit = await waitFor('kit to be recognised', async () => {
      const [match] = await service.gallery.search([await embeddingOf('faces/kit_harington/2.jpg')]);
      return match?.visitorId === 'kit' ? match : undefined;
    });
    expect(kit.similarity).toBeGreaterThan(0.44);
  });
});
