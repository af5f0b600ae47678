// A throwaway PostgreSQL server from the system's binaries (Debian's postgresql package), not the
// embedded one: a production-like server on which tests create roles, schemas and grants as a DBA
// would. initdb and postgres refuse to run as root, so as root they run as the `postgres` user
// (setpriv, which execs in place: the pid we hold is the postmaster's, and it dies with us).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/gallery/embedded.js';

const HOST = '127.0.0.1';
const SUPERUSER = 'postgres';
const SYSTEM_USER = 'postgres';
const READY = 'database system is ready to accept connections';
/** Start-up output kept for the error when the server does not come up. */
const LOG_TAIL_CHARS = 4_000;

/** The newest /usr/lib/postgresql/<major>/bin holding initdb, or PG_BIN. */
function findBinaries(): string | null {
  if (process.env.PG_BIN) return existsSync(join(process.env.PG_BIN, 'initdb')) ? process.env.PG_BIN : null;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const majors = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors.length ? join(root, majors[0], 'bin') : null;
}

const BIN = findBinaries();

/** Why the system PostgreSQL cannot be used, or null. Throws in CI: a missing server must fail the run. */
export const postgresMissing: string | null = (() => {
  if (BIN) return null;
  const reason = 'PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN to the folder holding initdb)';
  if (process.env.CI) throw new Error(reason);
  console.warn(`skipping: ${reason}`);
  return reason;
})();

const asRoot = process.getuid?.() === 0;

function systemUserIds(): { uid: number; gid: number } {
  const id = (flag: string) => Number(spawnSync('id', [flag, SYSTEM_USER], { encoding: 'utf8' }).stdout.trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** The command line that runs a server binary: as the postgres user when we are root. */
function command(binary: string, args: string[]): [string, string[]] {
  const path = join(BIN!, binary);
  if (!asRoot) return [path, args];
  return ['setpriv', [`--reuid=${SYSTEM_USER}`, `--regid=${SYSTEM_USER}`, '--init-groups', '--pdeathsig=INT', '--', path, ...args]];
}

export interface PostgresServer {
  port: number;
  /** The superuser's password (the superuser is `postgres`). */
  readonly password: string;
  /** A connection URL; default: the superuser on the `postgres` database. */
  url(options?: { user?: string; password?: string; database?: string }): string;
  /** Runs one statement as the superuser on `database` (default `postgres`); returns the rows. */
  sql<R extends object = Record<string, unknown>>(text: string, values?: unknown[], database?: string): Promise<R[]>;
  /** Creates a database owned by the superuser; returns its name. */
  createDatabase(name: string): Promise<string>;
  /** Creates a login role with a random password; returns the URL it connects with to `database`. */
  createRole(name: string, database: string): Promise<string>;
  /** Stops the server (fast shutdown); start() brings it back on the same port and data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its data. */
  destroy(): Promise<void>;
}

/** Starts a fresh cluster in a temporary directory on a free port; `settings` are extra server settings (e.g. wal_level=logical). */
export async function startPostgresServer(settings: Record<string, string> = {}): Promise<PostgresServer> {
  if (!BIN) throw new Error(postgresMissing ?? 'no PostgreSQL binaries');
  const root = await mkdtemp(join(tmpdir(), 'face-recog-pg-'));
  const dataDir = join(root, 'data');
  const passwordFile = join(root, 'password');
  const password = randomBytes(12).toString('hex');
  await writeFile(passwordFile, `${password}\n`);
  if (asRoot) {
    const { uid, gid } = systemUserIds();
    await chown(root, uid, gid);
    await chown(passwordFile, uid, gid);
  }
  const [initdb, initArgs] = command('initdb', [
    '-D', dataDir, '-U', SUPERUSER, '--pwfile', passwordFile, '--auth=scram-sha-256', '--no-sync', '--encoding=UTF8', '--locale=C',
  ]);
  const init = spawnSync(initdb, initArgs, { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);

  const port = await freePort();
  let postmaster: ReturnType<typeof spawn> | null = null;
  const pools = new Map<string, pg.Pool>();
  const url = (options: { user?: string; password?: string; database?: string } = {}) =>
    `postgres://${encodeURIComponent(options.user ?? SUPERUSER)}:${encodeURIComponent(options.password ?? password)}@${HOST}:${port}/${options.database ?? 'postgres'}`;

  const start = async () => {
    const [binary, args] = command('postgres', [
      '-D', dataDir, '-p', String(port),
      '-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories=',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
      ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ]);
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        log = (log + chunk).slice(-LOG_TAIL_CHARS);
        if (log.includes(READY)) resolve();
      });
      child.once('exit', (code, signal) => reject(new Error(`postgres exited (${code ?? signal}) during start-up:\n${log}`)));
      child.once('error', reject);
    });
    // Keep draining its log so that a full pipe never blocks it.
    child.stderr!.removeAllListeners('data').resume();
    postmaster = child;
  };

  const stop = async () => {
    for (const pool of pools.values()) await pool.end().catch(() => undefined);
    pools.clear();
    const child = postmaster;
    postmaster = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGINT');
    await exited;
  };

  const pool = (database: string) => {
    let existing = pools.get(database);
    if (!existing) {
      existing = new pg.Pool({ connectionString: url({ database }), max: 2 });
      existing.on('error', () => undefined);
      pools.set(database, existing);
    }
    return existing;
  };

  const sql = async <R extends object>(text: string, values?: unknown[], database = 'postgres'): Promise<R[]> =>
    (await pool(database).query(text, values)).rows as R[];

  await start();
  return {
    port,
    password,
    url,
    sql,
    async createDatabase(name) {
      await sql(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      return name;
    },
    async createRole(name, database) {
      const rolePassword = randomBytes(9).toString('hex');
      await sql(`CREATE ROLE ${pg.escapeIdentifier(name)} LOGIN PASSWORD ${pg.escapeLiteral(rolePassword)}`);
      return url({ user: name, password: rolePassword, database });
    },
    stop,
    start,
    async destroy() {
      await stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}
