// The database the configuration names: DATABASE_URL, or else the embedded PostgreSQL under
// DATA_DIR (joined if the server already runs it, started otherwise and stopped on close).
import pino, { type Logger } from 'pino';
import { loadConfig, type Config } from '../config.js';
import { Database } from './db.js';
import { startEmbeddedPostgres } from './embedded.js';

export interface OpenDatabase {
  db: Database;
  close(): Promise<void>;
}

export interface DatabaseTarget {
  databaseUrl: string | null;
  dataDir: string;
  databaseSchema: string;
}

export async function openDatabase(target: DatabaseTarget, logger: Logger): Promise<OpenDatabase> {
  if (target.databaseUrl !== null) {
    const db = new Database(target.databaseUrl, logger, target.databaseSchema);
    return { db, close: () => db.close() };
  }
  const embedded = await startEmbeddedPostgres({ dataDir: target.dataDir, logger });
  const db = new Database(embedded.url, logger, target.databaseSchema);
  return {
    db,
    close: async () => {
      await db.close();
      await embedded.stop();
    },
  };
}

/**
 * Runs a one-off command's work against the configured database (loadConfig(process.env)),
 * logging to stderr at LOG_LEVEL or else only warnings, and closes it afterwards.
 */
export async function withConfiguredDatabase<T>(work: (db: Database, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig(process.env);
  const logger = pino({ level: process.env.LOG_LEVEL?.trim() || 'warn' }, pino.destination(2));
  const { db, close } = await openDatabase(config, logger);
  try {
    return await work(db, config);
  } finally {
    await close();
  }
}
