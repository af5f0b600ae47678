// The HTTP + WebSocket app, one plugin per concern. Each plugin declares the plugins it needs
// registered before it (`dependencies`), so Fastify refuses to start when the order below is
// broken: errors first (everything throws to them), then what every request passes through
// (lifecycle, the docs that collect routes, metrics), CORS, the realtime socket (whose transport
// marks upgrades before auth may refuse them), auth, rate limits (per key), and the routes.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { auth } from './auth.js';
import { corsPolicy } from './cors.js';
import { errorHandling, handleError } from './error-handler.js';
import { galleryImagesRoutes } from './gallery-images.js';
import { lifecycle } from './lifecycle.js';
import { requestId } from './logging.js';
import { metricsRoute } from './metrics-route.js';
import { openApi } from './openapi.js';
import type { ServiceParts } from './parts.js';
import { rateLimits } from './rate-limit.js';
import { realtime, type OpenConnectionStage } from './realtime.js';
import { apiRoutes } from './routes.js';
import { webRoutes } from './web.js';

export interface AppOptions {
  /** A pino logger (see logging.ts: it redacts keys and images). */
  logger: FastifyBaseLogger;
  /** Shown in the OpenAPI document. */
  version: string;
  /** Per-connection work on realtime results: tracking (realtime.ts, ConnectionStage). */
  openConnectionStage: OpenConnectionStage;
}

/** The app over the service's parts; its plugins load on `ready()` or `listen()`. */
export function buildApp(parts: ServiceParts, options: AppOptions): FastifyInstance {
  const { config } = parts;
  const app = Fastify({
    loggerInstance: options.logger,
    genReqId: requestId,
    // Types are checked as sent: "0.5" is not a threshold, 123 is not an image.
    ajv: { customOptions: { coerceTypes: false } },
    // Requests arriving during shutdown get the contract's error shape (lifecycle.ts), not Fastify's.
    return503OnClosing: false,
    // So do requests the router cannot parse (a malformed %-escape in the path).
    frameworkErrors: handleError,
  });
  app.register(errorHandling);
  app.register(lifecycle, { parts });
  app.register(openApi, { version: options.version });
  app.register(metricsRoute, { metrics: parts.metrics });
  app.register(corsPolicy, { origins: config.corsOrigins });
  app.register(realtime, { parts, openStage: options.openConnectionStage });
  app.register(auth, { apiKeys: config.auth.apiKeys });
  app.register(rateLimits, { perMinute: config.rateLimitPerMinute });
  app.register(apiRoutes, { parts });
  app.register(galleryImagesRoutes, { parts });
  app.register(webRoutes);
  return app;
}
