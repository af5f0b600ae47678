// `face-recog db url | install-triggers | uninstall-triggers`: where the database is, and the
// optional notify triggers that let a running gallery see visitor table changes at once instead
// of at its next poll.
import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { withConfiguredDatabase } from '../database.js';
import { embeddedConnection } from '../../gallery/embedded.js';
import { NOTIFY_FUNCTION } from '../../gallery/service-schema.js';
import { installTriggers, uninstallTriggers } from '../../gallery/triggers.js';

export function registerDbCommands(program: Command): void {
  const db = program.command('db').description('database set-up for the gallery');

  db.command('url')
    .description("print the database's connection URL: DATABASE_URL, or the embedded PostgreSQL's under DATA_DIR (password included), e.g. psql \"$(npx face-recog db url)\"")
    .action(async () => {
      const config = loadConfig(process.env);
      if (config.databaseUrl !== null) {
        console.log(config.databaseUrl);
        return;
      }
      const { url, running } = await embeddedConnection(config.dataDir);
      console.log(url);
      if (!running) console.error('face-recog: the embedded PostgreSQL is not running now; it listens there while the service (npm start) runs');
    });

  db.command('install-triggers')
    .description(
      'add statement-level triggers to visitors and visitor_images that pg_notify the gallery of every change; ' +
        'needs TRIGGER on those tables (their owner has it) and USAGE and CREATE on DATABASE_SCHEMA, which holds their function',
    )
    .action(async () => {
      await withConfiguredDatabase(async (database) => {
        const tables = await installTriggers(database);
        console.log(
          tables.length
            ? `notify triggers installed on ${tables.join(', ')} (function ${database.schema.name}.${NOTIFY_FUNCTION}())`
            : 'no visitor tables found; nothing installed',
        );
      });
    });

  db.command('uninstall-triggers')
    .description('remove the notify triggers and their function (the gallery falls back to polling)')
    .action(async () => {
      await withConfiguredDatabase(async (database) => {
        const tables = await uninstallTriggers(database);
        console.log(tables.length ? `notify triggers removed from ${tables.join(', ')}` : 'no notify triggers were installed');
      });
    });
}
