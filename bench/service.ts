// The service as `npm start` runs it (node dist/server/main.js; `npm run bench` builds it first),
// in a child process with its embedded PostgreSQL under a temporary DATA_DIR, measured from outside:
// its HTTP answers, /health, and its resident memory from /proc. The face-recog CLI runs against
// the same DATA_DIR, joining the service's PostgreSQL.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { openDatabase, type OpenDatabase } from '../src/gallery/connect.js';
import { DEFAULT_DATABASE_SCHEMA } from '../src/gallery/service-schema.js';
import { EVENT_LOOP_RESOLUTION_MS } from '../src/server/metrics.js';
import { MODELS_DIR, RECOGNIZER, REPO_ROOT } from './common.js';

const SERVER = join(REPO_ROOT, 'dist', 'server', 'main.js');
const CLI = join(REPO_ROOT, 'dist', 'cli', 'main.js');
const STOP_TIMEOUT_MS = 30_000;
const POLL_MS = 100;

export interface GalleryHealth {
  faces: number;
  failed: number;
  syncing: boolean;
}

export interface Memory {
  /** VmRSS: resident now. */
  rssMb: number;
  /** VmHWM: the most ever resident. */
  peakMb: number;
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** The service's settings: only these, so that nothing from the caller's shell (DATABASE_URL, API_KEYS) leaks in. */
function serviceEnv(dataDir: string, port: number): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    RECOGNIZER,
    MODELS_DIR,
    MODELS_OFFLINE: '1',
    LOG_LEVEL: 'warn',
    // As `npm start` and the Docker image set it (docs/reliability.md, "Memory over a long run").
    MALLOC_ARENA_MAX: '2',
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Seconds summed and calls counted per pipeline stage (decode, detect, embed, search). */
export type StageTotals = Record<string, { sum: number; count: number }>;

/** Mean milliseconds per call of each stage between two snapshots. */
export function stageMeansMs(before: StageTotals, after: StageTotals): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after).flatMap(([stage, a]) => {
      const calls = a.count - (before[stage]?.count ?? 0);
      return calls > 0 ? [[stage, Math.round(((a.sum - (before[stage]?.sum ?? 0)) / calls) * 1e5) / 100]] : [];
    }),
  );
}

export class Service {
  private constructor(
    readonly dataDir: string,
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly logPath: string,
  ) {}

  /** The service's inference histograms (sum and count of seconds per model/stage), from /metrics. */
  async inferenceTotals(): Promise<StageTotals> {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const totals: StageTotals = {};
    for (const m of text.matchAll(/^face_recog_inference_seconds_(sum|count)\{model="([^"]+)",stage="([^"]+)"\} (\S+)$/gm)) {
      const [, kind, , stage, value] = m;
      totals[stage] ??= { sum: 0, count: 0 };
      totals[stage][kind as 'sum' | 'count'] += Number(value);
    }
    return totals;
  }

  /**
   * The event loop's delay p99 since the previous scrape of /metrics (the histogram restarts at
   * each one), in ms: the service samples it every EVENT_LOOP_RESOLUTION_MS, and a sample is the
   * time between two ticks of that timer, so the interval itself is taken off.
   */
  async eventLoopDelayP99Ms(): Promise<number> {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const match = /^face_recog_nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
    if (!match) throw new Error('/metrics has no face_recog_nodejs_eventloop_lag_p99_seconds');
    return Math.max(0, Number(match[1]) * 1000 - EVENT_LOOP_RESOLUTION_MS);
  }

  /** Starts the service and resolves once /health is 200 (models loaded, database up). */
  static async start(dataDir: string): Promise<Service> {
    if (!existsSync(SERVER)) throw new Error(`${SERVER} is missing: run \`npm run build\` first (npm run bench does)`);
    const port = await freePort();
    const logPath = join(dataDir, 'service.log');
    const log = openSync(logPath, 'a');
    const child = spawn(process.execPath, [SERVER], { cwd: REPO_ROOT, env: serviceEnv(dataDir, port), stdio: ['ignore', log, log] });
    closeSync(log);
    const service = new Service(dataDir, `http://127.0.0.1:${port}`, child, logPath);
    await service.until('/health answering 200', async () => (await fetch(`${service.url}/health`)).status === 200, 120_000);
    return service;
  }

  get pid(): number {
    return this.child.pid!;
  }

  get wsUrl(): string {
    return `${this.url.replace(/^http/, 'ws')}/ws/realtime`;
  }

  async gallery(): Promise<GalleryHealth> {
    const body = (await (await fetch(`${this.url}/health`)).json()) as { gallery: GalleryHealth | null };
    if (!body.gallery) throw new Error('/health has no gallery yet');
    return body.gallery;
  }

  /** Resolves once the gallery has done with `images` stored images (searchable faces plus failed ones) and is not syncing. */
  async waitForImages(images: number, timeoutMs: number): Promise<GalleryHealth> {
    let last: GalleryHealth | null = null;
    await this.until(
      `the gallery to hold ${images} images`,
      async () => {
        last = await this.gallery();
        return last.faces + last.failed >= images && !last.syncing;
      },
      timeoutMs,
    );
    return last!;
  }

  memory(): Memory {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMb: Math.round(kb('VmRSS') / 1024), peakMb: Math.round(kb('VmHWM') / 1024) };
  }

  /** The embedded PostgreSQL this service runs, joined (closing it leaves the server running). */
  database(): Promise<OpenDatabase> {
    return openDatabase({ databaseUrl: null, dataDir: this.dataDir, databaseSchema: DEFAULT_DATABASE_SCHEMA }, pino({ level: 'warn' }));
  }

  /** `face-recog <args>` on this service's DATA_DIR; returns its stdout. */
  async cli(args: string[]): Promise<string> {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: REPO_ROOT,
      env: serviceEnv(this.dataDir, 0),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`face-recog ${args.join(' ')} exited with ${code}`);
    return stdout;
  }

  /** SIGTERM, then waits for the graceful exit (which stops the embedded PostgreSQL). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  /** The service log's last lines (warnings and errors only: LOG_LEVEL=warn). */
  logTail(lines = 20): string {
    return readFileSync(this.logPath, 'utf8').trim().split('\n').slice(-lines).join('\n');
  }

  private async until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`the service exited with ${this.child.exitCode} while waiting for ${what}:\n${this.logTail()}`);
      if (await check().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}:\n${this.logTail()}`);
      await sleep(POLL_MS);
    }
  }
}
