// Faces followed from frame to frame of one camera connection. Each frame's faces are associated
// with the live tracks by box overlap (IoU) and appearance (cosine similarity of the face's
// embedding to the track's running mean), greedily, best pair first. A track survives a few frames
// without its face (a turned head, a blur the detector misses) and ends once it has been out of
// view for longer; the person coming back then gets a new track. Each track's identity is decided
// over its frames (identity.ts) and the first naming of a visit raises an "arrived" event
// (events.ts).
import { randomBytes } from 'node:crypto';
import type { Face } from '../../engine/detect.js';
import { cosineSimilarity } from '../../engine/embed.js';
import type { Match } from '../../gallery/types.js';
import { ArrivalLedger, arrivalEvent, type VisitorEvent } from './events.js';
import { IDENTITY_RULE, TrackIdentity, type IdentityRule } from './identity.js';

/** A detected face as the tracker takes it; `embedding` is null for faces beyond the embedded ones (MAX_FACES). */
export interface TrackerFace extends Face {
  embedding: Float32Array | null;
}

/** What the tracker says of one face of the frame, in the order the faces were given. */
export interface TrackedFace {
  trackId: string;
  /** The track's visitor; null until its frames name one. */
  visitorId: string | null;
  matched: boolean;
  /**
   * Named: the track's confidence in its visitor (mean similarity of its recent naming frames).
   * Otherwise this frame's similarity to its best visitor; null when the face was not embedded or
   * the gallery is empty.
   */
  confidence: number | null;
}

export interface FrameUpdate {
  faces: TrackedFace[];
  /** Events this frame raised (also given to `onEvent`). */
  events: VisitorEvent[];
}

export interface FaceTrackerOptions {
  /** The connection's `?camera=` name; null: the connection is a camera of its own. */
  camera: string | null;
  /** Similarity at or above which a frame's best match votes for that visitor. */
  threshold: number;
  /** The service's ledger of visits, shared by every connection (cooldown per camera and visitor). */
  arrivals: ArrivalLedger;
  /** Milliseconds since the epoch, for `update` calls that give no time; default Date.now. */
  clock?: () => number;
  /** Service-wide sink for every event (the webhook sender), besides the events `update` returns. */
  onEvent?: (event: VisitorEvent) => void;
  /** The identity rule; only the bench that chose the default passes another. */
  rule?: IdentityRule;
}

// A face and a track may be the same when their boxes overlap this much...
const MIN_IOU = 0.3;
// ...or, when both have embeddings this similar, when the face is within this many face widths of
// the track (a fast move, a low frame rate, a gap of missed frames). Measured with MobileFaceNet:
// a face is >= 0.34 similar to its own track's running mean (walk-up streams; >= 0.47 across the
// shared clip's 7-frame gap), while 99.9% of pairs of different people's photos are below 0.36.
const APPEARANCE_SAME = 0.4;
const MAX_JUMP_WIDTHS = 1.5;
// Below this similarity a face is never its track, however much the boxes overlap (someone else
// stepping in where a person just left): 90% of pairs of different people are below 0.14.
const APPEARANCE_DIFFERENT = 0.2;
// Weight of each new embedding in the track's running mean: one odd frame cannot replace it.
const APPEARANCE_UPDATE = 0.3;
// A track ends once its face has been missing from more than LOST_AFTER_FRAMES frames in a row AND
// for more than LOST_AFTER_MS: "a missed detection or two" at any frame rate, and about a second
// of absence (the clip's singer turns away from the camera for 7 frames, 233 ms).
const LOST_AFTER_FRAMES = 2;
const LOST_AFTER_MS = 1000;
// Unseen this long, a track ends even without frames meanwhile (a client that paused): whoever is
// there when frames resume may have left and come back.
const FORGET_AFTER_MS = 10_000;

type Box = Face['box'];

class Track {
  readonly id: string;
  readonly identity: TrackIdentity;
  box: Box;
  /** Running mean of the face's embeddings; null until one is embedded. */
  appearance: Float32Array | null;
  lastSeenAt: number;
  /** Frames in a row without the face. */
  missed = 0;

  constructor(id: string, face: TrackerFace, at: number, identity: TrackIdentity) {
    this.id = id;
    this.identity = identity;
    this.box = face.box;
    this.appearance = face.embedding;
    this.lastSeenAt = at;
  }

  see(face: TrackerFace, at: number): void {
    this.box = face.box;
    this.lastSeenAt = at;
    this.missed = 0;
    if (face.embedding) this.appearance = this.appearance ? blend(this.appearance, face.embedding, APPEARANCE_UPDATE) : face.embedding;
  }

  lost(at: number): boolean {
    const unseenMs = at - this.lastSeenAt;
    return (this.missed > LOST_AFTER_FRAMES && unseenMs > LOST_AFTER_MS) || unseenMs > FORGET_AFTER_MS;
  }
}

/**
 * Tracks of one realtime connection. Create one per connection, then call `update` once per
 * processed frame, in order:
 *
 *   const tracker = new FaceTracker({ camera, threshold, arrivals, onEvent: (e) => webhooks.send(e) });
 *   const { faces, events } = tracker.update(
 *     analysis.faces.map((face, i) => ({ ...face, embedding: analysis.embeddings[i] ?? null })),
 *     matches, // gallery.search(analysis.embeddings): one best match (or null) per embedded face
 *   );
 *   // faces[i] = { trackId, visitorId, matched, confidence } for analysis.faces[i]; send `events` on the socket.
 */
export class FaceTracker {
  private readonly camera: string | null;
  private readonly ledgerCamera: string;
  private readonly threshold: number;
  private readonly arrivals: ArrivalLedger;
  private readonly clock: () => number;
  private readonly onEvent: (event: VisitorEvent) => void;
  private readonly rule: IdentityRule;
  private readonly idPrefix = randomBytes(4).toString('hex');
  private tracks: Track[] = [];
  private created = 0;

  constructor(options: FaceTrackerOptions) {
    this.camera = options.camera;
    this.ledgerCamera = options.camera === null ? `connection ${this.idPrefix}` : `camera ${options.camera}`;
    this.threshold = options.threshold;
    this.arrivals = options.arrivals;
    this.clock = options.clock ?? Date.now;
    this.onEvent = options.onEvent ?? (() => undefined);
    this.rule = options.rule ?? IDENTITY_RULE;
  }

  /** Live tracks, including those whose face is missing from the last few frames. */
  get size(): number {
    return this.tracks.length;
  }

  /**
   * One frame: `faces` as detected (any order), `matches[i]` the best visitor of `faces[i]` (null
   * or absent when not embedded or the gallery is empty), `at` the frame's time in ms (default:
   * the clock). Returns each face's track and identity, and the events the frame raised.
   */
  update(faces: readonly TrackerFace[], matches: readonly (Match | null | undefined)[], at: number = this.clock()): FrameUpdate {
    this.forgetLost(at);
    const assigned = this.associate(faces);
    const events: VisitorEvent[] = [];
    const present = new Set<Track>();
    const tracked = faces.map((face, i): TrackedFace => {
      let track = assigned[i];
      if (track) track.see(face, at);
      else {
        track = new Track(`${this.idPrefix}-${++this.created}`, face, at, new TrackIdentity(this.threshold, this.rule));
        this.tracks.push(track);
      }
      present.add(track);
      const match = face.embedding ? (matches[i] ?? null) : null;
      if (face.embedding) {
        // Only embedded frames are evidence; the others carry the track's identity as it stands.
        const named = track.identity.add(match);
        if (named && this.arrivals.arrive(this.ledgerCamera, named.visitorId, at)) {
          events.push(arrivalEvent(named.visitorId, track.id, this.camera, named.confidence, at));
        }
      }
      const visitorId = track.identity.visitorId;
      if (visitorId) this.arrivals.seen(this.ledgerCamera, visitorId, at);
      return {
        trackId: track.id,
        visitorId,
        matched: visitorId !== null,
        confidence: visitorId ? track.identity.confidence : (match?.similarity ?? null),
      };
    });
    for (const track of this.tracks) if (!present.has(track)) track.missed++;
    this.forgetLost(at);
    for (const event of events) this.onEvent(event);
    return { faces: tracked, events };
  }

  private forgetLost(at: number): void {
    this.tracks = this.tracks.filter((track) => !track.lost(at));
  }

  /** For each face, the live track it continues, or undefined for a new one. */
  private associate(faces: readonly TrackerFace[]): (Track | undefined)[] {
    const pairs: { face: number; track: Track; affinity: number }[] = [];
    faces.forEach((face, i) => {
      for (const track of this.tracks) {
        const affinity = affinityOf(track, face);
        if (affinity !== null) pairs.push({ face: i, track, affinity });
      }
    });
    pairs.sort((a, b) => b.affinity - a.affinity);
    const assigned: (Track | undefined)[] = new Array(faces.length);
    const taken = new Set<Track>();
    for (const { face, track } of pairs) {
      if (assigned[face] || taken.has(track)) continue;
      assigned[face] = track;
      taken.add(track);
    }
    return assigned;
  }

}

/** How well `face` continues `track` (higher is better), or null when it cannot be the same person. */
function affinityOf(track: Track, face: TrackerFace): number | null {
  const overlap = iou(track.box, face.box);
  const appearance = track.appearance && face.embedding ? cosineSimilarity(track.appearance, face.embedding) : null;
  if (appearance !== null && appearance < APPEARANCE_DIFFERENT) return null;
  const near = centreDistance(track.box, face.box) <= MAX_JUMP_WIDTHS * Math.max(track.box[2], face.box[2]);
  if (overlap >= MIN_IOU || (appearance !== null && appearance >= APPEARANCE_SAME && near)) return overlap + (appearance ?? 0);
  return null;
}

/** Intersection over union of two [x, y, width, height] boxes. */
export function iou(a: Box, b: Box): number {
  const width = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const intersection = width * height;
  return intersection / (a[2] * a[3] + b[2] * b[3] - intersection);
}

function centreDistance(a: Box, b: Box): number {
  return Math.hypot(a[0] + a[2] / 2 - (b[0] + b[2] / 2), a[1] + a[3] / 2 - (b[1] + b[3] / 2));
}

/** The unit vector of (1 - weight) * mean + weight * next: a running mean of L2-normalised embeddings. */
function blend(mean: Float32Array, next: Float32Array, weight: number): Float32Array {
  const out = new Float32Array(mean.length);
  let norm = 0;
  for (let i = 0; i < mean.length; i++) {
    out[i] = (1 - weight) * mean[i] + weight * next[i];
    norm += out[i] * out[i];
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < out.length; i++) out[i] /= norm;
  return out;
}
