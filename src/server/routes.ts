// The HTTP API of CONTRACT.md: detect, extract-features (alias extract), recognize, verify, health.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifySchema, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { cosineSimilarity } from '../engine/embed.js';
import { FaceRecogError } from '../errors.js';
import { healthReport } from './health.js';
import { ROUTE_DEPENDENCIES } from './lifecycle.js';
import { SECURITY } from './openapi.js';
import { defaultThreshold, readyPipeline, type ServiceParts } from './parts.js';
import type { DetectParams } from './pipeline.js';
import { clampSimilarity, faceView, recognizeFaces } from './recognition.js';
import { Deadline } from './scheduler.js';
import {
  DetectRequest,
  DetectResponse,
  ErrorResponse,
  ExtractFeaturesRequest,
  ExtractFeaturesResponse,
  HealthResponse,
  RecognizeRequest,
  RecognizeResponse,
  VerifyRequest,
  VerifyResponse,
  type DetectBody,
} from './schemas.js';

// JSON quoting, field names and a data-URL prefix around the base64 text.
const BODY_OVERHEAD_BYTES = 64 * 1024;

const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);

/** Body limits that let through exactly the images MAX_IMAGE_BYTES allows. */
export function bodyLimits(maxImageBytes: number): { single: number; pair: number } {
  return {
    single: base64Length(maxImageBytes) + BODY_OVERHEAD_BYTES,
    pair: 2 * base64Length(maxImageBytes) + BODY_OVERHEAD_BYTES,
  };
}

function detectParams(body: DetectBody): DetectParams {
  return { detectSize: body.detect_size, scoreThreshold: body.score_threshold, nmsThreshold: body.nms_threshold, autoRotate: body.auto_rotate };
}

const errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };

async function routes(parent: FastifyInstance, { parts }: { parts: ServiceParts }): Promise<void> {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const { config, scheduler } = parts;
  const limits = bodyLimits(config.limits.maxImageBytes);
  // From the handler on (the body is read by then), the whole answer is due within
  // REQUEST_TIMEOUT_MS: the inference, the gallery search and its database confirmation.
  const deadline = () => new Deadline(config.inference.timeoutMs);

  // Refused before the body is read, so a flood of requests costs neither memory nor CPU.
  const admit: onRequestHookHandler = async () => {
    readyPipeline(parts);
    if (scheduler.saturated) {
      throw new FaceRecogError('overloaded', `the service is busy (${scheduler.depth()} requests waiting); retry later`, {
        retryAfterS: scheduler.retryAfterS,
      });
    }
  };
  const inference = <S extends FastifySchema>(summary: string, schema: S, bodyLimit: number) => ({
    onRequest: admit,
    bodyLimit,
    schema: { tags: ['faces'], summary, security: SECURITY, ...schema },
  });

  app.post(
    '/api/v1/detect',
    inference('Detect faces', { body: DetectRequest, response: { 200: DetectResponse, ...errors } }, limits.single),
    async (request) => {
      const faces = await readyPipeline(parts).detect(request.body.image, detectParams(request.body), deadline());
      return { faces: faces.map(faceView), count: faces.length };
    },
  );

  for (const [url, alias] of [['/api/v1/extract-features', false], ['/api/v1/extract', true]] as const) {
    app.post(
      url,
      inference(
        alias ? 'Extract features (alias of /api/v1/extract-features)' : 'Extract the feature vector of the most confident face',
        { body: ExtractFeaturesRequest, response: { 200: ExtractFeaturesResponse, ...errors }, deprecated: alias },
        limits.single,
      ),
      async (request) => {
        const current = readyPipeline(parts);
        const analysis = await current.analyze(request.body.image, detectParams(request.body), 1, deadline());
        const face = analysis.faces[0];
        return {
          feature_vector: face ? Array.from(analysis.embeddings[0]) : null,
          face_detected: face !== undefined,
          dimension: current.engine.recognizer.dimension,
          model: current.engine.recognizer.name,
          bbox: face ? faceView(face).bbox : null,
        };
      },
    );
  }

  app.post(
    '/api/v1/recognize',
    inference(
      'Recognize visitors: every face with its best visitor; top-level fields for the most confident face',
      { body: RecognizeRequest, response: { 200: RecognizeResponse, ...errors } },
      limits.single,
    ),
    async (request) => {
      const current = readyPipeline(parts);
      const threshold = request.body.threshold ?? defaultThreshold(parts, current);
      const due = deadline();
      const analysis = await current.analyze(request.body.image, detectParams(request.body), config.limits.maxFaces, due);
      const faces = await recognizeFaces(current, parts.gallery, analysis, threshold, due);
      const top = faces[0];
      return {
        visitor_id: top?.visitor_id ?? null,
        confidence: top?.confidence ?? null,
        matched: top?.matched ?? false,
        face_detected: top !== undefined,
        threshold,
        faces,
      };
    },
  );

  app.post(
    '/api/v1/verify',
    inference(
      'Verify: are the most confident faces of two images the same person?',
      { body: VerifyRequest, response: { 200: VerifyResponse, ...errors } },
      limits.pair,
    ),
    async (request) => {
      const current = readyPipeline(parts);
      const threshold = request.body.threshold ?? defaultThreshold(parts, current);
      const [first, second] = await current.analyzePair([request.body.image1, request.body.image2], deadline());
      const similarity = first && second ? clampSimilarity(cosineSimilarity(first.embedding, second.embedding)) : null;
      return {
        similarity,
        matched: similarity !== null && similarity >= threshold,
        threshold,
        face_detected: [first !== null, second !== null],
      };
    },
  );

  app.get(
    '/health',
    { schema: { tags: ['service'], summary: 'Service health', response: { 200: HealthResponse, 503: HealthResponse } } },
    async (_request, reply) => {
      const { statusCode, body } = healthReport(parts);
      return reply.code(statusCode).send(body);
    },
  );
}

export const apiRoutes = fp(routes, { name: 'face-recog-api', fastify: '5.x', encapsulate: true, dependencies: ROUTE_DEPENDENCIES });
