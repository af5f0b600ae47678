// The one module that talks to PostgreSQL. Everything else in the gallery asks through it, so the
// difference between "the database is away" (503, retry later) and "this query is wrong" (a bug)
// is decided in one place.
import pg from 'pg';
import type { Logger } from 'pino';
import { FaceRecogError } from '../errors.js';
import { DEFAULT_DATABASE_SCHEMA, ServiceSchema } from './service-schema.js';
import { limitExceeded, timeLeft, type TimeLimit } from './time-limit.js';

/** Seconds a client is told to wait after the database could not be reached. */
export const DATABASE_RETRY_AFTER_S = 5;

const CONNECT_TIMEOUT_MS = 5_000;
const QUERY_TIMEOUT_MS = 60_000;
const MAX_CONNECTIONS = 4;

// SQLSTATE classes that mean "the database cannot be used right now", not "the query is wrong":
// 08 connection exception, 28 invalid authorization, 3D unknown database, 53 insufficient
// resources, 57 operator intervention (shutdown, restart).
const UNAVAILABLE_CLASSES = new Set(['08', '28', '3D', '53', '57']);
// A permission missing (or revoked) while running: the gallery cannot work until a DBA grants it,
// which it notices by itself; /health names the grant.
const INSUFFICIENT_PRIVILEGE = '42501';
const SQLSTATE = /^[0-9A-Z]{5}$/;
// What statement_timeout cancels a statement with (query_canceled).
const QUERY_CANCELED = '57014';
const BOUNDED_STAGE = 'waiting for the visitor database';

export type Row = Record<string, unknown>;

export interface Queryable {
  query<R extends object = Row>(sql: string, values?: unknown[]): Promise<R[]>;
}

export interface Listener {
  close(): Promise<void>;
}

/** The SQLSTATE of a failed query (e.g. '42P01' undefined table), if the server sent one. */
export function sqlState(error: unknown): string | undefined {
  const source = error instanceof FaceRecogError ? error.cause : error;
  const code = (source as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}

/** The database refused this role something (SQLSTATE 42501 insufficient_privilege): it answers, but not to us. */
export function isPermissionDenied(error: unknown): boolean {
  return sqlState(error) === INSUFFICIENT_PRIVILEGE;
}

/** Texts as a text[] literal (PostgreSQL's array syntax, each element quoted), safe to splice into SQL whatever they hold. */
export function textArrayLiteral(values: string[]): string {
  return `${pg.escapeLiteral(`{${values.map((v) => `"${v.replace(/["\\]/g, '\\$&')}"`).join(',')}}`)}::text[]`;
}

/** A double-quoted identifier, safe to splice into SQL whatever it contains. */
export function quoteIdentifier(name: string): string {
  return pg.escapeIdentifier(name);
}

function isUnavailable(error: unknown): boolean {
  const code = sqlState(error);
  // No SQLSTATE: the socket failed, timed out, or the pool was closed under us.
  return code === undefined || UNAVAILABLE_CLASSES.has(code.slice(0, 2));
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message || (error as { code?: string }).code || error.name : String(error);
  return message.split('\n')[0].slice(0, 300);
}

/** A pg failure as a FaceRecogError: gallery_unavailable when the database is away, internal otherwise. */
export function databaseError(error: unknown): FaceRecogError {
  if (error instanceof FaceRecogError) return error;
  if (isPermissionDenied(error)) {
    return new FaceRecogError('gallery_unavailable', `the database role lacks a permission: ${firstLine(error)} (GET /health gives the SQL that grants it)`, {
      retryAfterS: DATABASE_RETRY_AFTER_S,
      cause: error,
    });
  }
  if (isUnavailable(error)) {
    return new FaceRecogError('gallery_unavailable', `the visitor database is unavailable: ${firstLine(error)}`, {
      retryAfterS: DATABASE_RETRY_AFTER_S,
      cause: error,
    });
  }
  return new FaceRecogError('internal', `a gallery query failed: ${firstLine(error)}`, { cause: error });
}

async function run<R extends object>(client: pg.Pool | pg.PoolClient, sql: string, values?: unknown[]): Promise<R[]> {
  try {
    return (await client.query(sql, values)).rows as R[];
  } catch (error) {
    throw databaseError(error);
  }
}

export class Database implements Queryable {
  readonly url: string;
  /** Where the service's own tables are (DATABASE_SCHEMA). */
  readonly schema: ServiceSchema;
  private pool: pg.Pool;
  private readonly logger: Logger;

  constructor(url: string, logger: Logger, schema: string = DEFAULT_DATABASE_SCHEMA) {
    this.url = url;
    this.logger = logger;
    this.schema = new ServiceSchema(schema);
    this.pool = this.createPool();
  }

  private createPool(): pg.Pool {
    const pool = new pg.Pool({
      connectionString: this.url,
      max: MAX_CONNECTIONS,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'face-recog',
    });
    // An idle client losing its connection (database restart) must not crash the process; the
    // pool drops it and the next query reconnects.
    pool.on('error', (error) => this.logger.debug({ err: firstLine(error) }, 'idle database connection lost'));
    return pool;
  }

  /**
   * Later queries run on new connections. Settings a DBA changes for the role (ALTER ROLE ... SET
   * search_path) only reach sessions opened after the change, so a retry after a permission
   * problem must not reuse the pooled ones.
   */
  recycle(): void {
    const old = this.pool;
    this.pool = this.createPool();
    old.end().catch(() => undefined);
  }

  query<R extends object = Row>(sql: string, values?: unknown[]): Promise<R[]> {
    return run<R>(this.pool, sql, values);
  }

  /** Runs `work` in one transaction on one connection; rolls back if it throws. */
  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.inTransaction(await this.connect(), () => 'BEGIN', work);
  }

  /**
   * Read-only statements in one transaction and one round trip (they go, with the transaction,
   * as one simple query, so they take no parameters: `textArrayLiteral`); their rows, in order.
   * With a `limit`, the wait for a pooled connection and each statement (lock waits included,
   * through statement_timeout) end when it passes, with FaceRecogError('timeout').
   */
  async read(statements: string[], limit?: TimeLimit): Promise<Row[][]> {
    const client = await this.connect(limit);
    const opening = ['BEGIN READ ONLY', ...(limit ? [`SET LOCAL statement_timeout = ${timeLeft(limit, BOUNDED_STAGE)}`] : [])];
    let failure: unknown;
    try {
      const results = (await client.query([...opening, ...statements, 'COMMIT'].join('; '))) as unknown as pg.QueryResult<Row>[];
      return results.slice(opening.length, opening.length + statements.length).map((r) => r.rows);
    } catch (error) {
      failure = sqlState(error) === QUERY_CANCELED ? limitExceeded(BOUNDED_STAGE) : databaseError(error);
      await client.query('ROLLBACK').catch(() => undefined);
      throw failure;
    } finally {
      client.release(failure instanceof FaceRecogError && failure.code === 'gallery_unavailable');
    }
  }

  /** A pooled connection; with a `limit`, waited for no longer than it. */
  private async connect(limit?: TimeLimit): Promise<pg.PoolClient> {
    const connecting = this.pool.connect().catch((error: unknown) => {
      throw databaseError(error);
    });
    if (!limit) return connecting;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(limitExceeded(BOUNDED_STAGE)), timeLeft(limit, BOUNDED_STAGE));
    });
    try {
      return await Promise.race([connecting, expired]);
    } catch (error) {
      // Out of time while waiting: the connection, once there, goes back to the pool unused.
      connecting.then((client) => client.release(), () => undefined);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private async inTransaction<T>(client: pg.PoolClient, begin: () => string, work: (tx: Queryable) => Promise<T>): Promise<T> {
    const tx: Queryable = { query: (sql, values) => run(client, sql, values) };
    let failure: unknown;
    try {
      await tx.query(begin());
      const result = await work(tx);
      await tx.query('COMMIT');
      return result;
    } catch (error) {
      failure = error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      // A connection that failed mid-transaction is destroyed, not given back to the pool.
      client.release(failure instanceof FaceRecogError && failure.code === 'gallery_unavailable');
    }
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  /**
   * LISTEN on `channels` over a dedicated connection. `onLost` is called once when that
   * connection ends; listen again to resume.
   */
  async listen(channels: string[], onNotify: (channel: string, payload: string) => void, onLost: (error: FaceRecogError) => void): Promise<Listener> {
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      application_name: 'face-recog-listen',
    });
    let closing = false;
    let lost = false;
    const lose = (error?: unknown) => {
      if (closing || lost) return;
      lost = true;
      onLost(databaseError(error ?? new Error('notification connection ended')));
      client.end().catch(() => undefined);
    };
    client.on('error', lose);
    client.on('end', () => lose());
    try {
      await client.connect();
      for (const channel of channels) await client.query(`LISTEN ${quoteIdentifier(channel)}`);
    } catch (error) {
      closing = true;
      await client.end().catch(() => undefined);
      throw databaseError(error);
    }
    client.on('notification', (message) => onNotify(message.channel, message.payload ?? ''));
    return {
      close: async () => {
        closing = true;
        await client.end().catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}
