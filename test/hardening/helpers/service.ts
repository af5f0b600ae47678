// The service as `npm start` runs it (src/server/main.ts through tsx, so the source under test is
// what runs), in its own process: its output, its exit, its memory (from /proc), its URL.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { MODELS_DIR, REPO_ROOT } from '../../helpers/fixtures.js';

const MAIN = join(REPO_ROOT, 'src', 'server', 'main.ts');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  child: ChildProcess;
  pid: number;
  /** Output so far, one entry per line. */
  stdout: string[];
  stderr: string[];
  exited: Promise<Exit>;
  /** The URL from the "Server listening at" log line, once it is there. */
  url(): Promise<string>;
  /** Resident memory of the service process now, from /proc/<pid>/status. */
  rssMb(): number;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/** The environment every launch starts from: mobilefacenet from the shared models, offline, no inherited settings. */
export function baseEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
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

export function launchService(env: Record<string, string>, nodeOptions: string[] = []): ServiceProcess {
  const child = spawn(process.execPath, [...nodeOptions, '--import', 'tsx', MAIN], {
    cwd: REPO_ROOT,
    env: { ...baseEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const lines = (into: string[]) => {
    let partial = '';
    return (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      into.push(...parts.filter(Boolean));
    };
  };
  child.stdout!.setEncoding('utf8').on('data', lines(stdout));
  child.stderr!.setEncoding('utf8').on('data', lines(stderr));
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exit: Exit | null = null;
  void exited.then((e) => (exit = e));

  return {
    child,
    pid: child.pid!,
    stdout,
    stderr,
    exited,
    url: async () => {
      for (;;) {
        const line = stdout.find((l) => l.includes('Server listening at'));
        const url = line && /listening at (http:\/\/[^"\s]+)/.exec(line)?.[1];
        if (url) return url;
        if (exit) throw new Error(`the service exited (${JSON.stringify(exit)}) before listening: ${stderr.join('\n')}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    rssMb: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
    },
    stop: async (signal = 'SIGTERM') => {
      if (!exit) child.kill(signal);
      return exited;
    },
  };
}

/** A port nothing listens on (now). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `probe` until it returns a value; fails with `what` after `timeoutMs`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}
