// The service as `npm start` runs it: its own process, the embedded PostgreSQL under DATA_DIR,
// models from MODELS_DIR; start-up failures; SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startEmbeddedPostgres } from '../../src/gallery/embedded.js';
import { MODELS_DIR, REPO_ROOT, fixturesMissing } from '../helpers/fixtures.js';
import { base64Of } from './helpers/server.js';

const TSX = join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const MAIN = join(REPO_ROOT, 'src', 'server', 'main.ts');

interface Service {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

function launch(env: Record<string, string>): Service {
  const child = spawn(TSX, [MAIN], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', MODELS_DIR, MODELS_OFFLINE: '1', RECOGNIZER: 'mobilefacenet', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const service: Service = { child, stdout: [], stderr: [], exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => service.stdout.push(...chunk.split('\n').filter(Boolean)));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => service.stderr.push(...chunk.split('\n').filter(Boolean)));
  return service;
}

async function eventually<T>(what: string, attempt: () => Promise<T | undefined>, tries = 600): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const value = await attempt().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Whether a process of that pid is running. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(fixturesMissing)('npm start (src/server/main.ts)', () => {
  const dirs: string[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'face-recog-main-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('exits 1 with one clear line on a bad setting', async () => {
    const service = launch({ PORT: 'eighty', DATA_DIR: await tempDir() });
    expect(await service.exited).toBe(1);
    expect(service.stderr).toHaveLength(1);
    expect(service.stderr[0]).toContain('PORT=eighty');
  });

  it('exits 1 with one clear line naming the file when a model is missing offline', async () => {
    const service = launch({ RECOGNIZER: 'sface-2021dec', DATA_DIR: await tempDir() });
    expect(await service.exited).toBe(1);
    expect(service.stderr).toHaveLength(1);
    expect(service.stderr[0]).toContain('face_recognition_sface_2021dec.onnx');
    expect(service.stderr[0]).toContain('MODELS_OFFLINE');
  });

  it('serves at once, recognises visitors stored in the embedded database, and stops cleanly on SIGTERM', async () => {
    const dataDir = await tempDir();
    const service = launch({ DATA_DIR: dataDir, API_KEYS: 'e2e-key', GALLERY_POLL_MS: '200' });
    try {
      const url = await eventually('the listening line', async () => {
        const line = service.stdout.find((l) => l.includes('Server listening at'));
        return line ? /listening at (http:\/\/[^"]+)/.exec(line)?.[1] : undefined;
      });
      const health = await eventually('health ok', async () => {
        const response = await fetch(`${url}/health`);
        return response.status === 200 ? response.json() : undefined;
      });
      expect(health).toMatchObject({ status: 'ok', models: { recognizer: 'mobilefacenet' }, gallery: { database: 'up' } });

      // The visitor backend stores an image; no call to us is needed for it to be recognised.
      const database = await startEmbeddedPostgres({ dataDir, logger: pino({ level: 'silent' }) });
      expect(database.owner).toBe(false);
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      await client.query('INSERT INTO visitors (visitor_id, base64image) VALUES ($1, $2)', ['v-obama', base64Of('faces/obama/2.jpg')]);
      await client.query('INSERT INTO visitor_images (visitor_id, base64image) VALUES ($1, $2)', ['v-biden', `data:image/jpeg;base64,${base64Of('faces/biden/1.jpg')}`]);
      await client.end();

      const headers = { 'content-type': 'application/json', authorization: 'Bearer e2e-key' };
      const recognize = (image: string) =>
        fetch(`${url}/api/v1/recognize`, { method: 'POST', headers, body: JSON.stringify({ image }) }).then((r) => r.json());
      const group = await eventually('both visitors recognised', async () => {
        const answer = await recognize(base64Of('multi/two_people.jpg'));
        return answer.faces?.every((f: { matched: boolean }) => f.matched) ? answer : undefined;
      });
      expect(group.faces.map((f: { visitor_id: string }) => f.visitor_id).sort()).toEqual(['v-biden', 'v-obama']);

      const socket = new WebSocket(`${url.replace('http', 'ws')}/ws/realtime?api_key=e2e-key&camera=door`);
      const messages: any[] = [];
      socket.on('message', (data) => messages.push(JSON.parse(data.toString())));
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      // Frame by frame until the face's track is named (its third frame), which raises an arrival.
      for (const id of ['f1', 'f2', 'f3']) {
        socket.send(JSON.stringify({ type: 'frame', image: base64Of('faces/obama/1.jpg'), id }));
        while (!messages.some((m) => m.id === id)) await new Promise((resolve) => socket.once('message', resolve));
      }
      expect(messages.map((m) => m.type)).toEqual(['results', 'results', 'event', 'results']);
      expect(messages[2]).toMatchObject({ event: 'arrived', visitor_id: 'v-obama', camera: 'door', track_id: messages[0].faces[0].track_id });
      expect(messages[3]).toMatchObject({ type: 'results', id: 'f3', count: 1, faces: [{ visitor_id: 'v-obama', matched: true }] });
      const socketClosed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));

      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
      expect(await socketClosed).toBe(1001);
      expect(service.stdout.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
      // The service started the embedded PostgreSQL, so it stopped it too.
      expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
      const logs = service.stdout.join('\n');
      expect(logs).not.toContain('e2e-key');
      expect(logs).not.toContain(base64Of('faces/obama/1.jpg').slice(200, 240));
    } finally {
      if (service.child.exitCode === null) service.child.kill('SIGKILL');
    }
  });
  it('npm start passes SIGTERM on to node, which stops cleanly (as under docker stop or systemd)', async () => {
    const main = join(REPO_ROOT, 'dist', 'server', 'main.js');
    expect(existsSync(main), `${main} is missing: npm run build`).toBe(true);
    const dataDir = await tempDir();
    const npm = spawn('npm', ['start'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dataDir, HOST: '127.0.0.1', PORT: '0', MODELS_DIR, MODELS_OFFLINE: '1', RECOGNIZER: 'mobilefacenet', DATA_DIR: dataDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: string[] = [];
    npm.stdout!.setEncoding('utf8').on('data', (chunk: string) => stdout.push(...chunk.split('\n').filter(Boolean)));
    npm.stderr!.resume();
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    let nodePid = 0;
    try {
      const url = await eventually('the listening line', async () => {
        const line = stdout.find((l) => l.includes('Server listening at'));
        if (!line) return undefined;
        nodePid = JSON.parse(line).pid;
        return /listening at (http:\/\/[^"]+)/.exec(line)?.[1];
      });
      expect(nodePid).not.toBe(npm.pid);
      await eventually('health ok', async () => ((await fetch(`${url}/health`)).status === 200 ? true : undefined));

      npm.kill('SIGTERM');
      expect(await exited).toBe(0);
      // npm waits for its script, so node is gone by now, after its own clean shutdown.
      expect(running(nodePid)).toBe(false);
      expect(stdout.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
      expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
    } finally {
      if (npm.exitCode === null) npm.kill('SIGKILL');
      // Without the fix node outlives npm: stop it (and its embedded PostgreSQL) the way it should have been.
      if (nodePid && running(nodePid)) {
        process.kill(nodePid, 'SIGTERM');
        await eventually('the orphaned service to stop', async () => (running(nodePid) ? undefined : true));
      }
    }
  });
});
