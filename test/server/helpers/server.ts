// A real service on a free port: real engine (YuNet + MobileFaceNet from the test models), an
// in-memory gallery, logs captured so tests can check what they contain.
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from '../../../src/config.js';
import type { FaceEngine } from '../../../src/engine/engine.js';
import type { Gallery } from '../../../src/gallery/types.js';
import { buildApp } from '../../../src/server/app.js';
import { createLogger } from '../../../src/server/logging.js';
import { ServiceMetrics } from '../../../src/server/metrics.js';
import { InferenceScheduler } from '../../../src/server/scheduler.js';
import { MODELS_DIR, readTestdata, testEngine } from '../../helpers/fixtures.js';
import { MemoryGallery } from './memory-gallery.js';

export interface TestServer {
  url: string;
  wsUrl: string;
  app: FastifyInstance;
  config: Config;
  scheduler: InferenceScheduler;
  gallery: MemoryGallery;
  /** Everything logged so far, one JSON line per entry. */
  logs: string[];
  /** Swaps what the app sees (null: still loading / starting). */
  setEngine(engine: FaceEngine | null): void;
  setGallery(gallery: Gallery | null): void;
  close(): Promise<void>;
}

export interface ServerOptions {
  env?: Record<string, string>;
  /** 'loading': serve with the models still loading (every inference route answers 503 not_ready). */
  engine?: 'loaded' | 'loading';
  gallery?: MemoryGallery;
  /** A given port (e.g. the one a previous server had); by default a free one. */
  port?: number;
}

export async function startServer(options: ServerOptions = {}): Promise<TestServer> {
  const config = loadConfig({ RECOGNIZER: 'mobilefacenet', MODELS_DIR, MODELS_OFFLINE: '1', LOG_LEVEL: 'info', ...options.env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      callback();
    },
  });
  let engine: FaceEngine | null = options.engine === 'loading' ? null : await testEngine();
  const memoryGallery = options.gallery ?? new MemoryGallery();
  let gallery: Gallery | null = memoryGallery;
  const scheduler = new InferenceScheduler(config.inference);
  const metrics = new ServiceMetrics({ scheduler, gallery: () => gallery });
  const app = await buildApp({
    config,
    logger: createLogger(config.logLevel, sink),
    engine: () => engine,
    gallery: () => gallery,
    scheduler,
    metrics,
  });
  await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    wsUrl: `ws://127.0.0.1:${address.port}`,
    app,
    config,
    scheduler,
    gallery: memoryGallery,
    logs,
    setEngine: (next) => {
      engine = next;
    },
    setGallery: (next) => {
      gallery = next;
    },
    close: () => app.close(),
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
