// How faces and matches are written in answers (HTTP and WebSocket alike).
import type { Face } from '../engine/detect.js';
import { FaceRecogError } from '../errors.js';
import type { Gallery, Match } from '../gallery/types.js';
import type { Analysis } from './pipeline.js';

export interface FaceView {
  bbox: [number, number, number, number];
  /** Detector score. */
  confidence: number;
  landmarks: [number, number][];
}

export interface RecognizedFace extends FaceView {
  /** The matched visitor; null unless `matched`. */
  visitor_id: string | null;
  /** Cosine similarity to the best visitor; null when the gallery is empty or the face was not embedded (over the per-image limit). */
  similarity: number | null;
  matched: boolean;
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

export function faceView(face: Face): FaceView {
  return {
    bbox: face.box.map(round2) as FaceView['bbox'],
    confidence: face.score,
    landmarks: face.landmarks.map(([x, y]) => [round2(x), round2(y)]),
  };
}

/** A match counts only at or above the threshold, compared on the exact similarity. */
export function recognizedFace(face: Face, match: Match | null, threshold: number): RecognizedFace {
  const matched = match !== null && match.similarity >= threshold;
  return {
    ...faceView(face),
    visitor_id: matched ? match.visitorId : null,
    similarity: match?.similarity ?? null,
    matched,
  };
}

/** Every face of the analysis with its best visitor; faces beyond the embedded ones stay unmatched. */
export async function recognizeFaces(
  analysis: Analysis,
  gallery: Gallery | null,
  threshold: number,
  timeSearch: <T>(search: () => Promise<T>) => Promise<T>,
): Promise<RecognizedFace[]> {
  if (analysis.faces.length === 0) return [];
  if (!gallery) throw new FaceRecogError('not_ready', 'the visitor gallery is starting; retry shortly', { retryAfterS: 2 });
  const matches = await timeSearch(() => gallery.search(analysis.embeddings));
  return analysis.faces.map((face, i) => recognizedFace(face, matches[i] ?? null, threshold));
}
