// `face-recog visitors import <dir>`: fill the visitor tables from a folder of photos, as the
// visitor backend would (used by the README demo and for trying the service without a backend).
import type { Command } from 'commander';
import { redactUrl } from '../../gallery/db.js';
import { withConfiguredDatabase } from '../database.js';
import { importTargets, importVisitor, planImport, type StoredAs } from '../../gallery/importer.js';
import { FaceRecogError } from '../../errors.js';

export function registerVisitorsCommands(program: Command): void {
  const visitors = program.command('visitors').description('the visitor tables, as the visitor backend keeps them');

  visitors
    .command('import <dir>')
    .description(
      'store photos as the visitor backend would: a sub-folder per visitor (named by visitor id), or files named ' +
        '<visitor_id>.<ext> or <visitor_id>_<n>.<ext>; the first image of a new visitor goes to visitors, the others to visitor_images ' +
        '(DATABASE_URL, or the embedded database under DATA_DIR). A name that is not a valid visitor_id of the tables\' type ' +
        '(uuid, integer...) gets the id the database assigns, printed and reused on the next import',
    )
    .option('--data-url', 'store data:image/...;base64, URLs instead of plain base64')
    .action(async (dir: string, options: { dataUrl?: boolean }) => {
      const plan = await planImport(dir);
      if (plan.visitors.length === 0) throw new FaceRecogError('invalid_request', `no JPEG, PNG or WebP files in ${dir}`);
      const as: StoredAs = options.dataUrl ? 'data-url' : 'base64';
      await withConfiguredDatabase(async (db) => {
        const sources = await importTargets(db);
        let stored = 0;
        let visitorsStored = 0;
        for (const visitor of plan.visitors) {
          const result = await importVisitor(db, sources, visitor, as);
          const images = result.visitors + result.visitorImages;
          stored += images;
          if (images > 0) visitorsStored++;
          const key = result.storedAs === null ? '' : ` as visitor_id ${result.storedAs}`;
          console.log(`${result.visitorId}: stored ${result.visitors} in visitors, ${result.visitorImages} in visitor_images${key}`);
          for (const { file, reason } of result.skipped) console.log(`  skipped ${file}: ${reason}`);
        }
        for (const file of plan.ignored) console.log(`ignored ${file} (not a .jpg, .jpeg, .png or .webp file)`);
        const form = sources.every((s) => s.imageKind === 'bytea') ? 'image bytes' : as;
        console.log(`stored ${stored} images of ${visitorsStored} visitors as ${form} in ${redactUrl(db.url)}`);
      });
    });
}
