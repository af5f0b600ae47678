// The one place errors become answers: `{ error: { code, message } }` with the code's status and,
// for overload and unavailability, Retry-After. Nothing of a stack or a request body leaves here.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
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

/** Fastify's own errors (parsing, limits) as contract errors; their messages are fixed strings. */
function fromFastifyError(error: FastifyError): FaceRecogError {
  if (error.validation) return new FaceRecogError('invalid_request', validationMessage(error));
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
  if (status === 413) return new FaceRecogError('payload_too_large', error.message);
  if (status === 404) return new FaceRecogError('not_found', error.message);
  if (status >= 400 && status < 500) return new FaceRecogError('invalid_request', error.message);
  return new FaceRecogError('internal', 'internal error; the service logged the details');
}

function isServerFault(error: FaceRecogError): boolean {
  return ERROR_STATUS[error.code] === 500;
}

/** Any error to its contract answer; server faults are logged with their cause. */
export function handleError(raw: FastifyError | FaceRecogError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const error = raw instanceof FaceRecogError ? raw : fromFastifyError(raw);
  if (isServerFault(error)) {
    // The log gets the cause with its stack; the client gets the code and a plain message.
    request.log.error({ err: raw }, 'request failed');
  } else {
    request.log.info({ code: error.code }, error.message);
  }
  return sendError(reply, error);
}

// A path is quoted in a message only this far: messages are logged, and a path can be 16 KB of anything.
const MAX_QUOTED_PATH = 100;

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler(handleError);

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    const shown = path.length > MAX_QUOTED_PATH ? `${path.slice(0, MAX_QUOTED_PATH)}...` : path;
    return sendError(reply, new FaceRecogError('not_found', `no route ${request.method} ${shown}`));
  });
}
