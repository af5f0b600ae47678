// Request and response shapes of CONTRACT.md. Fastify validates requests against them, serialises
// answers through them, and the OpenAPI document at /openapi.json is generated from them.
import { Type, type Static } from 'typebox';

const Image = Type.String({
  description: 'The image: plain base64 (standard or URL-safe) or a data:image/...;base64, URL. JPEG, PNG or WebP.',
  minLength: 1,
});

const Threshold = Type.Optional(
  Type.Union([Type.Number({ minimum: -1, maximum: 1 }), Type.Null()], {
    description: "Cosine similarity at or above which a face matches, in [-1, 1]. Default: MATCH_THRESHOLD or the recognizer's own.",
  }),
);

const DetectFields = {
  detect_size: Type.Optional(
    // Capped per request: small images are scaled up to it, and 4096 cost 1.8 GB (docs/reliability.md).
    Type.Integer({
      minimum: 32,
      maximum: 1280,
      description:
        "One detection pass with the longer image side scaled to this many pixels, as OpenCV's FaceDetectorYN with that input size (at most 1280 per request). Unset: faces of every size, from passes at DETECT_SIZE and below.",
    }),
  ),
  auto_rotate: Type.Optional(
    Type.Boolean({
      description:
        'When no upright face is confidently found, also search the image turned by 90, 180 and 270 degrees (photos whose EXIF orientation was lost) and keep the most confident orientation. Coordinates stay those of the image as sent. Default false.',
    }),
  ),
  score_threshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Minimum detector score (default DETECT_SCORE).' })),
  nms_threshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Overlap above which boxes merge (default DETECT_NMS).' })),
};

export const DetectRequest = Type.Object({ image: Image, ...DetectFields });
export const ExtractRequest = DetectRequest;
export const RecognizeRequest = Type.Object({ image: Image, threshold: Threshold, ...DetectFields });
export const VerifyRequest = Type.Object({ image1: Image, image2: Image, threshold: Threshold });

export type DetectBody = Static<typeof DetectRequest>;
export type RecognizeBody = Static<typeof RecognizeRequest>;
export type VerifyBody = Static<typeof VerifyRequest>;

const Box = Type.Array(Type.Number(), {
  minItems: 4,
  maxItems: 4,
  description: '[x, y, width, height] in pixels of the image as displayed (EXIF orientation applied)',
});
const Landmarks = Type.Array(Type.Array(Type.Number(), { minItems: 2, maxItems: 2 }), {
  description: 'Five [x, y] points: right eye, left eye, nose tip, right mouth corner, left mouth corner',
});
const NullableNumber = (description: string) => Type.Union([Type.Number(), Type.Null()], { description });
const NullableString = (description: string) => Type.Union([Type.String(), Type.Null()], { description });

const DetectedFace = Type.Object({
  bbox: Box,
  confidence: Type.Number({ description: 'Detector score, 0..1' }),
  landmarks: Landmarks,
});

export const RecognizedFace = Type.Object({
  bbox: Box,
  confidence: Type.Number({ description: 'Detector score, 0..1' }),
  landmarks: Landmarks,
  visitor_id: NullableString('The matched visitor; null unless matched'),
  similarity: NullableNumber('Cosine similarity to the best visitor (raw, may be negative); null when the gallery is empty or the face is beyond MAX_FACES'),
  matched: Type.Boolean({ description: 'similarity >= threshold' }),
});

export const DetectResponse = Type.Object({ faces: Type.Array(DetectedFace), count: Type.Integer() });

export const ExtractResponse = Type.Object({
  feature_vector: Type.Union([Type.Array(Type.Number()), Type.Null()], {
    description: 'L2-normalised embedding of the most confident face; null when no face',
  }),
  face_detected: Type.Boolean(),
  dimension: Type.Integer({ description: "The recognizer's embedding size" }),
  model: Type.String({ description: 'The recognizer that produced the vector' }),
  bbox: Type.Union([Box, Type.Null()]),
});

export const RecognizeResponse = Type.Object({
  visitor_id: NullableString('The best visitor for the most confident face, only when matched'),
  confidence: NullableNumber('Cosine similarity of that visitor; null when no face or an empty gallery'),
  matched: Type.Boolean(),
  face_detected: Type.Boolean(),
  threshold: Type.Number({ description: 'The threshold applied' }),
  faces: Type.Array(RecognizedFace, { description: 'Every detected face, most confident first' }),
});

export const VerifyResponse = Type.Object({
  similarity: NullableNumber('Cosine similarity of the most confident face of each image; null when either has none'),
  matched: Type.Boolean(),
  threshold: Type.Number(),
  face_detected: Type.Array(Type.Boolean(), { minItems: 2, maxItems: 2 }),
});

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable machine-readable code, e.g. invalid_image' }),
      message: Type.String({ description: 'What went wrong, for a person' }),
    }),
  },
  { description: 'Every error: 400, 401, 404, 413, 429, 500, 503 (429/503 carry Retry-After)' },
);

export const HealthResponse = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('starting'), Type.Literal('degraded')]),
    reasons: Type.Array(Type.String(), { description: 'What is not ready; empty when ok' }),
    models: Type.Union([
      Type.Object({ detector: Type.String(), recognizer: Type.String(), dimension: Type.Integer(), match_threshold: Type.Number() }),
      Type.Null(),
    ]),
    gallery: Type.Union([
      Type.Object({
        database: Type.String(),
        syncing: Type.Boolean(),
        faces: Type.Integer(),
        visitors: Type.Integer(),
        failed: Type.Integer(),
        model: Type.String(),
        last_sync_at: Type.Union([Type.String(), Type.Null()]),
        error: Type.Union([Type.String(), Type.Null()]),
      }),
      Type.Null(),
    ]),
    queue: Type.Object({ running: Type.Integer(), waiting: Type.Integer(), background: Type.Integer() }),
    uptime_s: Type.Number(),
  },
  { description: '200 when models are loaded and the database answers; 503 otherwise' },
);
export type HealthBody = Static<typeof HealthResponse>;
