// Not a test and not part of `npm run bench`: the measurements behind the track identity rule
// (src/server/tracking/identity.ts). Runs the real engine (YuNet + MobileFaceNet, threshold 0.45)
// over streams made from ../shared/testdata and prints, for "each frame alone" (today's realtime
// answer) and for the tracker under several identity rules:
//   - false accepts per face-frame on streams where nobody is enrolled, and how many such streams
//     ever name someone (a false "arrived");
//   - time to first name on streams of enrolled people, in frames and ms (30 fps), and misses;
//   - track id continuity of the walker from frame to frame.
// Streams: the shared clip (with and without its cast enrolled); walk-up streams of every faces/
// photo, as a stranger (its identity not enrolled) and as a visitor (its other photos enrolled);
// walk-up streams of the unnamed people of multi/ (couple.jpg and selfie_many_people.jpg are left
// out: they show deepface_p01, who is enrolled).
//   npm run bench:tracking [-- --quick]     (--quick: 30 frames per walk-up instead of 90)
import type { Match } from '../src/gallery/types.js';
import { ArrivalLedger } from '../src/server/tracking/events.js';
import { IDENTITY_RULE, type IdentityRule } from '../src/server/tracking/identity.js';
import { FaceTracker } from '../src/server/tracking/tracker.js';
import { labels, loadTestImage, testEngine } from '../test/helpers/fixtures.js';
import {
  CLIP_CAST,
  CLIP_FPS,
  CLIP_VISITOR,
  CLIP_VISITOR_FRAMES,
  analyseFrames,
  decodeClip,
  embedFacePhotos,
  galleryOf,
  matchFrames,
  walkUpStream,
  type AnalysedFrame,
} from '../test/tracking/helpers/streams.js';
import { decodeImage } from '../src/engine/image.js';
import { QUICK, percentile, round2 } from './common.js';

const THRESHOLD = 0.45;
const WALK_FPS = 30;
const WALK_FRAMES = QUICK ? 30 : 90;
// Faces smaller than this in a multi/ photo are too blurred once grown to walk-up size.
const MIN_SOURCE_FACE = 24;
const LEFT_OUT = ['multi/couple.jpg', 'multi/selfie_many_people.jpg'];

interface Stream {
  name: string;
  /** The enrolled person shown, or null when nobody shown is enrolled. */
  visitor: string | null;
  /** The frames that show the enrolled person (the clip); walk-ups: from their first detection to the end. */
  visitorFrames?: { first: number; last: number };
  fps: number;
  frames: AnalysedFrame[];
}

/** Per frame, per face: the visitor the face is answered as (null: not matched), and its track id. */
interface Decision {
  named: (string | null)[][];
  trackIds: (string | null)[][];
  arrivals: number;
}

function eachFrameAlone(stream: Stream): Decision {
  const named = stream.frames.map(({ matches, faces }) => faces.map((_, i) => nameOf(matches[i] ?? null)));
  return { named, trackIds: named.map((faces) => faces.map(() => null)), arrivals: 0 };
}

function nameOf(match: Match | null): string | null {
  return match !== null && match.similarity >= THRESHOLD ? match.visitorId : null;
}

function tracked(rule: IdentityRule): (stream: Stream) => Decision {
  return (stream) => {
    const tracker = new FaceTracker({ camera: 'bench', threshold: THRESHOLD, arrivals: new ArrivalLedger(60), rule });
    const decision: Decision = { named: [], trackIds: [], arrivals: 0 };
    stream.frames.forEach(({ faces, matches }, i) => {
      const update = tracker.update(faces, matches, (i * 1000) / stream.fps);
      decision.named.push(update.faces.map((f) => f.visitorId));
      decision.trackIds.push(update.faces.map((f) => f.trackId));
      decision.arrivals += update.events.length;
    });
    return decision;
  };
}

/** Index of the largest face of a frame, or -1 when it has none: the walker (or the singer). */
function walker(frame: AnalysedFrame): number {
  let best = -1;
  frame.faces.forEach((f, i) => {
    if (best < 0 || f.box[2] * f.box[3] > frame.faces[best].box[2] * frame.faces[best].box[3]) best = i;
  });
  return best;
}

interface Figures {
  strangerFaceFrames: number;
  falseAccepts: number;
  strangerStreams: number;
  strangersNamed: number;
  falseArrivals: number;
  visitorStreams: number;
  neverNamed: number;
  wrongVisitorFaceFrames: number;
  /** Frames from the walker's first detection to their first naming. */
  framesToName: number[];
  msToName: number[];
  clipFramesToName: number | null;
  transitions: number;
  keptIds: number;
}

function measure(streams: Stream[], decide: (stream: Stream) => Decision): Figures {
  const f: Figures = {
    strangerFaceFrames: 0,
    falseAccepts: 0,
    strangerStreams: 0,
    strangersNamed: 0,
    falseArrivals: 0,
    visitorStreams: 0,
    neverNamed: 0,
    wrongVisitorFaceFrames: 0,
    framesToName: [],
    msToName: [],
    clipFramesToName: null,
    transitions: 0,
    keptIds: 0,
  };
  for (const stream of streams) {
    const decision = decide(stream);
    const embedded = stream.frames.flatMap((frame, i) => frame.faces.map((_, k) => decision.named[i][k]));
    if (stream.visitor === null) {
      f.strangerStreams++;
      f.strangerFaceFrames += embedded.length;
      const accepted = embedded.filter((v) => v !== null).length;
      f.falseAccepts += accepted;
      if (accepted > 0) f.strangersNamed++;
      f.falseArrivals += decision.arrivals;
      continue;
    }
    f.visitorStreams++;
    f.wrongVisitorFaceFrames += embedded.filter((v) => v !== null && v !== stream.visitor).length;
    const walkerFrames = stream.frames.map(walker);
    const first = stream.visitorFrames?.first ?? walkerFrames.findIndex((k) => k >= 0);
    const last = stream.visitorFrames?.last ?? stream.frames.length - 1;
    const named = walkerFrames.findIndex((k, i) => i >= first && k >= 0 && decision.named[i][k] === stream.visitor);
    if (named < 0) f.neverNamed++;
    else {
      f.framesToName.push(named - first);
      f.msToName.push(((named - first) * 1000) / stream.fps);
      if (stream.name === 'clip') f.clipFramesToName = named - first;
    }
    let previous: string | null | undefined;
    walkerFrames.forEach((k, i) => {
      if (k < 0 || i < first || i > last) return;
      const id = decision.trackIds[i][k];
      if (previous !== undefined && id !== null) {
        f.transitions++;
        if (id === previous) f.keptIds++;
      }
      previous = id;
    });
  }
  return f;
}

async function walkUp(engine: Awaited<ReturnType<typeof testEngine>>, photo: string, box: [number, number, number, number], seed: number) {
  const jpegs = await walkUpStream(photo, box, seed, WALK_FRAMES);
  return analyseFrames(engine, (async function* () {
    for (const jpeg of jpegs) yield decodeImage(jpeg);
  })());
}

async function main(): Promise<void> {
  const started = performance.now();
  const engine = await testEngine();
  const photos = await embedFacePhotos(engine);
  const everyone = galleryOf(photos, () => true);
  const streams: Stream[] = [];

  const clip = await analyseFrames(engine, decodeClip());
  streams.push({ name: 'clip', visitor: CLIP_VISITOR, visitorFrames: CLIP_VISITOR_FRAMES, fps: CLIP_FPS, frames: await matchFrames(everyone, clip) });
  streams.push({ name: 'clip, cast not enrolled', visitor: null, fps: CLIP_FPS, frames: await matchFrames(galleryOf(photos, (p) => !CLIP_CAST.includes(p.identity)), clip) });

  let seed = 1;
  for (const photo of photos) {
    const [face] = await engine.detect(await loadTestImage(photo.path));
    const frames = await walkUp(engine, photo.path, face.box, seed++);
    streams.push({ name: photo.path, visitor: null, fps: WALK_FPS, frames: await matchFrames(galleryOf(photos, (p) => p.identity !== photo.identity), frames) });
    const others = galleryOf(photos, (p) => p.path !== photo.path);
    if (others.entries.some((e) => e.visitorId === photo.identity)) {
      streams.push({ name: photo.path, visitor: photo.identity, fps: WALK_FPS, frames: await matchFrames(others, frames) });
    }
  }
  const unnamed = labels().filter((l) => l.path.startsWith('multi/') && l.identity === '' && !LEFT_OUT.includes(l.path));
  for (const { path } of unnamed) {
    for (const face of await engine.detect(await loadTestImage(path))) {
      if (face.box[2] < MIN_SOURCE_FACE) continue;
      streams.push({ name: path, visitor: null, fps: WALK_FPS, frames: await matchFrames(everyone, await walkUp(engine, path, face.box, seed++)) });
    }
  }

  const rules: Record<string, (stream: Stream) => Decision> = {
    'each frame alone': eachFrameAlone,
    'votes 2 of 3': tracked({ window: 3, votes: 2, margin: 0 }),
    'votes 3 of 3': tracked({ window: 3, votes: 3, margin: 0 }),
    'votes 3 of 5': tracked({ window: 5, votes: 3, margin: 0 }),
    'votes 5 of 8': tracked({ window: 8, votes: 5, margin: 0 }),
    '3 of 5, mean +0.05': tracked({ window: 5, votes: 3, margin: 0.05 }),
    [`3 of 5, mean +0.1 (chosen)`]: tracked(IDENTITY_RULE),
    '3 of 5, mean +0.15': tracked({ window: 5, votes: 3, margin: 0.15 }),
    '5 of 8, mean +0.1': tracked({ window: 8, votes: 5, margin: 0.1 }),
  };
  const clipStrangers = streams.filter((s) => s.name === 'clip, cast not enrolled');
  const rows = Object.entries(rules).map(([rule, decide]) => {
    const f = measure(streams, decide);
    const clip = measure(clipStrangers, decide);
    return {
      rule,
      'false accepts / face-frame': `${f.falseAccepts}/${f.strangerFaceFrames} = ${round2((100 * f.falseAccepts) / f.strangerFaceFrames)}%`,
      'clip, cast not enrolled: false accepts': `${clip.falseAccepts}/${clip.strangerFaceFrames}`,
      'strangers named': `${f.strangersNamed}/${f.strangerStreams}`,
      'false arrivals': rule === 'each frame alone' ? 'n/a' : f.falseArrivals,
      'visitors never named': `${f.neverNamed}/${f.visitorStreams}`,
      'wrong-visitor face-frames': f.wrongVisitorFaceFrames,
      'frames to name p50/p90/max': `${percentile(f.framesToName, 0.5)}/${percentile(f.framesToName, 0.9)}/${Math.max(...f.framesToName)}`,
      'ms to name p50/p90': `${Math.round(percentile(f.msToName, 0.5))}/${Math.round(percentile(f.msToName, 0.9))}`,
      'clip: frames (ms) to name': f.clipFramesToName === null ? 'never' : `${f.clipFramesToName} (${Math.round((f.clipFramesToName * 1000) / CLIP_FPS)})`,
      'walker keeps its id': f.transitions === 0 ? 'n/a' : `${f.keptIds}/${f.transitions} = ${round2((100 * f.keptIds) / f.transitions)}%`,
    };
  });
  const strangerStreams = streams.filter((s) => s.visitor === null).length;
  console.log(`streams: ${strangerStreams} with nobody enrolled, ${streams.length - strangerStreams} of enrolled people; ${WALK_FRAMES} frames per walk-up; threshold ${THRESHOLD}`);
  console.table(rows);
  console.log(`took ${Math.round((performance.now() - started) / 1000)} s`);
}

await main();
