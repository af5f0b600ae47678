// The service's request and response shapes: the integration guide's types, completed with the
// fields the service actually answers (see the service's /openapi.json).

/** [x, y, width, height] in pixels of the image as displayed (EXIF orientation applied). */
export type BBox = [number, number, number, number];

/** [x, y] in pixels. */
export type Point = [number, number];

/** Five points: right eye, left eye, nose tip, right mouth corner, left mouth corner. */
export type Landmarks = [Point, Point, Point, Point, Point];

/**
 * An image: plain base64, a `data:image/...;base64,` URL, raw bytes (Uint8Array, Node Buffer,
 * ArrayBuffer) or a Blob/File. JPEG, PNG or WebP.
 */
export type ImageInput = string | Uint8Array | ArrayBuffer | Blob;

/** Per-request detection settings; unset ones take the service's defaults. */
export interface DetectOptions {
  /** The longer image side is scaled to this many pixels before detection (32..4096). */
  detect_size?: number;
  /** Minimum detector score, 0..1. */
  score_threshold?: number;
  /** Overlap above which boxes merge, 0..1. */
  nms_threshold?: number;
}

export interface DetectRequest extends DetectOptions {
  /** base64 encoded image */
  image: string;
}

export interface DetectedFace {
  bbox: BBox;
  /** Detector score, 0..1. */
  confidence: number;
  landmarks: Landmarks;
}

export interface DetectResponse {
  faces: DetectedFace[];
  count: number;
}

export type ExtractFeaturesRequest = DetectRequest;

export interface ExtractFeaturesResponse {
  /** L2-normalised embedding of the most confident face; null when no face. */
  feature_vector: number[] | null;
  face_detected: boolean;
  /** The recognizer's embedding size (SFace 128, MobileFaceNet 128). */
  dimension: number;
  /** The recognizer that produced the vector. */
  model: string;
  bbox: BBox | null;
}

export interface RecognizeRequest extends DetectOptions {
  /** base64 encoded image */
  image: string;
  /** Cosine similarity at or above which a face matches, in [-1, 1]. Default: the service's. */
  threshold?: number;
}

export interface RecognizedFace extends DetectedFace {
  /** The matched visitor; null unless matched. */
  visitor_id: string | null;
  /** Cosine similarity to the best visitor (raw, may be negative); null with an empty gallery. */
  similarity: number | null;
  /** similarity >= threshold */
  matched: boolean;
}

export interface RecognizeResponse {
  /** The best visitor for the most confident face, only when matched. */
  visitor_id: string | null;
  /** Cosine similarity of that visitor; null when no face or an empty gallery. */
  confidence: number | null;
  matched: boolean;
  face_detected: boolean;
  /** The threshold applied. */
  threshold: number;
  /** Every detected face, most confident first. */
  faces: RecognizedFace[];
}

export interface VerifyRequest {
  image1: string;
  image2: string;
  threshold?: number;
}

export interface VerifyResponse {
  /** Cosine similarity of the most confident face of each image; null when either has none. */
  similarity: number | null;
  matched: boolean;
  threshold: number;
  face_detected: [boolean, boolean];
}

export interface GalleryHealth {
  database: string;
  /** A reconcile with the visitor tables is under way. */
  syncing: boolean;
  /** Cached face embeddings searchable now. */
  faces: number;
  visitors: number;
  /** Stored images skipped because they cannot be decoded or show no face. */
  failed: number;
  model: string;
  last_sync_at: string | null;
  error: string | null;
}

export interface ModelsHealth {
  detector: string;
  recognizer: string;
  dimension: number;
  /** The threshold applied when a request gives none. */
  match_threshold: number;
}

export interface HealthResponse {
  status: 'ok' | 'starting' | 'degraded';
  /** What is not ready; empty when ok. */
  reasons: string[];
  /** null while the models load. */
  models: ModelsHealth | null;
  /** null while the gallery starts. */
  gallery: GalleryHealth | null;
  queue: { running: number; waiting: number; background: number };
  uptime_s: number;
}

/** Error codes the service sends; other strings may appear in newer versions. */
export type ApiErrorCode =
  | 'invalid_request'
  | 'invalid_image'
  | 'unauthorized'
  | 'not_found'
  | 'payload_too_large'
  | 'image_too_large'
  | 'too_many_faces'
  | 'rate_limited'
  | 'overloaded'
  | 'timeout'
  | 'gallery_unavailable'
  | 'not_ready'
  | 'model_unavailable'
  | 'model_checksum_mismatch'
  | 'internal'
  | (string & {});

export interface ErrorResponse {
  error: { code: ApiErrorCode; message: string };
}

export type FrameId = string | number;

/** Client → service on /ws/realtime. */
export interface RealtimeFrame {
  type: 'frame';
  image: string;
  id?: FrameId;
}

export interface RealtimeResults {
  type: 'results';
  id: FrameId;
  faces: RecognizedFace[];
  count: number;
  /** Time the service took from receiving the frame to answering, in ms. */
  latency_ms: number;
}

export interface RealtimeDropped {
  type: 'dropped';
  ids: FrameId[];
}

export interface RealtimeErrorMessage {
  type: 'error';
  code: ApiErrorCode;
  message: string;
  id?: FrameId;
}

/** Service → client on /ws/realtime. */
export type RealtimeMessage = RealtimeResults | RealtimeDropped | RealtimeErrorMessage;
