// The configured database for a one-off command: its settings from the environment, its log lines
// on stderr (so that stdout stays the command's output), closed when the work is done.
import pino from 'pino';
import { loadConfig, type Config } from '../config.js';
import { openDatabase } from '../gallery/connect.js';
import type { Database } from '../gallery/db.js';

/** Only warnings unless LOG_LEVEL asks for more: a command's output is what it prints. */
const DEFAULT_LOG_LEVEL = 'warn';
const STDERR = 2;

/** Runs `work` against the configured database (loadConfig(process.env)) and closes it afterwards. */
export async function withConfiguredDatabase<T>(work: (db: Database, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig(process.env);
  const logger = pino({ level: process.env.LOG_LEVEL?.trim() || DEFAULT_LOG_LEVEL }, pino.destination(STDERR));
  const { db, close } = await openDatabase(config, logger);
  try {
    return await work(db, config);
  } finally {
    await close();
  }
}
