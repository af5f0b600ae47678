// `npm start`: listen at once (health says "starting"), load the models, start the gallery; on
// SIGTERM/SIGINT stop accepting, finish the work in flight, close the database, exit 0. A start-up
// failure prints one line saying what is wrong and exits 1.
import { readFileSync } from 'node:fs';
import { loadConfig, type Config } from '../config.js';
import { createLogger } from './logging.js';
import { createService } from './service.js';

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
  const service = await createService(config, { logger, version: packageVersion() });
  let stopping = false;

  // Synchronous up to service.close()'s first await: a request arriving after the signal is refused.
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
    await service.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', (signal) => void shutdown(signal));
  process.on('SIGINT', (signal) => void shutdown(signal));

  if (config.auth.apiKeys.length === 0) logger.warn('API_KEYS is not set: /api, /ws and /metrics are open to anyone who can reach this port');
  await service.listen();
  await service.start();
}

let config: Config;
try {
  config = loadConfig(process.env);
} catch (error) {
  fail(error);
}
main(config).catch(fail);
