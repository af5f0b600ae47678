// The HTTP + WebSocket service, composed of one-concern parts: errors, CORS, auth, rate limit,
// metrics, OpenAPI docs, the API routes and the realtime socket. Everything it uses is passed in.
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import type { InferenceEngine } from '../engine/analysis.js';
import { FaceRecogError } from '../errors.js';
import type { Gallery } from '../gallery/types.js';
import { ApiKeys, installAuth, requiresKey } from './auth.js';
import { handleError, installErrorHandling } from './error-handler.js';
import { galleryImagesRoutes } from './gallery-images.js';
import { requestId } from './logging.js';
import type { ServiceMetrics } from './metrics.js';
import { installOpenApi, metricsDoc } from './openapi.js';
import { InferencePipeline } from './pipeline.js';
import { REALTIME_PATHS, RealtimeHub, realtimeRoutes } from './realtime.js';
import { apiRoutes } from './routes.js';
import type { InferenceScheduler } from './scheduler.js';

export interface AppDeps {
  config: Config;
  /** A pino logger (see logging.ts: it redacts keys and images). */
  logger: FastifyBaseLogger;
  /** The engine, or null while the models load (routes answer 503 not_ready meanwhile). */
  engine: () => InferenceEngine | null;
  /** The visitor gallery, or null while it starts. */
  gallery: () => Gallery | null;
  scheduler: InferenceScheduler;
  metrics: ServiceMetrics;
  /** Shown in the OpenAPI document. */
  version?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    realtime: RealtimeHub;
  }
}

const MINUTE_MS = 60_000;
const ORIGIN = /^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/i;

/** CORS_ORIGINS as @fastify/cors takes it: exact origins, or "*" alone for any origin. */
export function corsOrigin(origins: readonly string[]): string | string[] {
  if (origins.length === 1 && origins[0] === '*') return '*';
  const invalid = origins.filter((origin) => !ORIGIN.test(origin));
  if (invalid.length > 0) {
    throw new Error(`CORS_ORIGINS has ${invalid.map((o) => `'${o}'`).join(', ')}: expected origins like https://desk.example.com or http://localhost:3000 (no path), or * alone`);
  }
  return [...origins];
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, scheduler, metrics } = deps;
  const app = Fastify({
    loggerInstance: deps.logger,
    genReqId: requestId,
    // Types are checked as sent: "0.5" is not a threshold, 123 is not an image.
    ajv: { customOptions: { coerceTypes: false } },
    // Requests arriving during shutdown get the contract's error shape (below), not Fastify's.
    return503OnClosing: false,
    // So do requests the router cannot parse (a malformed %-escape in the path).
    frameworkErrors: handleError,
  });
  const startedAt = Date.now();

  const pipelines = new WeakMap<InferenceEngine, InferencePipeline>();
  const pipeline = (): InferencePipeline => {
    const engine = deps.engine();
    if (!engine) throw new FaceRecogError('not_ready', 'the models are still loading; retry shortly', { retryAfterS: 5 });
    let current = pipelines.get(engine);
    if (!current) {
      current = new InferencePipeline(engine, scheduler, config, metrics);
      pipelines.set(engine, current);
    }
    return current;
  };
  const defaultThreshold = (): number => config.matchThreshold ?? pipeline().engine.recognizer.defaultThreshold;

  installErrorHandling(app);
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (closing) {
      throw new FaceRecogError('not_ready', 'the service is shutting down; retry shortly', { retryAfterS: 1 });
    }
  });
  // While shutting down, every answer ends its connection, so that kept-alive sockets do not hold the shutdown open.
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? '(unmatched)';
    metrics.observeRequest(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
  });

  // Before auth, so that browsers' preflights (which carry no credentials) are answered.
  if (config.corsOrigins.length > 0) {
    await app.register(cors, { origin: corsOrigin(config.corsOrigins), methods: ['GET', 'POST'], maxAge: 600 });
  }
  // Before auth: its hooks mark upgrade requests, so that a refused handshake's socket is closed.
  const hub = new RealtimeHub({ config, pipeline, gallery: deps.gallery, defaultThreshold, metrics });
  app.decorate('realtime', hub);
  await app.register(websocket, {
    options: { maxPayload: config.ws.maxMessageBytes },
    preClose: () => hub.shutdown(),
  });
  // @fastify/websocket upgrades a handshake on any GET route (and closes it at once where no socket
  // handler is): only the realtime paths take one, everywhere else the handshake is refused.
  app.addHook('onRequest', async (request) => {
    const upgrade = request.headers.upgrade?.toLowerCase() === 'websocket';
    if (upgrade && !(REALTIME_PATHS as readonly string[]).includes(request.routeOptions.url ?? '')) {
      throw new FaceRecogError('not_found', `WebSocket connections are accepted at ${REALTIME_PATHS[0]} only`);
    }
  });
  installAuth(app, new ApiKeys(config.auth.apiKeys));
  if (config.rateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      max: config.rateLimitPerMinute,
      timeWindow: MINUTE_MS,
      keyGenerator: (request) => request.apiKeyId ?? request.ip,
      allowList: (request) => !requiresKey(request),
      errorResponseBuilder: (_request, context) =>
        new FaceRecogError('rate_limited', `rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`, {
          retryAfterS: Math.ceil(context.ttl / 1000),
        }),
    });
  }

  await installOpenApi(app, deps.version ?? '0.0.0');

  await app.register(apiRoutes, {
    config,
    scheduler,
    pipeline,
    gallery: deps.gallery,
    defaultThreshold,
    health: { engine: deps.engine, gallery: deps.gallery, scheduler, matchThreshold: config.matchThreshold, startedAt },
  });
  await app.register(galleryImagesRoutes, { gallery: deps.gallery });
  await app.register(realtimeRoutes, { hub });
  await app.register(import('./web.js'));

  app.get('/metrics', { schema: await metricsDoc(metrics.registry) }, async (_request, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  return app;
}
