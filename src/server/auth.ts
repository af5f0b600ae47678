// API keys (API_KEYS). /api/*, /ws/* and /metrics need one when keys are configured; /health,
// /docs and /openapi.json stay open so that probes and people can find their way.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { FaceRecogError } from '../errors.js';
import { sendError } from './error-handler.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Which configured key the request presented ("key1", "key2", ...), never the key itself. */
    apiKeyId: string | null;
  }
}

const PROTECTED = /^\/(api|ws)\/|^\/metrics(\/|\?|$)/;

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /**
   * The id of the configured key equal to `presented`, or null. Compares fixed-length digests with
   * timingSafeEqual against every key, so the time taken says nothing about how close a guess was.
   */
  identify(presented: string | undefined): string | null {
    if (presented === undefined || presented === '') return null;
    const candidate = digest(presented);
    let found: string | null = null;
    this.digests.forEach((known, i) => {
      if (timingSafeEqual(known, candidate)) found = `key${i + 1}`;
    });
    return found;
  }
}

/**
 * The path of the route that answers the request, else the path as sent. The router decodes
 * %-escapes, so "/%61pi/v1/detect" is answered by /api/v1/detect: deciding by the raw URL alone
 * would let it through without a key.
 */
function answeringPath(request: FastifyRequest): string {
  return request.routeOptions.url ?? request.url;
}

/** The key a request presents: Authorization: Bearer, X-API-Key, or (WebSocket only) ?api_key=. */
export function presentedKey(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization;
  const bearer = authorization && /^Bearer\s+(.+)$/i.exec(authorization.trim());
  if (bearer) return bearer[1].trim();
  const header = request.headers['x-api-key'];
  if (typeof header === 'string') return header.trim();
  if (answeringPath(request).startsWith('/ws/')) {
    const query = request.query as Record<string, unknown> | undefined;
    if (typeof query?.api_key === 'string') return query.api_key;
  }
  return undefined;
}

/** Protected when the answering route is, or when the path as sent names a protected place (unknown /api/... routes too). */
export function requiresKey(request: FastifyRequest): boolean {
  return PROTECTED.test(answeringPath(request)) || PROTECTED.test(request.url);
}

export const auth = fp(
  async (app: FastifyInstance, { apiKeys }: { apiKeys: readonly string[] }) => {
    const keys = new ApiKeys(apiKeys);
    app.decorateRequest('apiKeyId', null);
    if (!keys.enabled) return;
    app.addHook('onRequest', async (request, reply) => {
      if (!requiresKey(request)) return;
      request.apiKeyId = keys.identify(presentedKey(request));
      if (request.apiKeyId !== null) return;
      reply.header('www-authenticate', 'Bearer realm="face-recog"');
      const message = presentedKey(request) === undefined
        ? 'an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>'
        : 'the API key is not valid';
      return sendError(reply, new FaceRecogError('unauthorized', message));
    });
  },
  {
    name: 'face-recog-auth',
    fastify: '5.x',
    // Their hooks run first: CORS answers preflights (no credentials), and @fastify/websocket marks
    // upgrade requests, so that the socket of a refused handshake is closed, not left open.
    dependencies: ['face-recog-cors', '@fastify/websocket'],
  },
);
