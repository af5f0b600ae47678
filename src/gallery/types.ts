// What the gallery offers the server, and what it needs from it. The gallery never loads models:
// the server hands it an Extractor built on the engine.

export interface ExtractedFace {
  /** L2-normalised embedding of the image's most confident face. */
  embedding: Float32Array;
  box: [number, number, number, number];
  score: number;
}

/** Features of one stored image, or why it has none (undecodable, no face). */
export type ExtractResult = { ok: true; face: ExtractedFace } | { ok: false; reason: string };

/** Extracts the most confident face of a stored image (plain base64 or a data URL). */
export type Extractor = (storedImage: string) => Promise<ExtractResult>;

export interface Match {
  visitorId: string;
  /** Cosine similarity of the query to this visitor's best image. */
  similarity: number;
}

export interface GalleryStatus {
  /** The database answers. */
  database: 'up' | 'down';
  /** A reconcile is under way (initial or after a change). */
  syncing: boolean;
  /** Embeddings searchable now. */
  faces: number;
  visitors: number;
  /** Stored images skipped because they cannot be decoded or show no face. */
  failed: number;
  /** Name of the recognizer whose features are cached. */
  model: string;
  lastSyncAt: string | null;
  /** Why the database is down or the last sync failed; null when healthy. */
  error: string | null;
}

export interface Gallery {
  /**
   * For each query embedding, the best visitor whose stored image is still present and unchanged
   * in the database at the time of the call, or null when the gallery is empty. No threshold is
   * applied here. Throws FaceRecogError('gallery_unavailable') when the database cannot confirm.
   */
  search(queries: Float32Array[]): Promise<(Match | null)[]>;
  status(): GalleryStatus;
  close(): Promise<void>;
}
