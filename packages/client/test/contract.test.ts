// The client's types name exactly the fields the service documents in /openapi.json. Each list
// below is checked against its type by the compiler (`npm run typecheck -w packages/client`: a
// missing or extra field does not compile) and against the running service here, so a field
// renamed on either side fails one of the two.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing } from '../../../test/helpers/fixtures.js';
import type {
  DetectedFace,
  DetectResponse,
  ExtractFeaturesResponse,
  GalleryHealth,
  HealthResponse,
  ModelsHealth,
  RecognizedFace,
  RecognizeResponse,
  VerifyResponse,
} from '../src/index.js';
import { startService, type RunningService } from './helpers/service.js';

/** The field names of T, complete: the compiler rejects a missing or an extra one. */
const fieldsOf = <T>(fields: Record<keyof T, true>): string[] => Object.keys(fields).sort();

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
}

/** The object schema at `path` ("faces[]", "models", "" for the top level). */
function objectAt(schema: JsonSchema, path: string): JsonSchema {
  let current = schema;
  for (const step of path.split('.').filter(Boolean)) {
    const name = step.replace(/\[\]$/, '');
    current = current.properties![name];
    if (step.endsWith('[]')) current = current.items!;
    current = current.anyOf?.find((s) => s.type === 'object') ?? current;
  }
  return current;
}

const responses: { route: string; method: 'get' | 'post'; shapes: Record<string, string[]> }[] = [
  {
    route: '/api/v1/detect',
    method: 'post',
    shapes: {
      '': fieldsOf<DetectResponse>({ faces: true, count: true }),
      'faces[]': fieldsOf<DetectedFace>({ bbox: true, confidence: true, landmarks: true }),
    },
  },
  {
    route: '/api/v1/extract-features',
    method: 'post',
    shapes: {
      '': fieldsOf<ExtractFeaturesResponse>({ feature_vector: true, face_detected: true, dimension: true, model: true, bbox: true }),
    },
  },
  {
    route: '/api/v1/recognize',
    method: 'post',
    shapes: {
      '': fieldsOf<RecognizeResponse>({ visitor_id: true, confidence: true, matched: true, face_detected: true, threshold: true, faces: true }),
      'faces[]': fieldsOf<RecognizedFace>({ bbox: true, confidence: true, landmarks: true, visitor_id: true, similarity: true, matched: true }),
    },
  },
  {
    route: '/api/v1/verify',
    method: 'post',
    shapes: { '': fieldsOf<VerifyResponse>({ similarity: true, matched: true, threshold: true, face_detected: true }) },
  },
  {
    route: '/health',
    method: 'get',
    shapes: {
      '': fieldsOf<HealthResponse>({ status: true, reasons: true, models: true, gallery: true, queue: true, uptime_s: true }),
      models: fieldsOf<ModelsHealth>({ detector: true, recognizer: true, dimension: true, match_threshold: true }),
      gallery: fieldsOf<GalleryHealth>({
        database: true,
        syncing: true,
        faces: true,
        visitors: true,
        failed: true,
        model: true,
        last_sync_at: true,
        error: true,
      }),
    },
  },
];

describe.skipIf(fixturesMissing)('client types match the service OpenAPI document', () => {
  let service: RunningService;
  let paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { schema: JsonSchema }> }> }>>;

  beforeAll(async () => {
    service = await startService();
    paths = ((await (await fetch(`${service.url}/openapi.json`)).json()) as { paths: typeof paths }).paths;
  });
  afterAll(() => service?.close());

  for (const { route, method, shapes } of responses) {
    for (const [path, fields] of Object.entries(shapes)) {
      it(`${method.toUpperCase()} ${route} ${path || 'response'}`, () => {
        const schema = paths[route][method].responses['200'].content['application/json'].schema;
        expect(Object.keys(objectAt(schema, path).properties ?? {}).sort()).toEqual(fields);
      });
    }
  }
});
