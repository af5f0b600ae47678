// `face-recog gallery status | synth | drop-synthetic`: what the gallery would find in the
// database, and synthetic faces for benchmarks at scale.
import cliProgress from 'cli-progress';
import { InvalidArgumentError, type Command } from 'commander';
import { getRecognizer } from '../../engine/models/registry.js';
import { FaceRecogError } from '../../errors.js';
import { withConfiguredDatabase } from '../database.js';
import { cacheCounts, removeSynthetic } from '../../gallery/feature-cache.js';
import { migrate } from '../../gallery/migrations.js';
import { describeProblem } from '../../gallery/problems.js';
import { countSourceRows, introspectSources } from '../../gallery/sources.js';
import { addSyntheticFaces } from '../../gallery/synthetic.js';
import { redactUrl } from '../../redact.js';

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function dimensionOf(model: string, given?: number): number {
  if (given !== undefined) return given;
  try {
    return getRecognizer(model).dimension;
  } catch (error) {
    throw new FaceRecogError('invalid_request', `${(error as Error).message}; give --dimension for a model this build does not know`);
  }
}

export function registerGalleryCommands(program: Command): void {
  const gallery = program.command('gallery').description('the visitor gallery: what it reads, and synthetic faces for benchmarks');

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
        for (const c of status.cache) console.log(`feature cache, ${c.model}: ${c.ok} faces, ${c.failed} failed images, ${c.synthetic} synthetic faces`);
      });
    });

  gallery
    .command('synth')
    .description('add N synthetic faces (random unit vectors) to the feature cache, for benchmarks; the gallery loads them at start')
    .requiredOption('--count <n>', 'how many', positiveInteger)
    .option('--model <name>', 'recognizer they belong to (default: RECOGNIZER)')
    .option('--dimension <d>', "embedding dimension (default: the model's)", positiveInteger)
    .action(async (options: { count: number; model?: string; dimension?: number }) => {
      await withConfiguredDatabase(async (db, config) => {
        const model = options.model ?? config.models.recognizer;
        const dimension = dimensionOf(model, options.dimension);
        await migrate(db);
        const bar = process.stderr.isTTY ? new cliProgress.SingleBar({ stream: process.stderr, etaBuffer: 50 }, cliProgress.Presets.shades_classic) : null;
        bar?.start(options.count, 0);
        const started = performance.now();
        const total = await addSyntheticFaces(db, { model, dimension, count: options.count, onProgress: (done) => bar?.update(done) });
        bar?.stop();
        const seconds = (performance.now() - started) / 1000;
        console.log(
          `added ${options.count} synthetic ${dimension}-d faces for ${model} in ${seconds.toFixed(1)} s ` +
            `(${Math.round(options.count / seconds)}/s); ${total} synthetic faces in the cache for ${model}`,
        );
      });
    });

  gallery
    .command('drop-synthetic')
    .description('remove the synthetic faces from the feature cache')
    .option('--model <name>', 'only those of this recognizer')
    .action(async (options: { model?: string }) => {
      await withConfiguredDatabase(async (db) => {
        await migrate(db);
        console.log(`removed ${await removeSynthetic(db, options.model ?? null)} synthetic faces`);
      });
    });
}
