// The shared clip sent frame by frame through the real engine (YuNet + MobileFaceNet), an
// in-memory gallery of the faces/ photos, and one FaceTracker per "connection": one track for the
// singer while he is in view, one arrival for him and none for anyone else, and the cooldown.
import { beforeAll, describe, expect, it } from 'vitest';
import type { FaceWithEmbedding } from '../../src/engine/engine.js';
import { ArrivalLedger, type VisitorEvent } from '../../src/server/tracking/events.js';
import { FaceTracker, type TrackedFace } from '../../src/server/tracking/tracker.js';
import { fixturesMissing, testEngine } from '../helpers/fixtures.js';
import { CLIP_CAST, CLIP_FPS, CLIP_VISITOR, CLIP_VISITOR_FRAMES as VISITOR_FRAMES, analyseFrames, decodeClip, embedFacePhotos, galleryOf, matchFrames, type AnalysedFrame } from './helpers/streams.js';

const THRESHOLD = 0.45; // MobileFaceNet's default
const COOLDOWN_S = 60;
const FRAME_MS = 1000 / CLIP_FPS;

interface Replay {
  faces: TrackedFace[][];
  events: VisitorEvent[];
}

/** Sends the analysed frames through `tracker`, the first at `startMs`, at the clip's frame rate. */
function replay(tracker: FaceTracker, frames: AnalysedFrame[], startMs: number): Replay {
  const faces: TrackedFace[][] = [];
  const events: VisitorEvent[] = [];
  frames.forEach((frame, i) => {
    const update = tracker.update(frame.faces, frame.matches, startMs + i * FRAME_MS);
    faces.push(update.faces);
    events.push(...update.events);
  });
  return { faces, events };
}

/** The singer's track id in each of his frames where a face is detected (the largest one). */
function visitorTrackIds(analysed: AnalysedFrame[], result: Replay): string[] {
  const ids: string[] = [];
  for (let i = VISITOR_FRAMES.first; i <= VISITOR_FRAMES.last; i++) {
    const faces = analysed[i].faces;
    if (faces.length === 0) continue;
    const largest = faces.reduce((best, f, k) => (f.box[2] * f.box[3] > faces[best].box[2] * faces[best].box[3] ? k : best), 0);
    ids.push(result.faces[i][largest].trackId);
  }
  return ids;
}

const CLIP_MS = (n: number): number => n * FRAME_MS;

describe.skipIf(fixturesMissing)('the shared clip, frame by frame', () => {
  let frames: FaceWithEmbedding[][];
  let enrolled: AnalysedFrame[];
  let strangers: AnalysedFrame[];

  beforeAll(async () => {
    const engine = await testEngine();
    frames = await analyseFrames(engine, decodeClip());
    const photos = await embedFacePhotos(engine);
    enrolled = await matchFrames(galleryOf(photos, () => true), frames);
    strangers = await matchFrames(galleryOf(photos, (p) => !CLIP_CAST.includes(p.identity)), frames);
  }, 300_000);

  const tracker = (arrivals: ArrivalLedger, camera = 'stage'): FaceTracker => new FaceTracker({ camera, threshold: THRESHOLD, arrivals });

  it('decodes every frame of the clip', () => {
    expect(frames).toHaveLength(275);
  });

  it('keeps one track id for the singer while he is in view, and names him once', () => {
    const result = replay(tracker(new ArrivalLedger(COOLDOWN_S)), enrolled, 0);
    const ids = visitorTrackIds(enrolled, result);
    expect(ids.length).toBeGreaterThan(100);
    const kept = ids.slice(1).filter((id, i) => id === ids[i]).length;
    expect(kept / (ids.length - 1)).toBeGreaterThanOrEqual(0.9);

    expect(result.events).toHaveLength(1);
    const [arrival] = result.events;
    expect(arrival).toMatchObject({ type: 'event', event: 'arrived', visitor_id: CLIP_VISITOR, camera: 'stage', faces: [], count: 0 });
    expect(arrival.confidence).toBeGreaterThanOrEqual(THRESHOLD);
    // The arrival names the track the singer has in view.
    const usual = [...new Set(ids)].sort((a, b) => ids.filter((x) => x === b).length - ids.filter((x) => x === a).length)[0];
    expect(arrival.track_id).toBe(usual);
    // Named within half a second of his walking on.
    expect(new Date(arrival.at).getTime()).toBeLessThan(CLIP_MS(VISITOR_FRAMES.first + 15));
  });

  it('matches no face to a wrong visitor, and none outside the singer\'s frames', () => {
    const result = replay(tracker(new ArrivalLedger(COOLDOWN_S)), enrolled, 0);
    result.faces.forEach((faces, i) => {
      for (const face of faces) {
        if (!face.matched) continue;
        expect(face.visitorId, `frame ${i}`).toBe(CLIP_VISITOR);
        expect(i, `frame ${i}`).toBeGreaterThanOrEqual(VISITOR_FRAMES.first);
        expect(i, `frame ${i}`).toBeLessThanOrEqual(VISITOR_FRAMES.last);
      }
    });
  });

  it('with the singer and the pianist not enrolled, names nobody and raises no event', () => {
    const result = replay(tracker(new ArrivalLedger(COOLDOWN_S)), strangers, 0);
    expect(result.events).toEqual([]);
    expect(result.faces.flat().filter((f) => f.matched)).toEqual([]);
  });

  it('the same visitor back within the cooldown raises nothing, on the same connection or a reconnected one; after it, a second arrival', () => {
    const arrivals = new ArrivalLedger(COOLDOWN_S);
    const stage = tracker(arrivals);
    const clipMs = CLIP_MS(frames.length);
    expect(replay(stage, enrolled, 0).events).toHaveLength(1);
    // The clip again at once: he is out of view from frame 211 to frame ~82 of the replay (~5 s).
    expect(replay(stage, enrolled, clipMs).events).toEqual([]);
    // The camera reconnects: a new connection's tracker, the service's ledger.
    expect(replay(tracker(arrivals), enrolled, 2 * clipMs).events).toEqual([]);
    // Another camera sees him: its own arrival.
    expect(replay(tracker(arrivals, 'lobby'), enrolled, 2 * clipMs).events).toHaveLength(1);
    // Out of the stage camera's view for longer than the cooldown (the clock jumps; no waiting).
    const later = 3 * clipMs + COOLDOWN_S * 1000;
    const second = replay(stage, enrolled, later).events;
    expect(second).toHaveLength(1);
    expect(second[0]).toMatchObject({ visitor_id: CLIP_VISITOR, camera: 'stage' });
    expect(new Date(second[0].at).getTime()).toBeGreaterThan(later);
  });
});
