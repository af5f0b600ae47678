// `face-recog db install-triggers | uninstall-triggers`: the optional notify triggers that let a
// running gallery see visitor table changes at once instead of at its next poll.
import type { Command } from 'commander';
import { withConfiguredDatabase } from '../../gallery/connect.js';
import { installTriggers, uninstallTriggers } from '../../gallery/triggers.js';

export function registerDbCommands(program: Command): void {
  const db = program.command('db').description('database set-up for the gallery');

  db.command('install-triggers')
    .description('add statement-level triggers to visitors and visitor_images that pg_notify the gallery of every change')
    .action(async () => {
      await withConfiguredDatabase(async (database) => {
        const tables = await installTriggers(database);
        console.log(tables.length ? `notify triggers installed on ${tables.join(', ')}` : 'no visitor tables found; nothing installed');
      });
    });

  db.command('uninstall-triggers')
    .description('remove the notify triggers (the gallery falls back to polling)')
    .action(async () => {
      await withConfiguredDatabase(async (database) => {
        const tables = await uninstallTriggers(database);
        console.log(tables.length ? `notify triggers removed from ${tables.join(', ')}` : 'no notify triggers were installed');
      });
    });
}
