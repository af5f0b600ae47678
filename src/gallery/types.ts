// What the gallery offers the server, and what it needs from it. The gallery never loads models:
// the server hands it an Extractor built on the engine.
import type { ImagePage, ImageQuery } from './images.js';
import type { TimeLimit } from './time-limit.js';

/** Why a stored image is not (or not cleanly) enrolled; the values of /api/v1/gallery/images `reason`. */
export type ImageReason = 'invalid_image' | 'no_face' | 'several_faces' | 'face_too_small' | 'unsupported_column';

/** Clockwise rotation (degrees) applied to the stored image, as displayed, before its face was found. */
export type Rotation = 0 | 90 | 180 | 270;

export interface ExtractedFace {
  /** L2-normalised embedding of the enrolled face. */
  embedding: Float32Array;
  /** [x, y, w, h] in pixels of the stored image as displayed (EXIF applied), NOT of the rotated copy. */
  box: [number, number, number, number];
  score: number;
  rotation: Rotation;
}

/**
 * ok: enrolled; `reason` is null, or 'several_faces' (the largest, most confident face was enrolled).
 * failed: not enrolled; reason is invalid_image, no_face or face_too_small; `message` is for people.
 */
export type ExtractResult =
  | { ok: true; face: ExtractedFace; reason: 'several_faces' | null }
  | { ok: false; reason: 'invalid_image' | 'no_face' | 'face_too_small'; message: string };

/**
 * Extracts the face to enrol from a stored image: a `string` (base64 or a data URL, from a text
 * column) or a `Buffer` (the encoded bytes, from a bytea column).
 */
export type Extractor = (storedImage: string | Buffer) => Promise<ExtractResult>;

export interface Match {
  visitorId: string;
  /** Cosine similarity of the query to this visitor's best image. */
  similarity: number;
}

/**
 * Something in the database keeping the gallery from reading every stored image. Blocking ones
 * (a missing permission, a visitor table off the search path) make the gallery unavailable until
 * fixed; `sql` is what a DBA runs to fix it.
 */
export interface GalleryProblem {
  code: 'permission_denied' | 'not_on_search_path' | 'unsupported_column' | 'unusable_table';
  /** schema.table concerned, when one is. */
  table: string | null;
  message: string;
  sql: string | null;
}

export interface GalleryStatus {
  /** The database answers. */
  database: 'up' | 'down';
  /** A reconcile is under way (initial or after a change). */
  syncing: boolean;
  /** Embeddings searchable now. */
  faces: number;
  visitors: number;
  /** Stored images not enrolled (undecodable, no usable face, unsupported column). */
  failed: number;
  /** Name of the recognizer whose features are cached. */
  model: string;
  lastSyncAt: string | null;
  /** Why the database is down or the last sync failed; null when healthy. */
  error: string | null;
  /** What keeps the gallery from reading every stored image; empty when nothing does. */
  problems: GalleryProblem[];
  /**
   * Among replicas on one database, one per model extracts (and watches the visitor tables), the
   * others follow its feature cache; null before this one first asked.
   */
  role: 'extractor' | 'follower' | null;
  /** Stored images this replica extracted since it started. */
  extractions: number;
}

export interface Gallery {
  /**
   * For each query embedding, the best visitor whose stored image is still present and unchanged
   * in the database at the time of the call, or null when the gallery is empty. No threshold is
   * applied here. Throws FaceRecogError('gallery_unavailable') when the database cannot confirm,
   * and FaceRecogError('timeout') once `limit` (the request's deadline) has passed: the index
   * search and the database's confirmation both run within it.
   */
  search(queries: Float32Array[], limit?: TimeLimit): Promise<(Match | null)[]>;
  /** What became of each stored image (GET /api/v1/gallery/images), one page at a time. */
  images(query: ImageQuery): Promise<ImagePage>;
  status(): GalleryStatus;
  close(): Promise<void>;
}
