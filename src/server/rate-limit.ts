// RATE_LIMIT_PER_MINUTE: requests per minute per API key (per address when auth is off) on the
// protected routes, refused with 429 and Retry-After. One hook for the whole app rather than
// @fastify/rate-limit's per-route ones, so that it covers routes registered before it too (the
// realtime handshake registers its routes before auth, see realtime.ts).
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { FaceRecogError } from '../errors.js';
import { requiresKey } from './auth.js';

const MINUTE_MS = 60_000;

export const rateLimits = fp(
  async (app: FastifyInstance, { perMinute }: { perMinute: number }) => {
    if (perMinute === 0) return;
    await app.register(rateLimit, {
      global: false,
      max: perMinute,
      timeWindow: MINUTE_MS,
      keyGenerator: (request) => request.apiKeyId ?? request.ip,
      allowList: (request) => !requiresKey(request),
      errorResponseBuilder: (_request, context) =>
        new FaceRecogError('rate_limited', `rate limit of ${context.max} requests per minute exceeded; retry in ${context.after}`, {
          retryAfterS: Math.ceil(context.ttl / 1000),
        }),
    });
    app.addHook('onRequest', app.rateLimit());
  },
  {
    name: 'face-recog-rate-limit',
    fastify: '5.x',
    // Counted per key: auth's hook has identified it by then.
    dependencies: ['face-recog-auth'],
    decorators: { request: ['apiKeyId'] },
  },
);
