// A real service on a free port, composed as `npm start` composes it (createService): the real
// engine (YuNet + MobileFaceNet from the test models), an in-memory gallery, logs captured so
// tests can check what they contain.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from '../../../src/config.js';
import type { FaceEngine } from '../../../src/engine/engine.js';
import { createLogger } from '../../../src/server/logging.js';
import type { OpenConnectionStage } from '../../../src/server/realtime.js';
import type { InferenceScheduler } from '../../../src/server/scheduler.js';
import { createService, type Service } from '../../../src/server/service.js';
import { MODELS_DIR, readTestdata, testEngine } from '../../helpers/fixtures.js';
import { MemoryGallery } from './memory-gallery.js';

export interface TestServer {
  url: string;
  wsUrl: string;
  app: FastifyInstance;
  service: Service;
  config: Config;
  scheduler: InferenceScheduler;
  gallery: MemoryGallery;
  /** Everything logged so far, one JSON line per entry. */
  logs: string[];
  /** The models "finish loading" with this engine. */
  setEngine(engine: FaceEngine): void;
  close(): Promise<void>;
}

export interface TestServerOptions {
  env?: Record<string, string>;
  /** 'loading': the models never finish loading (until setEngine). */
  engine?: 'loaded' | 'loading';
  gallery?: MemoryGallery;
  /** The gallery is still starting: the service does not have it. */
  galleryStarting?: boolean;
  openConnectionStage?: OpenConnectionStage;
}

export async function startServer(options: TestServerOptions = {}): Promise<TestServer> {
  // One pipeline at a time, as the in-process test engine runs them: holdSlot() then makes the service busy.
  const config = loadConfig({ RECOGNIZER: 'mobilefacenet', MODELS_DIR, MODELS_OFFLINE: '1', LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', INFERENCE_CONCURRENCY: '1', ...options.env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      callback();
    },
  });
  const gallery = options.gallery ?? new MemoryGallery();
  const service = await createService(config, {
    logger: createLogger(config.logLevel, sink),
    openConnectionStage: options.openConnectionStage,
  });
  if (!options.galleryStarting) service.useGallery(gallery);
  if (options.engine !== 'loading') service.useEngine(await testEngine());
  const address = new URL(await service.listen());
  return {
    url: `http://127.0.0.1:${address.port}`,
    wsUrl: `ws://127.0.0.1:${address.port}`,
    app: service.app,
    service,
    config,
    scheduler: service.scheduler,
    gallery,
    logs,
    setEngine: (engine) => service.useEngine(engine),
    close: () => service.close(),
  };
}

export function base64Of(relative: string): string {
  return readTestdata(relative).toString('base64');
}

export async function post(server: TestServer, path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as any };
}

/** Occupies inference slots until released: makes "busy" deterministic without timing. */
export function holdSlot(scheduler: InferenceScheduler): { release: () => void; done: Promise<void> } {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const done = scheduler.run(() => held);
  return { release, done };
}
