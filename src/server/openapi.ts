// The OpenAPI document (generated from the route schemas) at /openapi.json and interactive docs at
// /docs, as FastAPI users expect. Both are open: they describe the API, they do not use it.
// OpenAPI has no words for a WebSocket's messages: the realtime route is documented as the GET
// that upgrades, its messages as schemas (from the same TypeBox schemas the socket is typed by).
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema } from 'fastify';
import fp from 'fastify-plugin';
import type { Registry } from 'prom-client';
import { ErrorResponse, RealtimeDropped, RealtimeErrorMessage, RealtimeEvent, RealtimeFrame, RealtimeMessage, RealtimeQuery, RealtimeResults } from './schemas.js';

const DESCRIPTION = [
  'Face detection and recognition for a visitor-management backend.',
  '',
  'Images are JSON strings: plain base64 or a `data:image/...;base64,` URL (JPEG, PNG, WebP; EXIF orientation applied).',
  'Coordinates are pixels of the image as displayed. Similarities are cosine values in [-1, 1]; `matched` = similarity >= threshold.',
  "In recognition answers (recognize, WebSocket) a face's `confidence` is its similarity to the best visitor and",
  "`detection_confidence` the detector's score; in detect answers `confidence` is the detector's score.",
  '',
  'Real-time camera frames: WebSocket `/ws/realtime` (alias `/ws/realtimetime`), see the `realtime` operation and the',
  '`Realtime*` schemas below.',
  '',
  'When API_KEYS is set, /api/*, /ws/* and /metrics need `Authorization: Bearer <key>` or `X-API-Key: <key>` (WebSocket also `?api_key=`).',
].join('\n');

export const SECURITY: Record<string, string[]>[] = [{ bearer: [] }, { apiKey: [] }];

// Shown in /docs under Schemas: what goes over the socket in each direction.
const MESSAGE_SCHEMAS = { RealtimeFrame, RealtimeResults, RealtimeEvent, RealtimeDropped, RealtimeErrorMessage };

const REALTIME_DESCRIPTION = [
  'Upgrades to a WebSocket for a camera feed. Messages are JSON text:',
  '',
  '| direction | message | schema |',
  '|---|---|---|',
  '| client → service | `{ "type": "frame", "image": "<base64>", "id"?: 1 }` | `RealtimeFrame` |',
  '| service → client | `{ "type": "results", "id", "faces": [...], "count", "latency_ms" }`: the answer to a frame; each face carries its `track_id` | `RealtimeResults` |',
  '| service → client | `{ "type": "event", "event": "arrived", "visitor_id", "track_id", "camera", "confidence", "at", "faces": [], "count": 0 }`: a visitor arrived (once per visit per camera) | `RealtimeEvent` |',
  '| service → client | `{ "type": "dropped", "ids": [...], "faces": [], "count": 0 }`: frames skipped because a newer one arrived, or the service is shutting down | `RealtimeDropped` |',
  '| service → client | `{ "type": "error", "code", "message", "id"?, "faces": [], "count": 0 }`: the connection stays open | `RealtimeErrorMessage` |',
  '',
  'Every message from the service carries `faces` (an array) and `count`. Faces are as in recognize plus `track_id`; a face is',
  "`matched` once its track's frames name a visitor, not by one frame alone. `?camera=` names the camera that events report. One frame is processed",
  'at a time per connection; of the frames that arrive meanwhile the newest waits and the others are reported as dropped.',
  'Frames without an `id` are numbered per connection from 1.',
].join('\n');

/** The realtime socket's route schema: its messages, its refusals. */
export function realtimeDoc(alias: boolean): FastifySchema {
  return {
    tags: ['realtime'],
    summary: alias ? 'Realtime camera frames (alias of /ws/realtime)' : 'Realtime camera frames (WebSocket)',
    description: REALTIME_DESCRIPTION,
    security: SECURITY,
    deprecated: alias,
    querystring: RealtimeQuery,
    response: {
      101: { description: 'Switching Protocols: the socket is open; the service sends these messages', content: { 'application/json': { schema: RealtimeMessage } } },
      400: ErrorResponse,
      401: ErrorResponse,
      503: ErrorResponse,
    },
  };
}

// Node.js process metrics that prom-client adds under the same prefix: named as a group, not one by one.
const PROCESS_METRICS = /^face_recog_(process|nodejs)_/;

/** The /metrics route schema: every metric of the service, as registered. */
export async function metricsDoc(registry: Registry): Promise<FastifySchema> {
  const own = (await registry.getMetricsAsJSON()).filter((metric) => !PROCESS_METRICS.test(metric.name));
  const description = [
    'Prometheus text exposition format. The service\'s metrics:',
    '',
    ...own.map((metric) => `- \`${metric.name}\` (${metric.type}): ${metric.help}`),
    '',
    'and the Node.js process metrics `face_recog_process_*`, `face_recog_nodejs_*`.',
  ].join('\n');
  return {
    tags: ['service'],
    summary: 'Prometheus metrics',
    description,
    security: SECURITY,
    response: { 200: { description: 'Metrics in Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
  };
}

/** /openapi.json and /docs. @fastify/swagger documents the routes registered after it: theirs depend on this plugin. */
export const openApi = fp(
  async (app: FastifyInstance, { version }: { version: string }) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'face-recog', version, description: DESCRIPTION },
        tags: [
          { name: 'faces', description: 'Detection, features, recognition, verification' },
          { name: 'realtime', description: 'Camera feeds over a WebSocket' },
          { name: 'service', description: 'Health and metrics' },
        ],
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer' },
            apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          },
          schemas: structuredClone(MESSAGE_SCHEMAS),
        },
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
    app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
  },
  { name: 'face-recog-openapi', fastify: '5.x' },
);
