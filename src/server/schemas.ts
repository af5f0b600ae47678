// Request and response shapes of CONTRACT.md: the one source of truth for them. Fastify validates
// requests against them and serialises answers through them, the OpenAPI document at /openapi.json
// is generated from them, and so are the typed client's types (tools/client-types.ts writes every
// schema exported here to packages/client/src/api-types.ts; a test fails when that file is stale).
// A `title` names a nested shape in the client's types.
import { Type, type Static } from 'typebox';
import { DEFAULT_IMAGES_LIMIT, MAX_IMAGES_LIMIT } from '../gallery/images.js';
import { IDENTITY_RULE } from './tracking/identity.js';

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
export const ExtractFeaturesRequest = DetectRequest;
export const RecognizeRequest = Type.Object({ image: Image, threshold: Threshold, ...DetectFields });
export const VerifyRequest = Type.Object({ image1: Image, image2: Image, threshold: Threshold });

export type DetectBody = Static<typeof DetectRequest>;
export type RecognizeBody = Static<typeof RecognizeRequest>;
export type VerifyBody = Static<typeof VerifyRequest>;

const Box = Type.Array(Type.Number(), {
  title: 'BBox',
  minItems: 4,
  maxItems: 4,
  description: '[x, y, width, height] in pixels of the image as displayed (EXIF orientation applied)',
});
const Point = Type.Array(Type.Number(), { title: 'Point', minItems: 2, maxItems: 2, description: '[x, y] in pixels' });
const Landmarks = Type.Array(Point, {
  title: 'Landmarks',
  minItems: 5,
  maxItems: 5,
  description: 'Five [x, y] points: right eye, left eye, nose tip, right mouth corner, left mouth corner',
});
const NullableNumber = (description: string) => Type.Union([Type.Number(), Type.Null()], { description });
const NullableString = (description: string) => Type.Union([Type.String(), Type.Null()], { description });
const DetectorScore = Type.Number({ description: 'Detector score, 0..1' });
// Its values are the codes of src/errors.ts (the client's types list them).
const ErrorCode = Type.String({ title: 'ApiErrorCode', description: 'Stable machine-readable code, e.g. invalid_image' });

const DetectedFace = Type.Object({ bbox: Box, confidence: DetectorScore, landmarks: Landmarks }, { title: 'DetectedFace' });

/** A face in a recognition answer (recognize, WebSocket): `confidence` is the match, as the guide reads it. */
const RecognizedFace = Type.Object(
  {
    bbox: Box,
    landmarks: Landmarks,
    detection_confidence: DetectorScore,
    confidence: NullableNumber(
      'Cosine similarity to the best visitor, in [-1, 1]; null when the gallery is empty or the face was not embedded (beyond MAX_FACES)',
    ),
    visitor_id: NullableString('The matched visitor; null unless matched'),
    matched: Type.Boolean({ description: 'confidence >= threshold' }),
  },
  { title: 'RecognizedFace' },
);
export type RecognizedFaceBody = Static<typeof RecognizedFace>;

export const DetectResponse = Type.Object({ faces: Type.Array(DetectedFace), count: Type.Integer() });

export const ExtractFeaturesResponse = Type.Object({
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
  confidence: NullableNumber('Cosine similarity of that visitor, in [-1, 1]; null when no face or an empty gallery'),
  matched: Type.Boolean(),
  face_detected: Type.Boolean(),
  threshold: Type.Number({ description: 'The threshold applied' }),
  faces: Type.Array(RecognizedFace, { description: 'Every detected face, most confident first' }),
});

export const VerifyResponse = Type.Object({
  similarity: NullableNumber('Cosine similarity of the most confident face of each image, in [-1, 1]; null when either has none'),
  matched: Type.Boolean(),
  threshold: Type.Number(),
  face_detected: Type.Array(Type.Boolean(), { minItems: 2, maxItems: 2 }),
});

// WebSocket /ws/realtime. Every message the service sends carries `faces` and `count` (CONTRACT.md):
// the guide's client reads `result.faces` of every message it gets.
const FrameId = Type.Union([Type.String({ maxLength: 128 }), Type.Number()], {
  title: 'FrameId',
  description: "The frame's id as the client sent it; frames sent without one are numbered per connection from 1",
});

/** A face in a realtime answer: as in recognize, plus the track it belongs to; its identity is the track's. */
const RealtimeFace = Type.Object(
  {
    ...RecognizedFace.properties,
    confidence: NullableNumber(
      "Named track: the track's mean similarity to its visitor. Otherwise this frame's similarity to the best visitor, in [-1, 1]; null when the gallery is empty or the face was not embedded (beyond MAX_FACES)",
    ),
    visitor_id: NullableString("The visitor the track's frames name; null until they do"),
    matched: Type.Boolean({
      description: `The track's frames name a visitor: ${IDENTITY_RULE.votes} of its last ${IDENTITY_RULE.window} at or above the threshold, their mean ${IDENTITY_RULE.margin} above it`,
    }),
    track_id: Type.String({ description: 'The same while the face stays in view of this connection; a new one for a new person or the same one back' }),
  },
  { title: 'RealtimeFace' },
);
export type RealtimeFaceBody = Static<typeof RealtimeFace>;

const NO_FACES = { faces: Type.Array(RealtimeFace, { maxItems: 0 }), count: Type.Literal(0) };

/** The longest `?camera=` name. */
export const MAX_CAMERA_NAME = 64;

export const RealtimeQuery = Type.Object({
  camera: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: MAX_CAMERA_NAME,
      // No control or invisible formatting characters: the name is logged, shown and sent in events.
      pattern: '^[^\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\ufeff]+$',
      description: `Names the camera; events carry it, and a visitor's arrival is announced once per visit per camera name. 1 to ${MAX_CAMERA_NAME} printable characters. Unset: the connection is a camera of its own`,
    }),
  ),
  api_key: Type.Optional(Type.String({ description: 'The API key, for WebSocket clients that cannot set headers' })),
});

export const RealtimeFrame = Type.Object(
  { type: Type.Literal('frame'), image: Image, id: Type.Optional(FrameId) },
  { description: 'Client to service: a camera frame to recognise' },
);

export const RealtimeResults = Type.Object(
  {
    type: Type.Literal('results'),
    id: FrameId,
    faces: Type.Array(RealtimeFace, { description: 'Every detected face, most confident first' }),
    count: Type.Integer({ description: 'faces.length' }),
    latency_ms: Type.Number({ description: 'From receiving the frame to answering it' }),
  },
  { description: 'The answer to a frame' },
);

export const RealtimeDropped = Type.Object(
  { type: Type.Literal('dropped'), ids: Type.Array(FrameId), ...NO_FACES },
  { description: 'Frames skipped unanswered: a newer frame arrived while they waited (or the service shut down)' },
);

export const RealtimeErrorMessage = Type.Object(
  {
    type: Type.Literal('error'),
    code: ErrorCode,
    message: Type.String({ description: 'What went wrong, for a person' }),
    id: Type.Optional(FrameId),
    ...NO_FACES,
  },
  { description: 'A message or frame the service could not use; the connection stays open' },
);

export const RealtimeEvent = Type.Object(
  {
    type: Type.Literal('event'),
    event: Type.Literal('arrived'),
    visitor_id: Type.String({ description: 'The visitor the track was named' }),
    track_id: Type.String({ description: "The track of the visitor's face, as in results" }),
    camera: NullableString("The connection's ?camera=; null when it gave none"),
    confidence: Type.Number({ description: "The track's mean similarity to the visitor when it was named" }),
    at: Type.String({ format: 'date-time', description: 'When the frame that named the track arrived' }),
    ...NO_FACES,
  },
  {
    description: `A visitor arrived: a track was named, and the visitor had not been in view of this camera for EVENT_COOLDOWN_S. Sent on the socket before that frame's results, and POSTed to WEBHOOK_URL`,
  },
);

export const RealtimeMessage = Type.Union([RealtimeResults, RealtimeEvent, RealtimeDropped, RealtimeErrorMessage], {
  description: 'Service to client: every message carries `faces` and `count`',
});
export type RealtimeMessageBody = Static<typeof RealtimeMessage>;

// GET /api/v1/gallery/images (CONTRACT.md): what became of each stored visitor image, so that the
// backend can ask a visitor for a better photo.
const Reason = Type.Union([
  Type.Literal('invalid_image'),
  Type.Literal('no_face'),
  Type.Literal('several_faces'),
  Type.Literal('face_too_small'),
  Type.Literal('unsupported_column'),
], { title: 'ImageReason' });

export const GalleryImagesQuery = Type.Object({
  status: Type.Optional(
    Type.Union([Type.Literal('ok'), Type.Literal('failed'), ...Reason.anyOf], { description: 'ok (enrolled), failed (not enrolled), or one reason' }),
  ),
  visitor_id: Type.Optional(Type.String({ minLength: 1, maxLength: 1024, description: 'Only this visitor\'s images' })),
  // Query strings are text and the app does not coerce types: the pattern is the range 1..1000.
  limit: Type.Optional(Type.String({ pattern: `^(?:[1-9][0-9]{0,2}|${MAX_IMAGES_LIMIT})$`, description: `Images per page, 1 to ${MAX_IMAGES_LIMIT} (default ${DEFAULT_IMAGES_LIMIT})` })),
  after: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$', description: 'The `next` cursor of the previous page' })),
});

export const GalleryImage = Type.Object({
  source: Type.Object({
    table: Type.Union([Type.Literal('visitors'), Type.Literal('visitor_images')]),
    key: Type.Union([Type.String(), Type.Null()], {
      description: "The row's primary key as text (a composite key as a JSON array), its ctid when it has none; null when the row changed since it was checked",
    }),
  }),
  visitor_id: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('failed')], { description: 'ok: enrolled (searchable); failed: not enrolled' }),
  reason: Type.Union([Reason, Type.Null()], {
    description: 'Why not enrolled, or several_faces when enrolled with the largest, most confident of several faces; null when enrolled cleanly',
  }),
  face: Type.Union([
    Type.Object({
      bbox: Box,
      detection_confidence: Type.Number({ description: 'Detector score, 0..1' }),
      rotated: Type.Integer({ description: 'Clockwise degrees (0, 90, 180, 270) the stored image was turned before its face was found' }),
    }),
    Type.Null(),
  ], { description: 'The enrolled face; null when not enrolled' }),
  checked_at: Type.String({ format: 'date-time', description: 'When this image was last extracted' }),
});

export const GalleryImagesResponse = Type.Object({
  images: Type.Array(GalleryImage),
  next: Type.Union([Type.String(), Type.Null()], { description: 'Cursor for `after`; null on the last page' }),
});

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: ErrorCode,
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
      Type.Object(
        { detector: Type.String(), recognizer: Type.String(), dimension: Type.Integer(), match_threshold: Type.Number() },
        { title: 'ModelsHealth' },
      ),
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
        problems: Type.Array(
          Type.Object({
            code: Type.String({ description: 'permission_denied, not_on_search_path (the gallery is unavailable until fixed), unsupported_column, unusable_table' }),
            table: Type.Union([Type.String(), Type.Null()], { description: 'schema.table concerned' }),
            message: Type.String(),
            sql: Type.Union([Type.String(), Type.Null()], { description: 'What a DBA runs to fix it' }),
          }),
          { description: 'What keeps the gallery from reading every stored image' },
        ),
        role: Type.Union([Type.Literal('extractor'), Type.Literal('follower'), Type.Null()], {
          description:
            'Replicas on one database: the extractor reconciles and extracts stored images, followers load what it extracted; null before this replica first asked',
        }),
      }, { title: 'GalleryHealth' }),
      Type.Null(),
    ]),
    queue: Type.Object({ running: Type.Integer(), waiting: Type.Integer(), background: Type.Integer() }),
    uptime_s: Type.Number(),
  },
  { description: '200 when models are loaded and the database answers; 503 otherwise' },
);
export type HealthBody = Static<typeof HealthResponse>;
