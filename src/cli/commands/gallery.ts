// `face-recog gallery status`: what the gallery would find in the database.
import type { Command } from 'commander';
import { withConfiguredDatabase } from '../database.js';
import { cacheCounts } from '../../gallery/feature-cache.js';
import { migrate } from '../../gallery/migrations.js';
import { describeProblem } from '../../gallery/problems.js';
import { countSourceRows, introspectSources } from '../../gallery/sources.js';
import { redactUrl } from '../../redact.js';

export function registerGalleryCommands(program: Command): void {
  const gallery = program.command('gallery').description('the visitor gallery: what it reads');

  gallery
    .command('status')
    .description('visitor tables found, rows holding an image, notify triggers, and cached features per model')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      await withConfiguredDatabase(async (db) => {
        await migrate(db);
        const { sources, problems } = await introspectSources(db, db.schema.name);
        const tables = await Promise.all(
          sources.map(async (s) => ({ table: s.table, imageColumn: s.imageColumnName, images: await countSourceRows(db, s), notifyTrigger: s.notifies })),
        );
        const status = { database: redactUrl(db.url), schema: db.schema.name, tables, problems: problems.map(describeProblem), cache: await cacheCounts(db) };
        if (options.json) {
          console.log(JSON.stringify(status, null, 2));
          return;
        }
        console.log(`database: ${status.database} (service schema ${status.schema})`);
        if (tables.length === 0) console.log('visitor tables: none');
        for (const t of tables) {
          console.log(`${t.table}: ${t.images} rows with an image (column ${t.imageColumn}), notify trigger ${t.notifyTrigger ? 'installed' : 'not installed'}`);
        }
        for (const p of problems) console.log(`not read: ${p}`);
        if (status.cache.length === 0) console.log('feature cache: empty');
        for (const c of status.cache) console.log(`feature cache, ${c.model}: ${c.ok} faces, ${c.failed} failed images`);
      });
    });
}
