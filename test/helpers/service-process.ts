// The service as `npm start` runs it, in its own process: the one launcher of the tests, the soak
// and the benchmarks. Tests run the source (src/server/main.ts through tsx, so that the code under
// test is what runs); the benchmarks run the build (dist/server/main.js, as `npm start` does).
// It keeps the service's output line by line (and can wait for a given line), its exit, its
// memory (from /proc), and runs the `face-recog` CLI against the same settings.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { MODELS_DIR, REPO_ROOT } from './paths.js';

const ENTRIES = {
  source: { server: ['--import', 'tsx', join(REPO_ROOT, 'src', 'server', 'main.ts')], cli: ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts')] },
  built: { server: [join(REPO_ROOT, 'dist', 'server', 'main.js')], cli: [join(REPO_ROOT, 'dist', 'cli', 'main.js')] },
};
const LISTENING = /Server listening at (http:\/\/[^"\s]+)/;
const POLL_MS = 100;
/** How long `stop` waits after its signal before SIGKILL. */
const STOP_GRACE_MS = 30_000;
const START_TIMEOUT_MS = 120_000;
const OUTPUT_AFTER_EXIT_MS = 5_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Memory {
  /** VmRSS: resident now. */
  rssMb: number;
  /** VmHWM: the most ever resident. */
  peakMb: number;
}

export interface LaunchOptions {
  /** Settings over `baseEnv()`. Without PORT the service picks one and `url()` reads it from its log. */
  env?: Record<string, string>;
  /** Node options before the entry point (e.g. --inspect=127.0.0.1:0). */
  nodeOptions?: string[];
  /** The source through tsx (tests, the default) or the build in dist/ (`npm run build`). */
  entry?: keyof typeof ENTRIES;
}

/**
 * The environment every launch starts from: mobilefacenet from the shared models, offline, the
 * embedded database, no key, nothing inherited from the caller's shell but PATH and HOME.
 */
export function baseEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    HOST: '127.0.0.1',
    PORT: '0',
    MODELS_DIR,
    MODELS_OFFLINE: '1',
    RECOGNIZER: 'mobilefacenet',
    LOG_LEVEL: 'info',
    // As `npm start` and the Docker image set it (docs/reliability.md, "Memory over a long run").
    MALLOC_ARENA_MAX: '2',
  };
}

/** A port nothing listens on (now), for a service whose log will not say which one it took. */
export async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

export class ServiceProcess {
  readonly child: ChildProcess;
  readonly env: Record<string, string>;
  /** Output so far, one entry per line. */
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<Exit>;
  /** Both streams' lines in the order they came. */
  private readonly output: string[] = [];
  private exit: Exit | null = null;
  private readonly lines = new EventEmitter();

  constructor(private readonly options: LaunchOptions = {}) {
    this.env = { ...baseEnv(), ...options.env };
    const entry = ENTRIES[options.entry ?? 'source'];
    if (!existsSync(entry.server.at(-1)!)) throw new Error(`${entry.server.at(-1)} is missing: run \`npm run build\` first`);
    this.child = spawn(process.execPath, [...(options.nodeOptions ?? []), ...entry.server], { cwd: REPO_ROOT, env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.collect(this.child.stdout!, this.stdout);
    this.collect(this.child.stderr!, this.stderr);
    // Resolved once its output is read to the end too ('close'), so that the last lines are there;
    // a grandchild still holding the pipes open (it should not) delays that by OUTPUT_AFTER_EXIT_MS at most.
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exit) return;
        this.exit = { code, signal };
        this.lines.emit('exit');
        resolve(this.exit);
      };
      this.child.once('close', done);
      this.child.once('exit', (code, signal) => setTimeout(() => done(code, signal), OUTPUT_AFTER_EXIT_MS).unref());
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first line (stdout or stderr, so far or to come) that `matches` accepts; rejects if the service exits first. */
  line(what: string, matches: (line: string) => boolean): Promise<string> {
    const seen = this.output.find(matches);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const onLine = (line: string) => {
        if (!matches(line)) return;
        this.lines.off('line', onLine).off('exit', onExit);
        resolve(line);
      };
      const onExit = () => {
        this.lines.off('line', onLine).off('exit', onExit);
        reject(this.failure(`the service exited (${JSON.stringify(this.exit)}) before logging ${what}`));
      };
      if (this.exit) return onExit();
      this.lines.on('line', onLine).on('exit', onExit);
    });
  }

  /** Its base URL: from PORT when one was given, else from the "Server listening at" log line. */
  async url(): Promise<string> {
    const port = Number(this.env.PORT);
    if (port > 0) return `http://127.0.0.1:${port}`;
    return LISTENING.exec(await this.line('the address it listens at', (l) => LISTENING.test(l)))![1];
  }

  /**
   * Polls `probe` until it returns a value other than undefined (an error counts as not yet);
   * fails with `what` after `timeoutMs`, or at once, with the service's last lines, if it exits.
   * For conditions only the service's HTTP answers show (/health and the like), in tests and
   * benchmarks alike (outside vitest, where vi.waitFor is not available).
   */
  async until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = START_TIMEOUT_MS): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      if (this.exit) throw this.failure(`the service exited (${JSON.stringify(this.exit)}) while waiting for ${what}`);
      try {
        const value = await probe();
        if (value !== undefined) return value;
      } catch (error) {
        last = error;
      }
      if (performance.now() > deadline) throw this.failure(`gave up after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
      await delay(POLL_MS);
    }
  }

  /** Resolves once /health answers 200 (models loaded, gallery up). */
  async healthy(timeoutMs = START_TIMEOUT_MS): Promise<void> {
    const url = await this.url();
    await this.until('/health to answer 200', async () => ((await fetch(`${url}/health`)).status === 200 ? true : undefined), timeoutMs);
  }

  memory(): Memory {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const mb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
    return { rssMb: mb('VmRSS'), peakMb: mb('VmHWM') };
  }

  /** Sends `signal` (SIGKILL if it is still running after `graceMs`) and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = STOP_GRACE_MS): Promise<Exit> {
    if (this.exit) return this.exit;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** `face-recog <args>` with the service's settings (the same DATA_DIR, database and models); its stdout. */
  async cli(args: string[]): Promise<string> {
    const entry = ENTRIES[this.options.entry ?? 'source'];
    const child = spawn(process.execPath, [...entry.cli, ...args], { cwd: REPO_ROOT, env: { ...this.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`face-recog ${args.join(' ')} exited with ${code}: ${stderr.trim()}`);
    return stdout;
  }

  /** The last lines of its output, for an error message. */
  tail(count = 20): string {
    return this.output.slice(-count).join('\n');
  }

  private failure(message: string): Error {
    return new Error(`${message}; its last lines:\n${this.tail()}`);
  }

  private collect(stream: NodeJS.ReadableStream, into: string[]): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts.filter(Boolean)) {
        into.push(line);
        this.output.push(line);
        this.lines.emit('line', line);
      }
    });
  }
}

export function launchService(options: LaunchOptions = {}): ServiceProcess {
  return new ServiceProcess(options);
}
