// How faces and matches are written in answers (HTTP and WebSocket alike).
import type { Face } from '../engine/detect.js';
import { FaceRecogError } from '../errors.js';
import type { Gallery, Match } from '../gallery/types.js';
import type { Analysis, InferencePipeline } from './pipeline.js';
import type { Deadline } from './scheduler.js';
import type { RecognizedFaceBody } from './schemas.js';

/** A face in a detect answer: `confidence` is the detector's score (the guide's DetectResponse). */
export interface FaceView {
  bbox: [number, number, number, number];
  confidence: number;
  landmarks: [number, number][];
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

export function faceView(face: Face): FaceView {
  return {
    bbox: face.box.map(round2) as FaceView['bbox'],
    confidence: face.score,
    landmarks: face.landmarks.map(([x, y]) => [round2(x), round2(y)]),
  };
}

/**
 * A cosine similarity as answered: float32 rounding takes the same image against itself to
 * 1.0000000066, outside the range a cosine has by definition.
 */
export function clampSimilarity(similarity: number): number {
  return Math.min(1, Math.max(-1, similarity));
}

/**
 * `confidence` is the similarity to the best visitor, as answered; a match counts at or above the
 * threshold, compared on that same value.
 */
export function recognizedFace(face: Face, match: Match | null, threshold: number): RecognizedFaceBody {
  const { bbox, confidence: detectionConfidence, landmarks } = faceView(face);
  const detected = { bbox, landmarks, detection_confidence: detectionConfidence };
  if (match === null) return { ...detected, confidence: null, visitor_id: null, matched: false };
  const similarity = clampSimilarity(match.similarity);
  const matched = similarity >= threshold;
  return { ...detected, confidence: similarity, visitor_id: matched ? match.visitorId : null, matched };
}

/**
 * The best visitor of each embedded face of the analysis (faces beyond the embedded ones have
 * none). The search, with its database confirmation, runs within the request's deadline.
 */
export async function findMatches(
  pipeline: InferencePipeline,
  gallery: Gallery | null,
  analysis: Analysis,
  deadline: Deadline,
): Promise<(Match | null)[]> {
  if (analysis.faces.length === 0) return [];
  if (!gallery) throw new FaceRecogError('not_ready', 'the visitor gallery is starting; retry shortly', { retryAfterS: 2 });
  return pipeline.timeSearch(() => gallery.search(analysis.embeddings, deadline));
}

/** Every face of the analysis with its best visitor; faces beyond the embedded ones stay unmatched. */
export async function recognizeFaces(
  pipeline: InferencePipeline,
  gallery: Gallery | null,
  analysis: Analysis,
  threshold: number,
  deadline: Deadline,
): Promise<RecognizedFaceBody[]> {
  return recognizedFaces(analysis, await findMatches(pipeline, gallery, analysis, deadline), threshold);
}

/** Each face of the analysis with `matches[i]`, its best visitor (none beyond the embedded faces). */
export function recognizedFaces(analysis: Analysis, matches: readonly (Match | null)[], threshold: number): RecognizedFaceBody[] {
  return analysis.faces.map((face, i) => recognizedFace(face, matches[i] ?? null, threshold));
}
