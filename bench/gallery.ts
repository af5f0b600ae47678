// The service's gallery at scale. Real visitors are stored as the visitor backend would store them
// (rows in the guide's tables, which the service reads on its own); beyond the real photos, the
// gallery is filled with stored faces (stored-faces.ts: rows in visitor_images whose cached face is
// a random unit vector), which the service loads, and matches against their rows, as any other.
import { getRecognizer } from '../src/engine/models/registry.js';
import type { Database } from '../src/gallery/db.js';
import { RECOGNIZER, round2, type Latency } from './common.js';
import { visitorId, type StoredPhoto } from './inputs.js';
import { Service, type Memory } from './service.js';
import { storeFaces } from './stored-faces.js';

const SYNC_TIMEOUT_MS = 10 * 60_000;

/** Stores `photos` as new visitors (one row each in `visitors`), numbered from `first`. */
export async function enrol(db: Database, photos: StoredPhoto[], first: number): Promise<void> {
  await db.query('INSERT INTO visitors (visitor_id, base64image) SELECT * FROM unnest($1::text[], $2::text[])', [
    photos.map((p, i) => visitorId(p, first + i)),
    photos.map((p) => p.base64),
  ]);
}

/** A service started on `dataDir` once every one of `photos` is enrolled as a visitor (numbered from 0). */
export async function serviceWithVisitors(dataDir: string, photos: StoredPhoto[]): Promise<{ service: Service; faces: number }> {
  const service = await Service.start(dataDir);
  const database = await service.database();
  try {
    await enrol(database.db, photos, 0);
  } finally {
    await database.close();
  }
  const enrolled = await service.waitForImages(photos.length, 120_000);
  if (enrolled.failed > 0) throw new Error(`${enrolled.failed} of the ${photos.length} visitor photos yielded no face`);
  return { service, faces: enrolled.faces };
}

export interface Reconcile {
  images: number;
  /** The backend's INSERT of the images, one statement, until it committed (the service sees nothing before). */
  insertSeconds: number;
  /** From that commit to /health counting every new image. */
  seconds: number;
  imagesPerS: number;
}

/**
 * Inserts `photos` into visitor_images (new visitors numbered from `first`) while the service
 * runs, and times how long from the INSERT's commit until /health counts them all: no call tells
 * the service about them. The INSERT is timed apart: it is the backend's write (some 50 MB of
 * base64 through one PostgreSQL backend), which no part of the service can start before.
 */
export async function reconcileRate(service: Service, db: Database, photos: StoredPhoto[], first: number): Promise<Reconcile> {
  const before = await service.gallery();
  const inserting = performance.now();
  await db.query('INSERT INTO visitor_images (visitor_id, base64image) SELECT * FROM unnest($1::text[], $2::text[])', [
    photos.map((p, i) => visitorId(p, first + i)),
    photos.map((p) => p.base64),
  ]);
  const committed = performance.now();
  const after = await service.waitForImages(before.faces + before.failed + photos.length, SYNC_TIMEOUT_MS);
  const seconds = (performance.now() - committed) / 1000;
  if (after.failed > before.failed) throw new Error(`${after.failed - before.failed} of the new images yielded no face`);
  return { images: photos.length, insertSeconds: round2((committed - inserting) / 1000), seconds: round2(seconds), imagesPerS: round2(photos.length / seconds) };
}

export interface Growth {
  service: Service;
  /** Stored faces added, and how long writing their rows and cached faces took (the service stopped). */
  added: number;
  synthSeconds: number;
  /** From starting the service again to every face searchable. */
  loadSeconds: number;
}

/** Stops the service, stores faces up to `faces` in its database, and starts it again: it loads them. */
export async function growTo(service: Service, faces: number): Promise<Growth> {
  const now = await service.gallery();
  const added = faces - now.faces;
  await service.stop();
  let started = performance.now();
  const database = await service.database();
  try {
    await storeFaces(database.db, { model: RECOGNIZER, dimension: getRecognizer(RECOGNIZER).dimension, count: added, first: now.faces });
  } finally {
    await database.close();
  }
  const synthSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  const restarted = await Service.start(service.dataDir);
  const after = await restarted.waitForImages(faces + now.failed, SYNC_TIMEOUT_MS);
  if (after.failed > now.failed) throw new Error(`${after.failed - now.failed} stored faces were extracted (and failed) instead of loaded`);
  const loadSeconds = (performance.now() - started) / 1000;
  return { service: restarted, added, synthSeconds: round2(synthSeconds), loadSeconds: round2(loadSeconds) };
}

export interface SizePoint {
  faces: number;
  recognize: Latency;
  /** The 8-face query (bench/inputs.ts eightFaceJpeg). */
  recognize8: Latency;
  /** The service's mean ms per stage (decode, detect, embed, search) over those requests, from /metrics. */
  stagesMs: Record<string, number>;
  /** The service with the 100 visitors only, timed in turn with this size's requests (null for that service itself). */
  beside100: { recognize: Latency; recognize8: Latency } | null;
  memory: Memory;
  synthSeconds: number | null;
  loadSeconds: number | null;
  /** The first requests after the restart that loaded this size, before the timed ones (null at 100). */
  afterLoad: Latency | null;
}
