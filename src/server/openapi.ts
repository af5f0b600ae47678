// The OpenAPI document (generated from the route schemas) at /openapi.json and interactive docs at
// /docs, as FastAPI users expect. Both are open: they describe the API, they do not use it.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

const DESCRIPTION = [
  'Face detection and recognition for a visitor-management backend.',
  '',
  'Images are JSON strings: plain base64 or a `data:image/...;base64,` URL (JPEG, PNG, WebP; EXIF orientation applied).',
  'Coordinates are pixels of the image as displayed. Similarities are raw cosine values; `matched` = similarity >= threshold.',
  '',
  'Real-time camera frames: WebSocket `/ws/realtime` (alias `/ws/realtimetime`). Send `{"type":"frame","image":"...","id":1}`;',
  'receive `{"type":"results","id","faces","count","latency_ms"}`, `{"type":"dropped","ids":[...]}` for frames skipped because a newer one',
  'arrived while one was being processed, or `{"type":"error","code","message"}`.',
  '',
  'When API_KEYS is set, /api/*, /ws/* and /metrics need `Authorization: Bearer <key>` or `X-API-Key: <key>` (WebSocket also `?api_key=`).',
].join('\n');

export async function installOpenApi(app: FastifyInstance, version: string): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'face-recog', version, description: DESCRIPTION },
      tags: [
        { name: 'faces', description: 'Detection, features, recognition, verification' },
        { name: 'service', description: 'Health' },
      ],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
}
