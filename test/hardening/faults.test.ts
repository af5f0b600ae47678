// Faults, on the service as `npm start` runs it: the database down at start and lost mid-run
// (a real embedded PostgreSQL, stopped and started again on the same port), model files missing,
// corrupt or truncated, a first start that downloads its model, and SIGTERM with requests and
// WebSocket frames in flight.
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/gallery/embedded.js';
import { MODELS_DIR, fixturesMissing } from '../helpers/fixtures.js';
import { base64Of } from '../server/helpers/server.js';
import { outcomeOf, postJson, send } from './helpers/http.js';
import { Reliability } from './helpers/reliability.js';
import { closedPort, eventually, launchService, type ServiceProcess } from './helpers/service.js';
import { RealtimeClient, wsOutcome } from '../helpers/realtime-client.js';

const KEY = 'hardening-faults-key-7d20';
const AUTH = { authorization: `Bearer ${KEY}` };
const PHOTO = 'faces/obama/1.jpg';
const YUNET = 'face_detection_yunet_2023mar.onnx';
const MOBILEFACENET = 'MobileFaceNet.onnx';

const reliability = new Reliability('faults', 'Faults', 'test/hardening/faults.test.ts');
const quiet = pino({ level: 'silent' });

const dirs: string[] = [];
async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `face-recog-${prefix}-`));
  dirs.push(dir);
  return dir;
}

async function health(url: string): Promise<{ status: number; body: any }> {
  const answer = await send(`${url}/health`);
  return { status: answer.status, body: answer.body };
}

describe.skipIf(fixturesMissing)('faults', () => {
  afterAll(async () => {
    reliability.save();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  describe('the database', () => {
    let dataDir: string;
    let port: number;
    let service: ServiceProcess;
    let url: string;
    let database: EmbeddedDatabase | null = null;
    const recognize = () => postJson(url, '/api/v1/recognize', { image: base64Of(PHOTO) }, AUTH);
    const detect = () => postJson(url, '/api/v1/detect', { image: base64Of(PHOTO) }, AUTH);
    const startDatabase = async () => {
      database = await startEmbeddedPostgres({ dataDir, logger: quiet, port });
      expect(database.owner).toBe(true);
    };

    beforeAll(async () => {
      // DATABASE_URL names a port where nothing listens yet; the test starts PostgreSQL there later,
      // with the password the URL already carries.
      dataDir = await tempDir('faults-db');
      const password = randomBytes(12).toString('base64url');
      writeFileSync(join(dataDir, 'postgres.password'), `${password}\n`, { mode: 0o600 });
      port = await closedPort();
      service = launchService({
        DATABASE_URL: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
        DATA_DIR: dataDir,
        API_KEYS: KEY,
        GALLERY_POLL_MS: '200',
        REQUEST_TIMEOUT_MS: '60000',
        // One image at a time, so that a few requests make a queue that stays (SIGTERM test below).
        INFERENCE_CONCURRENCY: '1',
      });
      url = await service.url();
      await eventually('the models to load', async () => ((await health(url)).body?.models ? true : undefined));
    });
    afterAll(async () => {
      if (service) await service.stop('SIGKILL');
      await database?.stop();
    });

    it('down at start: the service starts, detect works, recognize answers 503, /health says degraded', async () => {
      // "starting" until the gallery's first connection attempt has failed, then "degraded".
      const down = await eventually('the first connection attempt to fail', async () => {
        const h = await health(url);
        return h.body?.status === 'starting' ? undefined : h;
      });
      reliability.record('database down at start: /health', `${down.status} ${down.body.status}`);
      expect(down.status).toBe(503);
      expect(down.body.status).toBe('degraded');
      expect(down.body.reasons.join(' ')).toMatch(/database/);
      for (let i = 0; i < 3; i++) {
        const detected = await detect();
        reliability.record('database down at start: detect', outcomeOf(detected));
        expect(detected.status).toBe(200);
        expect(detected.body.count).toBe(1);
        const recognized = await recognize();
        reliability.record('database down at start: recognize', outcomeOf(recognized));
        expect(outcomeOf(recognized)).toBe('503 gallery_unavailable');
        expect(Number(recognized.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
      const camera = await RealtimeClient.connect(`${url.replace('http', 'ws')}/ws/realtime`, { headers: AUTH });
      const frame = await camera.ask({ type: 'frame', image: base64Of(PHOTO), id: 1 });
      reliability.record('database down at start: WebSocket frame', wsOutcome(frame));
      expect(wsOutcome(frame)).toBe('error gallery_unavailable');
      camera.socket.close();
    });

    it('recovers alone once the database comes up, and recognises a visitor stored there', async () => {
      await startDatabase();
      const client = new pg.Client({ connectionString: database!.url });
      await client.connect();
      await client.query('INSERT INTO visitors (visitor_id, base64image) VALUES ($1, $2)', ['v-obama', base64Of('faces/obama/2.jpg')]);
      await client.end();
      const ok = await eventually('health ok', async () => {
        const h = await health(url);
        return h.status === 200 ? h : undefined;
      });
      reliability.record('database started after the service: /health', `${ok.status} ${ok.body.status}`);
      const matched = await eventually('the visitor recognised', async () => {
        const answer = await recognize();
        return answer.body?.matched ? answer : undefined;
      });
      reliability.record('database started after the service: recognize', `${matched.status} matched ${matched.body.visitor_id}`);
      expect(matched.body.visitor_id).toBe('v-obama');
    });

    it('lost mid-run: recognize answers 503 gallery_unavailable, detect keeps working, /health says degraded', async () => {
      await database!.stop();
      database = null;
      for (let i = 0; i < 5; i++) {
        const recognized = await recognize();
        reliability.record('database stopped mid-run: recognize', outcomeOf(recognized));
        expect(outcomeOf(recognized)).toBe('503 gallery_unavailable');
        const detected = await detect();
        reliability.record('database stopped mid-run: detect', outcomeOf(detected));
        expect(detected.status).toBe(200);
      }
      const degraded = await eventually('health degraded', async () => {
        const h = await health(url);
        return h.body.status === 'degraded' ? h : undefined;
      });
      reliability.record('database stopped mid-run: /health', `${degraded.status} ${degraded.body.status}`);
      expect(degraded.status).toBe(503);
    });

    it('recovers alone when the database is back', async () => {
      await startDatabase();
      const matched = await eventually('the visitor recognised again', async () => {
        const answer = await recognize();
        return answer.body?.matched ? answer : undefined;
      });
      reliability.record('database back after the outage: recognize', `${matched.status} matched ${matched.body.visitor_id}`);
      expect(matched.body.visitor_id).toBe('v-obama');
      const ok = await health(url);
      reliability.record('database back after the outage: /health', `${ok.status} ${ok.body.status}`);
      expect(ok.status).toBe(200);
    });

    it('SIGTERM with requests and WebSocket frames in flight: they finish, sockets close with 1001, exit 0', { timeout: 180_000 }, async () => {
      const large = base64Of('faces/deepface_p03/4.jpg');
      const { port: servicePort } = new URL(url);
      // Fresh connections: a pooled keep-alive socket could be closed under a request not yet sent.
      const inFlight = Array.from({ length: 8 }, (_, i) =>
        freshPost(Number(servicePort), i % 2 ? '/api/v1/recognize' : '/api/v1/detect', { image: large }),
      );
      const cameras = await Promise.all(
        [0, 1, 2].map(() => RealtimeClient.connect(`${url.replace('http', 'ws')}/ws/realtime?api_key=${KEY}`)),
      );
      const sent = cameras.map((camera, c) => {
        const ids = [0, 1, 2, 3].map((n) => `cam${c}-${n}`);
        for (const id of ids) camera.send({ type: 'frame', image: large, id });
        return ids;
      });
      // Each of these takes the CPU for a while: once several wait, the service is busy for seconds.
      await eventually('the queue to fill', async () => ((await health(url)).body.queue.waiting >= 5 ? true : undefined));

      void service.stop('SIGTERM');
      // Once the service has taken the signal: with inference off its event loop it would otherwise
      // accept a request sent in the same instant, before the signal is handled, and rightly answer it.
      await eventually('the shutdown to begin', async () => (service.stdout.some((line) => line.includes('shutting down')) ? true : undefined));
      const late = await freshPost(Number(servicePort), '/api/v1/detect', { image: base64Of(PHOTO) });
      const refusedCleanly = ['503 not_ready', 'connection refused'];
      reliability.record('request sent after SIGTERM', refusedCleanly.includes(late.outcome) ? 'refused cleanly (503 not_ready or connection refused)' : late.outcome);
      expect(refusedCleanly).toContain(late.outcome);

      // Requests still on their way when the signal came may be refused; none may be cut off or fail.
      const answers = await Promise.all(inFlight);
      for (const { outcome } of answers) {
        const clean = outcome === '200' || refusedCleanly.includes(outcome);
        reliability.record('HTTP requests sent just before SIGTERM', clean ? 'finished (200) or refused cleanly' : outcome);
        expect(clean, outcome).toBe(true);
      }
      const finished = answers.filter((a) => a.outcome === '200').length;
      reliability.note(`SIGTERM: ${finished} of ${answers.length} HTTP requests sent just before it finished with 200, the others were refused cleanly.`);
      expect(finished).toBeGreaterThanOrEqual(4);
      for (const [c, camera] of cameras.entries()) {
        const { code } = await camera.closed;
        const answered = new Set(camera.messages.flatMap((m) => (m.type === 'dropped' ? m.ids : [m.id])));
        const all = sent[c].every((id) => answered.has(id)) && camera.messages.every((m) => ['results', 'dropped'].includes(m.type));
        reliability.record('WebSocket camera with 4 frames sent when SIGTERM arrived', `${all ? 'every frame answered (results or dropped)' : 'FRAMES LOST'}, closed ${code}`);
        expect(all).toBe(true);
        expect(code).toBe(1001);
      }
      const exit = await service.exited;
      reliability.record('service process after SIGTERM', `exit ${exit.code}`);
      expect(exit.code).toBe(0);
      expect(service.stdout.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
    });
  });

  describe('model files', () => {
    async function modelsDir(edit: (dir: string) => void): Promise<string> {
      const dir = await tempDir('faults-models');
      for (const file of [YUNET, MOBILEFACENET]) copyFileSync(join(MODELS_DIR, file), join(dir, file));
      edit(dir);
      return dir;
    }

    async function startFails(name: string, dir: string, env: Record<string, string> = {}): Promise<string> {
      const service = launchService({ MODELS_DIR: dir, DATA_DIR: await tempDir('faults-data'), DATABASE_URL: `postgres://127.0.0.1:${await closedPort()}/none`, ...env });
      const exit = await service.exited;
      // One line says what is wrong; a download in progress may have written its progress lines before it.
      const problems = service.stderr.filter((line) => !line.startsWith('downloading '));
      reliability.record(name, `exit ${exit.code}, one line saying why`);
      expect(exit.code).toBe(1);
      expect(problems).toHaveLength(1);
      return problems[0];
    }

    it('a missing model stops the start with one line naming the file and how to get it', async () => {
      const line = await startFails('model file missing (MODELS_OFFLINE=1)', await modelsDir((dir) => unlinkSync(join(dir, MOBILEFACENET))));
      expect(line).toContain(MOBILEFACENET);
      expect(line).toContain('MODELS_OFFLINE');
    });

    it('a model with one corrupt byte, or truncated, stops the start with one line naming the file', async () => {
      const corrupt = await modelsDir((dir) => {
        const bytes = readFileSync(join(dir, YUNET));
        bytes[Math.floor(bytes.length / 2)] ^= 0xff;
        writeFileSync(join(dir, YUNET), bytes);
      });
      const corruptLine = await startFails('model file with one byte flipped', corrupt);
      expect(corruptLine).toContain(YUNET);
      expect(corruptLine).toContain('sha256');

      const truncated = await modelsDir((dir) => {
        const bytes = readFileSync(join(dir, MOBILEFACENET));
        writeFileSync(join(dir, MOBILEFACENET), bytes.subarray(0, bytes.length - 1000));
      });
      const truncatedLine = await startFails('model file truncated', truncated);
      expect(truncatedLine).toContain(MOBILEFACENET);
      expect(truncatedLine).toContain('bytes');
    });

    describe('downloaded on a first start', () => {
      let mirror: http.Server;
      let mirrorUrl: string;
      const served = new Map<string, Buffer>();

      beforeAll(async () => {
        mirror = http.createServer((request, response) => {
          const body = served.get(decodeURIComponent(request.url!.slice(1)));
          if (!body) return void response.writeHead(404).end();
          response.writeHead(200, { 'content-length': body.length });
          // In pieces, as a download over a network arrives.
          let at = 0;
          const next = () => {
            if (at >= body.length) return void response.end();
            response.write(body.subarray(at, (at += 256 * 1024)), next);
          };
          next();
        });
        await new Promise<void>((resolve) => mirror.listen(0, '127.0.0.1', resolve));
        mirrorUrl = `http://127.0.0.1:${(mirror.address() as { port: number }).port}`;
      });
      afterAll(() => new Promise((resolve) => mirror.close(resolve)));

      it('shows the download progress in the logs, then serves', async () => {
        served.set(MOBILEFACENET, readFileSync(join(MODELS_DIR, MOBILEFACENET)));
        const dir = await modelsDir((d) => unlinkSync(join(d, MOBILEFACENET)));
        const service = launchService({
          MODELS_DIR: dir,
          MODELS_OFFLINE: '0',
          MODELS_MIRROR: mirrorUrl,
          DATA_DIR: await tempDir('faults-data'),
          DATABASE_URL: `postgres://127.0.0.1:${await closedPort()}/none`,
        });
        try {
          const url = await service.url();
          const detected = await eventually('detect after the download', async () => {
            const answer = await postJson(url, '/api/v1/detect', { image: base64Of(PHOTO) });
            return answer.status === 200 ? answer : undefined;
          });
          expect(detected.body.count).toBe(1);
          const progress = service.stderr.filter((line) => line.startsWith('downloading mobilefacenet'));
          expect(progress[0]).toContain('0% of 3.8 MB');
          expect(progress.at(-1)).toContain('100% of 3.8 MB');
          reliability.record('model missing, downloaded from MODELS_MIRROR', 'progress from 0% to 100% in the log, then served');
          reliability.note(`First start with a missing model: ${progress.length} download progress lines on stderr.`);
          expect(createHash('sha256').update(readFileSync(join(dir, MOBILEFACENET))).digest('hex')).toBe(
            'b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507',
          );
        } finally {
          expect((await service.stop()).code).toBe(0);
        }
      });

      it('refuses a download that is not the pinned file and leaves nothing behind', async () => {
        const tampered = Buffer.from(readFileSync(join(MODELS_DIR, MOBILEFACENET)));
        tampered[1000] ^= 0x01;
        served.set(MOBILEFACENET, tampered);
        const dir = await modelsDir((d) => unlinkSync(join(d, MOBILEFACENET)));
        const line = await startFails('model downloaded with one byte flipped', dir, { MODELS_OFFLINE: '0', MODELS_MIRROR: mirrorUrl });
        expect(line).toContain('sha256');
        expect(existsSync(join(dir, MOBILEFACENET))).toBe(false);
        expect(readdirSync(dir).sort()).toEqual([YUNET]);
      });
    });
  });

  it('docs/reliability.md shows these tallies', () => {
    expect(reliability.differencesFromDoc()).toEqual([]);
  });
});

/** POST over a fresh TCP connection; the outcome, or "connection refused" / the socket error. */
function freshPost(port: number, path: string, body: unknown): Promise<{ outcome: string }> {
  return new Promise((resolve) => {
    const request = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...AUTH } },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ outcome: outcomeOf({ status: response.statusCode ?? 0, body: JSON.parse(text) }) }));
        response.on('error', (error: NodeJS.ErrnoException) => resolve({ outcome: `response cut: ${error.code}` }));
      },
    );
    request.on('error', (error: NodeJS.ErrnoException) => resolve({ outcome: error.code === 'ECONNREFUSED' ? 'connection refused' : `failed: ${error.code}` }));
    request.end(JSON.stringify(body));
  });
}
