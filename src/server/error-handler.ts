// The one place errors become answers. `contractError` decides what any error means to a client
// (a code, its status, a message, for overload and unavailability a retry hint), for HTTP and the
// WebSocket alike; over HTTP that is `{ error: { code, message } }` with the code's status and
// Retry-After. Nothing of a stack or a request body leaves here.
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ERROR_STATUS, FaceRecogError, type ErrorCode } from '../errors.js';

export function errorBody(code: ErrorCode, message: string): { error: { code: ErrorCode; message: string } } {
  return { error: { code, message } };
}

export function sendError(reply: FastifyReply, error: FaceRecogError): FastifyReply {
  if (error.retryAfterS !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(error.retryAfterS))));
  // Serialised directly: a route's schema for this status (e.g. /health's 503) describes its own answers, not errors.
  return reply
    .code(error.status)
    .type('application/json; charset=utf-8')
    .serializer(JSON.stringify)
    .send(errorBody(error.code, error.message));
}

/** "body/threshold must be <= 1" → "threshold must be <= 1"; messages name fields, never values. */
function validationMessage(error: FastifyError): string {
  return error.message.replace(/^body\//, '').replace(/^body /, 'request body ');
}

const internal = (): FaceRecogError => new FaceRecogError('internal', 'internal error; the service logged the details');

/** Fastify's own errors (parsing, limits) as contract errors; their messages are fixed strings. */
function fromFastifyError(error: Partial<FastifyError>): FaceRecogError {
  if (error.validation) return new FaceRecogError('invalid_request', validationMessage(error as FastifyError));
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new FaceRecogError('payload_too_large', 'request body is larger than this endpoint accepts (see MAX_IMAGE_BYTES)');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new FaceRecogError('invalid_request', 'send the request body as JSON with Content-Type: application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new FaceRecogError('invalid_request', 'request body is not valid JSON');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new FaceRecogError('invalid_request', 'request body is empty; send a JSON object');
    case 'FST_ERR_BAD_URL':
      return new FaceRecogError('invalid_request', 'the request URL is not valid (a malformed %-escape)');
  }
  const status = error.statusCode ?? 500;
  if (status === 413) return new FaceRecogError('payload_too_large', error.message ?? 'payload too large');
  if (status === 404) return new FaceRecogError('not_found', error.message ?? 'not found');
  if (status >= 400 && status < 500) return new FaceRecogError('invalid_request', error.message ?? 'invalid request');
  return internal();
}

/**
 * What any error means to a client: a FaceRecogError as it is, Fastify's own by their code, and
 * anything else `internal` with a plain message (its cause stays in the log).
 */
export function contractError(error: unknown): FaceRecogError {
  if (error instanceof FaceRecogError) return error;
  if (typeof error === 'object' && error !== null) return fromFastifyError(error as Partial<FastifyError>);
  return internal();
}

/** `contractError(error)`, logged: a server fault with its cause and stack, anything else as one line. */
export function answerFor(error: unknown, log: FastifyBaseLogger, what: string): FaceRecogError {
  const answer = contractError(error);
  if (ERROR_STATUS[answer.code] === 500) log.error({ err: error }, what);
  else log.info({ code: answer.code }, answer.message);
  return answer;
}

/** Any error to its contract answer (also Fastify's `frameworkErrors`, before any plugin runs). */
export function handleError(raw: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(reply, answerFor(raw, request.log, 'request failed'));
}

// A path is quoted in a message only this far: messages are logged, and a path can be 16 KB of anything.
const MAX_QUOTED_PATH = 100;

/** Every error and every unknown route, answered in the contract's shape, for the whole app. */
export const errorHandling = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler(handleError);
    app.setNotFoundHandler((request, reply) => {
      const path = request.url.split('?')[0];
      const shown = path.length > MAX_QUOTED_PATH ? `${path.slice(0, MAX_QUOTED_PATH)}...` : path;
      return sendError(reply, new FaceRecogError('not_found', `no route ${request.method} ${shown}`));
    });
  },
  { name: 'face-recog-errors', fastify: '5.x' },
);
