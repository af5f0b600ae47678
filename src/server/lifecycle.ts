// Every request's place in the service's life: its id echoed back, and once the service begins to
// shut down a 503 not_ready instead of an answer, with the connection ended, so that kept-alive
// sockets do not hold the shutdown open. The service says it is closing (ServiceParts.closing)
// before Fastify's own close begins: Fastify marks itself closing only after its async close hooks,
// and a request arriving in between would otherwise be served.
//
// libuv runs signal handlers after the rest of the I/O of the event-loop turn in which it sees
// them, so a SIGTERM that came with a request's bytes is handled just after the request is
// admitted. What the end of that turn says is therefore checked again before the handler; a request
// arriving any other time is refused, or not, before its body is read.
import { setImmediate as endOfTurn } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { FaceRecogError } from '../errors.js';
import type { ServiceParts } from './parts.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Whether the service was closing at the end of the event-loop turn in which the request arrived. */
    closingOnArrival: Promise<boolean> | null;
  }
}

function shuttingDown(): FaceRecogError {
  return new FaceRecogError('not_ready', 'the service is shutting down; retry shortly', { retryAfterS: 1 });
}

export const lifecycle = fp(
  async (app: FastifyInstance, { parts }: { parts: ServiceParts }) => {
    app.decorateRequest('closingOnArrival', null);
    app.addHook('onRequest', async (request, reply) => {
      reply.header('x-request-id', request.id);
      if (parts.closing) throw shuttingDown();
      request.closingOnArrival = endOfTurn().then(() => parts.closing);
    });
    app.addHook('preHandler', async (request) => {
      if (await request.closingOnArrival) throw shuttingDown();
    });
    app.addHook('onSend', async (_request, reply) => {
      if (parts.closing) reply.header('connection', 'close');
    });
  },
  // Its refusals are answered by the error handler.
  { name: 'face-recog-lifecycle', fastify: '5.x', dependencies: ['face-recog-errors'] },
);

/**
 * The plugins whose app-wide hooks an encapsulated route plugin needs in place before it is
 * registered (Fastify copies the hooks into a child context when it creates it): this one, the
 * metrics that count answers, the docs that collect routes, the realtime plugin's refusal of
 * handshakes elsewhere, and rate limits (which come after auth, which comes after CORS).
 */
export const ROUTE_DEPENDENCIES = ['face-recog-lifecycle', 'face-recog-metrics', 'face-recog-openapi', 'face-recog-realtime', 'face-recog-rate-limit'];
