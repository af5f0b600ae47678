// FaceTracker and its parts on synthetic faces: boxes moved by hand, embeddings made per person
// (a random unit vector, plus noise per frame), gallery matches given directly.
import { describe, expect, it } from 'vitest';
import type { Match } from '../../src/gallery/types.js';
import { ArrivalLedger, type VisitorEvent } from '../../src/server/tracking/events.js';
import { TrackIdentity } from '../../src/server/tracking/identity.js';
import { FaceTracker, iou, type TrackerFace } from '../../src/server/tracking/tracker.js';
import { seededRandom } from './helpers/streams.js';

const THRESHOLD = 0.45;
const FRAME_MS = 1000 / 30;
const DIMENSION = 128;
const random = seededRandom(17);

function unit(values: number[]): Float32Array {
  const norm = Math.hypot(...values);
  return Float32Array.from(values, (v) => v / norm);
}

/** A person: a direction in embedding space; each frame of them is that direction plus noise (cosine ~0.85 to it). */
function person(): (noise?: number) => Float32Array {
  const base = Array.from({ length: DIMENSION }, () => random() - 0.5);
  const norm = Math.hypot(...base);
  return (noise = 0.35) => unit(base.map((v) => v / norm + (noise * (random() - 0.5)) / Math.sqrt(DIMENSION / 12)));
}

function face(x: number, y: number, embedding: Float32Array | null, size = 80): TrackerFace {
  return {
    box: [x, y, size, size * 1.2],
    landmarks: [
      [x + size * 0.3, y + size * 0.4],
      [x + size * 0.7, y + size * 0.4],
      [x + size * 0.5, y + size * 0.6],
      [x + size * 0.35, y + size * 0.85],
      [x + size * 0.65, y + size * 0.85],
    ],
    score: 0.92,
    embedding,
  };
}

const match = (visitorId: string, similarity: number): Match => ({ visitorId, similarity });

function tracker(options: Partial<ConstructorParameters<typeof FaceTracker>[0]> = {}): FaceTracker {
  return new FaceTracker({ camera: 'desk', threshold: THRESHOLD, arrivals: new ArrivalLedger(60), ...options });
}

describe('association', () => {
  it('IoU computes the overlap of [x, y, w, h] boxes', () => {
    expect(iou([0, 0, 10, 10], [0, 0, 10, 10])).toBe(1);
    expect(iou([0, 0, 10, 10], [5, 0, 10, 10])).toBeCloseTo(50 / 150);
    expect(iou([0, 0, 10, 10], [20, 20, 10, 10])).toBe(0);
  });

  it('a face moving a little each frame keeps its track', () => {
    const alice = person();
    const t = tracker();
    const ids = Array.from({ length: 60 }, (_, i) => t.update([face(100 + i * 4, 80 + (i % 5), alice())], [null], i * FRAME_MS).faces[0].trackId);
    expect(new Set(ids).size).toBe(1);
  });

  it('two people side by side keep their own tracks, whatever order the detector lists them in', () => {
    const alice = person();
    const bob = person();
    const t = tracker();
    const tracks = { alice: new Set<string>(), bob: new Set<string>() };
    for (let i = 0; i < 30; i++) {
      const a = face(100 + i * 2, 80, alice());
      const b = face(300 - i * 2, 90, bob());
      const swapped = i % 2 === 1;
      const { faces } = t.update(swapped ? [b, a] : [a, b], [null, null], i * FRAME_MS);
      tracks.alice.add(faces[swapped ? 1 : 0].trackId);
      tracks.bob.add(faces[swapped ? 0 : 1].trackId);
    }
    expect(tracks.alice.size).toBe(1);
    expect(tracks.bob.size).toBe(1);
    expect([...tracks.alice][0]).not.toBe([...tracks.bob][0]);
  });

  it('faces that are not embedded are followed by their boxes alone', () => {
    const t = tracker();
    const ids = Array.from({ length: 20 }, (_, i) => t.update([face(50 + i * 3, 60, null)], [], i * FRAME_MS).faces[0].trackId);
    expect(new Set(ids).size).toBe(1);
  });

  it('a fast move without overlap keeps the track when the face looks the same', () => {
    const alice = person();
    const t = tracker();
    const first = t.update([face(100, 80, alice())], [null], 0).faces[0].trackId;
    // 60 px in one frame: the boxes no longer overlap enough, the embedding says who it is.
    const second = t.update([face(160, 120, alice())], [null], FRAME_MS).faces[0].trackId;
    expect(second).toBe(first);
  });

  it('one or two missed detections keep the track, at 30 fps and at 1 fps', () => {
    for (const frameMs of [FRAME_MS, 1000]) {
      const alice = person();
      const t = tracker();
      const ids: string[] = [];
      let at = 0;
      for (const present of [1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1]) {
        const { faces } = t.update(present ? [face(120, 80, alice())] : [], [null], at);
        if (present) ids.push(faces[0].trackId);
        at += frameMs;
      }
      expect(new Set(ids).size, `at ${Math.round(1000 / frameMs)} fps`).toBe(1);
    }
  });

  it('a new person gets a new track, even where someone just was', () => {
    const alice = person();
    const bob = person();
    const t = tracker();
    const aliceId = t.update([face(120, 80, alice())], [null], 0).faces[0].trackId;
    // Bob elsewhere in the frame, with Alice: a second track.
    const both = t.update([face(120, 80, alice()), face(400, 100, bob())], [null, null], FRAME_MS).faces;
    expect(both[0].trackId).toBe(aliceId);
    expect(both[1].trackId).not.toBe(aliceId);
    // Alice leaves, Carol steps into her place two frames later: same box, another face.
    const carol = person();
    t.update([], [], 2 * FRAME_MS);
    const carolId = t.update([face(122, 82, carol())], [null], 3 * FRAME_MS).faces[0].trackId;
    expect(carolId).not.toBe(aliceId);
    expect(carolId).not.toBe(both[1].trackId);
  });

  it('the same person back after leaving gets a new track', () => {
    const alice = person();
    const t = tracker();
    let at = 0;
    const before = t.update([face(120, 80, alice())], [null], at).faces[0].trackId;
    // Out of view for 2 s (60 frames at 30 fps).
    for (let i = 0; i < 60; i++) t.update([], [], (at += FRAME_MS));
    expect(t.size).toBe(0);
    const after = t.update([face(120, 80, alice())], [null], (at += FRAME_MS)).faces[0].trackId;
    expect(after).not.toBe(before);
  });

  it('track ids differ between connections', () => {
    const alice = person();
    const one = tracker().update([face(120, 80, alice())], [null], 0).faces[0].trackId;
    const two = tracker().update([face(120, 80, alice())], [null], 0).faces[0].trackId;
    expect(one).not.toBe(two);
  });
});

describe('identity over the track', () => {
  it('needs window / 2 < votes <= window', () => {
    expect(() => new TrackIdentity(THRESHOLD, { window: 4, votes: 2, margin: 0 })).toThrow(/votes/);
    expect(() => new TrackIdentity(THRESHOLD, { window: 3, votes: 4, margin: 0 })).toThrow(/votes/);
  });

  it('a single frame above the threshold does not name a stranger', () => {
    const identity = new TrackIdentity(THRESHOLD);
    const frames = [0.3, 0.32, 0.6, 0.31, 0.28, 0.7, 0.3, 0.29, 0.52, 0.2];
    for (const similarity of frames) expect(identity.add(match('mallory', similarity))).toBeNull();
    expect(identity.visitorId).toBeNull();
    expect(identity.confidence).toBeNull();
  });

  it('frames that agree name the visitor, with their mean similarity as confidence', () => {
    const identity = new TrackIdentity(THRESHOLD);
    expect(identity.add(match('alice', 0.5))).toBeNull();
    expect(identity.add(match('alice', 0.6))).toBeNull();
    expect(identity.add(match('alice', 0.7))).toEqual({ visitorId: 'alice', confidence: expect.closeTo(0.6, 6) });
    expect(identity.visitorId).toBe('alice');
  });

  it('a dip in one frame does not hold the naming back', () => {
    const identity = new TrackIdentity(THRESHOLD);
    expect([0.6, 0.3, 0.62, 0.64].map((s) => identity.add(match('alice', s))?.visitorId ?? null)).toEqual([null, null, null, 'alice']);
  });

  it('a lookalike whose frames hover at the threshold is never named', () => {
    const identity = new TrackIdentity(THRESHOLD);
    // Every frame is a "match" by the threshold alone, but their mean stays below threshold + margin.
    for (let i = 0; i < 300; i++) expect(identity.add(match('lookalike', 0.45 + (i % 7) * 0.01))).toBeNull();
    expect(identity.visitorId).toBeNull();
  });

  it('a named track keeps its visitor through weak frames and a stray frame naming someone else', () => {
    const identity = new TrackIdentity(THRESHOLD);
    for (const s of [0.6, 0.62, 0.64]) identity.add(match('alice', s));
    expect(identity.add(match('bob', 0.9))).toBeNull();
    expect(identity.add(match('alice', 0.3))).toBeNull();
    expect(identity.add(null)).toBeNull();
    expect(identity.add(match('bob', 0.8))).toBeNull();
    expect(identity.visitorId).toBe('alice');
    // The confidence stays that of the last frame that named Alice.
    expect(identity.confidence).toBeCloseTo(0.64, 6);
  });

  it('only sustained evidence moves a named track to another visitor', () => {
    const identity = new TrackIdentity(THRESHOLD);
    for (const s of [0.6, 0.62, 0.64]) identity.add(match('alice', s));
    expect(identity.add(match('bob', 0.7))).toBeNull();
    expect(identity.add(match('bob', 0.7))).toBeNull();
    expect(identity.add(match('bob', 0.7))).toEqual({ visitorId: 'bob', confidence: expect.closeTo(0.7, 6) });
  });

  it('the tracker reports the track identity on every face of the track, not the frame alone', () => {
    const alice = person();
    const t = tracker();
    const similarities = [0.55, 0.6, 0.65, 0.3, 0.2, 0.58];
    const reported = similarities.map((s, i) => t.update([face(120 + i, 80, alice())], [match('alice', s)], i * FRAME_MS).faces[0]);
    expect(reported.map((f) => f.matched)).toEqual([false, false, true, true, true, true]);
    expect(reported.map((f) => f.visitorId)).toEqual([null, null, 'alice', 'alice', 'alice', 'alice']);
    // Unnamed: the frame's own similarity; named: the track's confidence.
    expect(reported[0].confidence).toBe(0.55);
    expect(reported[2].confidence).toBeCloseTo(0.6, 6);
    expect(reported[5].confidence).toBeCloseTo((0.6 + 0.65 + 0.58) / 3, 6);
  });

  it('faces that are not embedded take no vote but carry the track identity', () => {
    const alice = person();
    const t = tracker();
    const frames: [Float32Array | null, Match | null][] = [
      [alice(), match('alice', 0.6)],
      [null, null],
      [alice(), match('alice', 0.6)],
      [null, null],
      [alice(), match('alice', 0.6)],
      [null, null],
    ];
    const reported = frames.map(([embedding, m], i) => t.update([face(120, 80, embedding)], [m], i * FRAME_MS).faces[0]);
    expect(reported.map((f) => f.visitorId)).toEqual([null, null, null, null, 'alice', 'alice']);
    expect(reported[1].confidence).toBeNull();
  });
});

describe('arrival events', () => {
  const named = (t: FaceTracker, walker: () => Float32Array, visitorId: string, start: number, frames = 5, x = 120): VisitorEvent[] =>
    Array.from({ length: frames }, (_, i) => t.update([face(x + i, 80, walker())], [match(visitorId, 0.6)], start + i * FRAME_MS).events).flat();

  it('one per visit, shaped as the contract says, also given to the sink', () => {
    const alice = person();
    const sunk: VisitorEvent[] = [];
    const t = tracker({ onEvent: (e) => sunk.push(e) });
    const events = named(t, alice, 'alice', Date.UTC(2025, 0, 2, 9, 30), 30);
    expect(events).toEqual([
      {
        type: 'event',
        event: 'arrived',
        visitor_id: 'alice',
        track_id: expect.any(String),
        camera: 'desk',
        confidence: expect.closeTo(0.6, 6),
        at: new Date(Date.UTC(2025, 0, 2, 9, 30) + 2 * FRAME_MS).toISOString(),
        faces: [],
        count: 0,
      },
    ]);
    expect(sunk).toEqual(events);
  });

  it('the same visitor again within the cooldown (tracked anew, or on a reconnected socket) raises nothing; after it, a new event', () => {
    const alice = person();
    const arrivals = new ArrivalLedger(60);
    let now = 0;
    const clock = (): number => now;
    const t = tracker({ arrivals, clock });
    const first = named(t, alice, 'alice', now);
    expect(first).toHaveLength(1);
    // Gone 30 s (three frames without her): the track ends; back again, a new track, same visit.
    for (let i = 0; i < 3; i++) t.update([], [], (now += 10_000));
    expect(t.size).toBe(0);
    expect(named(t, alice, 'alice', now)).toHaveLength(0);
    // The camera reconnects: a new tracker on the same ledger.
    now += 1000;
    expect(named(tracker({ arrivals, clock }), alice, 'alice', now)).toHaveLength(0);
    // Out of view for longer than the cooldown, no frame meanwhile: a new visit, on a new track.
    now += 70_000;
    const again = named(t, alice, 'alice', now);
    expect(again).toHaveLength(1);
    expect(again[0].at).toBe(new Date(now + 2 * FRAME_MS).toISOString());
    expect(again[0].track_id).not.toBe(first[0].track_id);
  });

  it('the cooldown is per camera and per visitor; connections without a camera name are cameras of their own', () => {
    const arrivals = new ArrivalLedger(60);
    const alice = person();
    const bob = person();
    const desk = tracker({ arrivals });
    expect(named(desk, alice, 'alice', 0)).toHaveLength(1);
    expect(named(desk, bob, 'bob', 200, 5, 400)).toHaveLength(1);
    expect(named(tracker({ arrivals, camera: 'lobby' }), alice, 'alice', 500)).toHaveLength(1);
    const unnamed = named(tracker({ arrivals, camera: null }), alice, 'alice', 600);
    expect(unnamed).toMatchObject([{ camera: null }]);
    expect(named(tracker({ arrivals, camera: null }), alice, 'alice', 700)).toHaveLength(1);
  });

  it('a track moved to another visitor announces that visitor', () => {
    const t = tracker();
    const alice = person();
    const frames: Match[] = [match('alice', 0.6), match('alice', 0.6), match('alice', 0.6), match('bob', 0.8), match('bob', 0.8), match('bob', 0.8)];
    const events = frames.flatMap((m, i) => t.update([face(120, 80, alice())], [m], i * FRAME_MS).events);
    expect(events.map((e) => e.visitor_id)).toEqual(['alice', 'bob']);
    expect(events[0].track_id).toBe(events[1].track_id);
  });

  it('the ledger forgets sightings older than the cooldown', () => {
    const arrivals = new ArrivalLedger(60);
    for (let i = 0; i < 100; i++) arrivals.arrive('desk', `visitor-${i}`, i * 100);
    expect(arrivals.size).toBe(100);
    expect(arrivals.arrive('desk', 'late', 200_000)).toBe(true);
    expect(arrivals.size).toBe(1);
  });
});
