// Configuration from the environment, validated once at start. Every setting is optional; the
// table in README.md lists them. A bad value stops the process with a message naming the variable.
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_DETECT_SIZE, type EngineOptions } from './engine/engine.js';
import { DEFAULT_IMAGE_LIMITS } from './engine/image.js';
import { getDetector, getRecognizer } from './engine/models/registry.js';
import { DEFAULT_DATABASE_SCHEMA, SCHEMA_NAME } from './gallery/service-schema.js';
import { DEFAULT_EVENT_COOLDOWN_S } from './server/tracking/events.js';

export interface Config {
  host: string;
  port: number;
  logLevel: string;
  /** PostgreSQL URL; unset: the embedded PostgreSQL under `dataDir`. */
  databaseUrl: string | null;
  /** The schema holding everything the service creates in the database. */
  databaseSchema: string;
  dataDir: string;
  models: { dir: string; offline: boolean; mirror: string | null; detector: string; recognizer: string };
  /** Default match threshold; null: the recognizer's own. */
  matchThreshold: number | null;
  detect: { detectSize: number; scoreThreshold: number; nmsThreshold: number; topK: number };
  limits: {
    /** Encoded bytes per image. */
    maxImageBytes: number;
    /** width x height per image, checked before decoding. */
    maxImagePixels: number;
    /** Faces embedded and matched per image (the most confident first). */
    maxFaces: number;
  };
  inference: {
    /** Inference worker threads, each with its own model sessions. */
    workers: number;
    /** Pipelines (decode, detect, embed) run at once, over all workers. */
    concurrency: number;
    /** Requests allowed to wait, whatever their expected wait (a bound on the payloads held); more get 503. */
    maxQueue: number;
    /** A request still waiting or running after this gets 503; one not expected to finish within it is refused at once. */
    timeoutMs: number;
    /** onnxruntime intra-op threads for an image run alone (beside others: one each); 0: one per core. */
    intraOpThreads: number;
  };
  auth: { apiKeys: string[] };
  /** Requests per minute per API key (or per address when auth is off); 0: unlimited. */
  rateLimitPerMinute: number;
  /** Origins allowed by CORS; empty: CORS closed. */
  corsOrigins: string[];
  ws: { maxMessageBytes: number; heartbeatMs: number; maxConnections: number };
  events: {
    /** A visitor seen again on a camera raises "arrived" again only after this long out of its view. */
    cooldownS: number;
    /** Where events are POSTed, signed with the secret; null: no webhook. */
    webhook: { url: string; secret: string } | null;
  };
  gallery: {
    /** How often the visitor tables are checked for changes. */
    pollMs: number;
    /** Images fetched and saved per batch while reconciling. */
    batchSize: number;
    /** Stored images being extracted at once while reconciling. */
    concurrency: number;
  };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function read(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function number(env: Env, name: string, fallback: number, check: { min?: number; max?: number; integer?: boolean } = {}): number {
  const raw = read(env, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  const { min = -Infinity, max = Infinity, integer = false } = check;
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    const range = `${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` >= ${min}` : ''}${max < Infinity ? ` <= ${max}` : ''}`;
    throw new ConfigError(`${name}=${raw} is not valid: expected ${range}`);
  }
  return value;
}

function flag(env: Env, name: string): boolean {
  const raw = read(env, name)?.toLowerCase();
  if (raw === undefined) return false;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name}=${raw} is not valid: expected 1/0, true/false`);
}

function list(env: Env, name: string): string[] {
  return (read(env, name) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function schemaName(env: Env): string {
  const name = read(env, 'DATABASE_SCHEMA') ?? DEFAULT_DATABASE_SCHEMA;
  if (!SCHEMA_NAME.test(name) || name.startsWith('pg_')) {
    throw new ConfigError(`DATABASE_SCHEMA=${name} is not valid: expected a lower-case SQL name (letters, digits, _; at most 63; not starting with pg_)`);
  }
  return name;
}

function model<T>(name: string, value: string, lookup: (n: string) => T): string {
  try {
    lookup(value);
  } catch (e) {
    throw new ConfigError(`${name}=${value}: ${(e as Error).message}`);
  }
  return value;
}

function webhook(env: Env): { url: string; secret: string } | null {
  const url = read(env, 'WEBHOOK_URL');
  if (url === undefined) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`WEBHOOK_URL=${url} is not a URL; expected http(s)://host/path`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(`WEBHOOK_URL uses ${parsed.protocol}; expected an http:// or https:// URL`);
  }
  const secret = read(env, 'WEBHOOK_SECRET');
  // Unsigned events would let anyone who finds the receiver announce visitors.
  if (secret === undefined) throw new ConfigError('WEBHOOK_URL is set but WEBHOOK_SECRET is not: events are signed with it; set a long random secret');
  return { url, secret };
}

/** Chosen by measurement on 2 cores (bench/workers.ts; README, "Inference off the event loop"). */
const INFERENCE_DEFAULTS = {
  /** One worker per core. */
  workers: availableParallelism(),
  /** Pipelines per worker: one decodes while another's inference runs. */
  tasksPerWorker: 2,
  intraOpThreads: 2,
};

function inferenceConfig(env: Env): Config['inference'] {
  const workers = number(env, 'INFERENCE_WORKERS', INFERENCE_DEFAULTS.workers, { min: 1, max: 64, integer: true });
  return {
    workers,
    concurrency: number(env, 'INFERENCE_CONCURRENCY', workers * INFERENCE_DEFAULTS.tasksPerWorker, { min: 1, max: 256, integer: true }),
    maxQueue: number(env, 'INFERENCE_QUEUE', 256, { min: 0, max: 10_000, integer: true }),
    timeoutMs: number(env, 'REQUEST_TIMEOUT_MS', 10_000, { min: 100, integer: true }),
    intraOpThreads: number(env, 'ORT_THREADS', INFERENCE_DEFAULTS.intraOpThreads, { min: 0, max: 256, integer: true }),
  };
}

export function loadConfig(env: Env = process.env): Config {
  const detector = model('DETECTOR', read(env, 'DETECTOR') ?? 'yunet-2023mar', getDetector);
  const recognizer = model('RECOGNIZER', read(env, 'RECOGNIZER') ?? 'sface-2021dec', getRecognizer);
  const defaults = getDetector(detector).defaults;
  const threshold = read(env, 'MATCH_THRESHOLD');
  return {
    host: read(env, 'HOST') ?? '0.0.0.0',
    port: number(env, 'PORT', 8000, { min: 0, max: 65535, integer: true }),
    logLevel: read(env, 'LOG_LEVEL') ?? 'info',
    databaseUrl: read(env, 'DATABASE_URL') ?? null,
    databaseSchema: schemaName(env),
    dataDir: resolve(read(env, 'DATA_DIR') ?? './data'),
    models: {
      dir: resolve(read(env, 'MODELS_DIR') ?? './models'),
      offline: flag(env, 'MODELS_OFFLINE'),
      mirror: read(env, 'MODELS_MIRROR') ?? null,
      detector,
      recognizer,
    },
    matchThreshold: threshold === undefined ? null : number(env, 'MATCH_THRESHOLD', 0, { min: -1, max: 1 }),
    detect: {
      detectSize: number(env, 'DETECT_SIZE', DEFAULT_DETECT_SIZE, { min: 32, max: 4096, integer: true }),
      scoreThreshold: number(env, 'DETECT_SCORE', defaults.scoreThreshold, { min: 0, max: 1 }),
      nmsThreshold: number(env, 'DETECT_NMS', defaults.nmsThreshold, { min: 0, max: 1 }),
      topK: number(env, 'DETECT_TOP_K', defaults.topK, { min: 1, max: 100_000, integer: true }),
    },
    limits: {
      maxImageBytes: number(env, 'MAX_IMAGE_BYTES', DEFAULT_IMAGE_LIMITS.maxBytes, { min: 1024, integer: true }),
      maxImagePixels: number(env, 'MAX_IMAGE_PIXELS', DEFAULT_IMAGE_LIMITS.maxPixels, { min: 1, integer: true }),
      maxFaces: number(env, 'MAX_FACES', 20, { min: 1, max: 1000, integer: true }),
    },
    inference: inferenceConfig(env),
    auth: { apiKeys: list(env, 'API_KEYS') },
    rateLimitPerMinute: number(env, 'RATE_LIMIT_PER_MINUTE', 0, { min: 0, integer: true }),
    corsOrigins: list(env, 'CORS_ORIGINS'),
    ws: {
      maxMessageBytes: number(env, 'WS_MAX_MESSAGE_BYTES', 8 * 1024 * 1024, { min: 1024, integer: true }),
      heartbeatMs: number(env, 'WS_HEARTBEAT_MS', 30_000, { min: 1000, integer: true }),
      maxConnections: number(env, 'WS_MAX_CONNECTIONS', 256, { min: 1, integer: true }),
    },
    events: {
      cooldownS: number(env, 'EVENT_COOLDOWN_S', DEFAULT_EVENT_COOLDOWN_S, { min: 0 }),
      webhook: webhook(env),
    },
    gallery: {
      pollMs: number(env, 'GALLERY_POLL_MS', 500, { min: 50, integer: true }),
      batchSize: number(env, 'GALLERY_BATCH', 16, { min: 1, max: 1000, integer: true }),
      concurrency: number(env, 'GALLERY_CONCURRENCY', 4, { min: 1, max: 64, integer: true }),
    },
  };
}

/** The models and their settings as the configuration names them: what FaceEngine.load (and FaceDetector.load) takes. */
export function engineOptions(config: Config): EngineOptions {
  return {
    dir: config.models.dir,
    offline: config.models.offline,
    mirror: config.models.mirror ?? undefined,
    detector: config.models.detector,
    recognizer: config.models.recognizer,
    detect: config.detect,
    intraOpThreads: config.inference.intraOpThreads,
  };
}
