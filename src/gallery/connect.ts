// The database the configuration names: DATABASE_URL, or else the embedded PostgreSQL under
// DATA_DIR (joined if the server already runs it, started otherwise and stopped on close).
import type { Logger } from 'pino';
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
