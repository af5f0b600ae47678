// What the benchmarks send and store, all made from the shared test photos: the 640x480 one-face
// query, and visitor photos as a visitor backend would keep them (JPEG, longer side at most 640 px,
// like a webcam capture at enrolment).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { TESTDATA_DIR } from './common.js';

/** One face, 1480x832; the query of every HTTP and WebSocket benchmark. */
export const QUERY_SOURCE = 'faces/obama/4.jpg';
export const QUERY_IDENTITY = 'obama';

export const STORED_MAX_SIDE = 640;
const JPEG_QUALITY = 90;

export interface StoredPhoto {
  identity: string;
  /** Plain base64 of the JPEG, as the backend stores it. */
  base64: string;
}

/** A test photo scaled to cover width x height, as a JPEG. */
export async function jpegAt(width: number, height: number, source = QUERY_SOURCE): Promise<Buffer> {
  return sharp(readFileSync(join(TESTDATA_DIR, source))).resize(width, height, { fit: 'cover' }).jpeg({ quality: JPEG_QUALITY }).toBuffer();
}

/** The one-identity photos of labels.csv (faces/<identity>/*.jpg). */
function facePhotos(): { path: string; identity: string }[] {
  const [, ...rows] = readFileSync(join(TESTDATA_DIR, 'labels.csv'), 'utf8').trim().split('\n');
  return rows
    .map((row) => row.split(','))
    .filter(([path]) => path.startsWith('faces/'))
    .map(([path, identity]) => ({ path, identity }));
}

/**
 * `count` distinct stored photos: the face photos scaled to a longer side of 640 px, then again
 * each a few pixels smaller per round, so that no two stored images have the same bytes (the
 * gallery would otherwise reuse one extraction for identical images).
 */
export async function storedPhotos(count: number): Promise<StoredPhoto[]> {
  const sources = await Promise.all(
    facePhotos().map(async ({ path, identity }) => ({
      identity,
      raw: await sharp(readFileSync(join(TESTDATA_DIR, path)))
        .rotate()
        .resize(STORED_MAX_SIDE, STORED_MAX_SIDE, { fit: 'inside', withoutEnlargement: true })
        .raw()
        .toBuffer({ resolveWithObject: true }),
    })),
  );
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const { identity, raw } = sources[i % sources.length];
      const round = Math.floor(i / sources.length);
      const { width, height, channels } = raw.info;
      const scale = (Math.max(width, height) - 2 * round) / Math.max(width, height);
      const jpeg = await sharp(raw.data, { raw: { width, height, channels } })
        .resize(Math.round(width * scale), Math.round(height * scale))
        .jpeg({ quality: JPEG_QUALITY })
        .toBuffer();
      return { identity, base64: jpeg.toString('base64') };
    }),
  );
}

/** The 8-face query: eight people, one per tile of a 4 x 2 grid. */
export const EIGHT_FACES = 8;
const GRID_COLUMNS = 4;
const TILE = { width: 320, height: 360 };

/**
 * One JPEG showing EIGHT_FACES different people (the first photo of each of the first identities
 * of faces/), each scaled to cover a 320x360 tile of a 1280x720 frame: a group at a desk camera.
 */
export async function eightFaceJpeg(): Promise<Buffer> {
  const firstOfEach = [...new Map(facePhotos().map((p) => [p.identity, p])).values()].slice(0, EIGHT_FACES);
  const tiles = await Promise.all(
    firstOfEach.map(async ({ path }, i) => ({
      input: await sharp(readFileSync(join(TESTDATA_DIR, path))).rotate().resize(TILE.width, TILE.height, { fit: 'cover' }).toBuffer(),
      left: (i % GRID_COLUMNS) * TILE.width,
      top: Math.floor(i / GRID_COLUMNS) * TILE.height,
    })),
  );
  const rows = Math.ceil(EIGHT_FACES / GRID_COLUMNS);
  return sharp({ create: { width: GRID_COLUMNS * TILE.width, height: rows * TILE.height, channels: 3, background: { r: 128, g: 128, b: 128 } } })
    .composite(tiles)
    .jpeg({ quality: JPEG_QUALITY })
    .toBuffer();
}

/** Visitor ids say who is on the photo, so that answers can be checked: `<identity>-<n>`. */
export function visitorId(photo: StoredPhoto, index: number): string {
  return `${photo.identity}-${String(index + 1).padStart(7, '0')}`;
}
