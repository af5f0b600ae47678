// A visitor backend using the client the way such code is written: settings from the environment,
// which may be unset. Compiled by api-types.test.ts with `exactOptionalPropertyTypes`; not run.
import { createClient, type GalleryImage, type RecognizedFace } from '../../src/index.js';

const faces = createClient({
  baseUrl: process.env.FACE_RECOG_URL,
  apiKey: process.env.FACE_RECOG_API_KEY,
  timeoutMs: process.env.FACE_RECOG_TIMEOUT_MS ? Number(process.env.FACE_RECOG_TIMEOUT_MS) : undefined,
});

const threshold: number | undefined = process.env.MATCH_THRESHOLD ? Number(process.env.MATCH_THRESHOLD) : undefined;

export async function whoIsThere(photo: Buffer, signal?: AbortSignal): Promise<string | null> {
  const answer = await faces.recognize(photo, { threshold, signal, detect_size: undefined });
  const best: RecognizedFace | undefined = answer.faces[0];
  return answer.matched && best ? best.visitor_id : null;
}

export async function photosToRetake(after?: string): Promise<GalleryImage[]> {
  const page = await faces.galleryImages({ status: 'failed', after, limit: undefined });
  return page.images;
}

export function camera(): void {
  const live = faces.realtime({ path: process.env.FACE_RECOG_WS_PATH, frameTimeoutMs: undefined });
  live.on('results', (results) => results.faces.forEach((face) => face.matched && console.log(face.visitor_id, face.confidence)));
  live.connect();
}
