// The service as `npm start` runs it (src/server/main.ts, here through tsx so that the source under
// test is what runs), in a child process with an embedded PostgreSQL under a temporary DATA_DIR,
// and the `face-recog` CLI run the way the README tells users to.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MODELS_DIR, REPO_ROOT } from '../../helpers/fixtures.js';

const run = promisify(execFile);
const TSX = ['--import', 'tsx'];
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

export interface ServiceProcess {
  url: string;
  env: Record<string, string>;
  /** What the service wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then waits for the graceful exit (which stops the embedded PostgreSQL). */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** The service environment: mobilefacenet from the shared test models, never downloading, no keys, the embedded database. */
export function serviceEnv(dataDir: string, port: number): Record<string, string> {
  return {
    ...(process.env as Record<string, string>),
    DATABASE_URL: '',
    API_KEYS: '',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    RECOGNIZER: 'mobilefacenet',
    MODELS_DIR,
    MODELS_OFFLINE: '1',
    LOG_LEVEL: 'warn',
  };
}

export async function startServiceProcess(dataDir: string): Promise<ServiceProcess> {
  const port = await freePort();
  const env = serviceEnv(dataDir, port);
  const child = spawn(process.execPath, [...TSX, join(REPO_ROOT, 'src/server/main.ts')], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const url = `http://127.0.0.1:${port}`;
  const service: ServiceProcess = { url, env, output: () => output, stop: () => stopChild(child) };

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}:\n${output}`);
    const status = await fetch(`${url}/health`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) return service;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  await service.stop();
  throw new Error(`the service did not become healthy within ${START_TIMEOUT_MS} ms:\n${output}`);
}

/** `face-recog <args>` against the same DATA_DIR as the service; returns its stdout. */
export async function faceRecogCli(service: ServiceProcess, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [...TSX, join(REPO_ROOT, 'src/cli/main.ts'), ...args], { cwd: REPO_ROOT, env: service.env });
  return stdout;
}

/** Waits until /health counts at least `faces` cached faces. */
export async function waitForGalleryFaces(service: ServiceProcess, faces: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    last = await (await fetch(`${service.url}/health`)).json();
    const gallery = (last as { gallery?: { faces: number; syncing: boolean } }).gallery;
    if (gallery && gallery.faces >= faces) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`the gallery did not reach ${faces} faces within ${timeoutMs} ms; last health: ${JSON.stringify(last)}`);
}
