// `npm start`: listen at once (health says "starting"), load the models, start the gallery; on
// SIGTERM/SIGINT stop accepting, finish the work in flight, close the database, exit 0. A start-up
// failure prints one line saying what is wrong and exits 1.
import { readFileSync } from 'node:fs';
import { loadConfig, type Config } from '../config.js';
import { FaceEngine } from '../engine/engine.js';
import { downloadProgressReporter } from '../engine/models/progress.js';
import { startGallery } from '../gallery/index.js';
import type { Gallery } from '../gallery/types.js';
import { buildApp } from './app.js';
import { createLogger } from './logging.js';
import { ServiceMetrics } from './metrics.js';
import { InferencePipeline } from './pipeline.js';
import { InferenceScheduler } from './scheduler.js';

// Beyond the request deadline, how long a shutdown may take before the process exits anyway.
const SHUTDOWN_GRACE_MS = 10_000;

function fail(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`face-recog: ${message.split('\n')[0]}\n`);
  process.exit(1);
}

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return manifest.version ?? '0.0.0';
}

async function main(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const scheduler = new InferenceScheduler(config.inference);
  let engine: FaceEngine | null = null;
  let gallery: Gallery | null = null;
  let stopping = false;
  let startup: Promise<void> = Promise.resolve();
  const metrics = new ServiceMetrics({ scheduler, gallery: () => gallery });
  const app = await buildApp({ config, logger, engine: () => engine, gallery: () => gallery, scheduler, metrics, version: packageVersion() });

  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down: refusing new connections, finishing work in flight');
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.inference.timeoutMs + SHUTDOWN_GRACE_MS).unref();
    await app.close();
    // A gallery still starting is waited for, so that its database is closed too.
    await startup.catch(() => undefined);
    await gallery?.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', (signal) => void shutdown(signal));
  process.on('SIGINT', (signal) => void shutdown(signal));

  if (config.auth.apiKeys.length === 0) logger.warn('API_KEYS is not set: /api, /ws and /metrics are open to anyone who can reach this port');
  await app.listen({ host: config.host, port: config.port });
  startup = loadModelsAndGallery();
  await startup;

  async function loadModelsAndGallery(): Promise<void> {
    engine = await FaceEngine.load({
      dir: config.models.dir,
      offline: config.models.offline,
      mirror: config.models.mirror ?? undefined,
      onProgress: downloadProgressReporter(),
      detector: config.models.detector,
      recognizer: config.models.recognizer,
      detect: config.detect,
      intraOpThreads: config.inference.intraOpThreads,
    });
    logger.info({ detector: config.models.detector, recognizer: engine.recognizer.name }, 'models loaded');
    if (stopping) return;
    const pipeline = new InferencePipeline(engine, scheduler, config, metrics);
    gallery = await startGallery({
      databaseUrl: config.databaseUrl,
      databaseSchema: config.databaseSchema,
      dataDir: config.dataDir,
      model: engine.recognizer.name,
      dimension: engine.recognizer.dimension,
      extractor: pipeline.extractor,
      pollMs: config.gallery.pollMs,
      batchSize: config.gallery.batchSize,
      concurrency: config.gallery.concurrency,
      logger,
    });
  }
}

let config: Config;
try {
  config = loadConfig(process.env);
} catch (error) {
  fail(error);
}
main(config).catch(fail);
