// Which face of a stored photo is enrolled, and MIN_ENROL_FACE_PX: the face size below which
// recognition degrades, measured again here on stored photos scaled down at test time.
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Face, Landmarks } from '../../src/engine/detect.js';
import { cosineSimilarity } from '../../src/engine/embed.js';
import type { FaceEngine } from '../../src/engine/engine.js';
import { MIN_ENROL_FACE_PX, chooseEnrolmentFace } from '../../src/engine/enrol.js';
import { decodeImage } from '../../src/engine/image.js';
import { fixturesMissing, labels, readTestdata, testEngine } from '../helpers/fixtures.js';
import { largest } from '../helpers/generated-faces.js';

function face(box: [number, number, number, number], score: number): Face {
  const landmarks = Array.from({ length: 5 }, () => [box[0] + box[2] / 2, box[1] + box[3] / 2]) as Landmarks;
  return { box, landmarks, score };
}

describe('choosing the face to enrol', () => {
  it('enrols the largest face, the more confident of equal ones, with its rotation', () => {
    const small = face([0, 0, 40, 50], 0.99);
    const large = face([100, 0, 120, 150], 0.91);
    const twin = face([300, 0, 120, 150], 0.95);
    expect(chooseEnrolmentFace({ faces: [small, large], rotation: 90 })).toMatchObject({ ok: true, face: large, rotation: 90 });
    expect(chooseEnrolmentFace({ faces: [large, twin], rotation: 0 })).toMatchObject({ ok: true, face: twin });
  });

  it('says several faces only when another face is large enough to be recognised', () => {
    const subject = face([100, 0, 120, 150], 0.95);
    const background = face([0, 0, MIN_ENROL_FACE_PX - 1, 40], 0.93);
    const neighbour = face([300, 0, MIN_ENROL_FACE_PX, 40], 0.93);
    expect(chooseEnrolmentFace({ faces: [subject, background], rotation: 0 })).toMatchObject({ ok: true, severalFaces: false });
    expect(chooseEnrolmentFace({ faces: [subject, background, neighbour], rotation: 0 })).toMatchObject({ ok: true, severalFaces: true });
  });

  it('refuses no face and a face narrower than MIN_ENROL_FACE_PX, saying why', () => {
    expect(chooseEnrolmentFace({ faces: [], rotation: 0 })).toMatchObject({ ok: false, reason: 'no_face' });
    const tooSmall = chooseEnrolmentFace({ faces: [face([0, 0, MIN_ENROL_FACE_PX - 2, 60], 0.95)], rotation: 0 });
    expect(tooSmall).toMatchObject({ ok: false, reason: 'face_too_small' });
    expect(!tooSmall.ok && tooSmall.message).toContain(`${MIN_ENROL_FACE_PX} px`);
    expect(chooseEnrolmentFace({ faces: [face([0, 0, MIN_ENROL_FACE_PX, 60], 0.95)], rotation: 0 }).ok).toBe(true);
  });
});

describe.skipIf(fixturesMissing)('MIN_ENROL_FACE_PX: where recognition of small stored faces degrades', () => {
  let engine: FaceEngine;
  const photos = fixturesMissing ? [] : labels().filter((l) => l.path.startsWith('faces/'));
  let probes: { identity: string; embedding: Float32Array; faceWidth: number }[];

  beforeAll(async () => {
    engine = await testEngine();
    probes = [];
    for (const photo of photos) {
      const image = await decodeImage(readTestdata(photo.path));
      const best = largest(await engine.detect(image));
      const [embedding] = await engine.embedFaces(image, [best]);
      probes.push({ identity: photo.identity, embedding, faceWidth: Math.min(best.box[2], best.box[3]) });
    }
  });

  /**
   * Every photo stored with its face scaled to `faceWidth` px (a JPEG, as a backend stores it),
   * probed with the other photos of the same person at full size: the share of those pairs at or
   * above the recognizer's threshold, and how many stored photos had a face found at all.
   */
  async function sameIdentityAccepted(faceWidth: number): Promise<{ accepted: number; pairs: number; found: number }> {
    const threshold = engine.recognizer.defaultThreshold;
    let accepted = 0;
    let pairs = 0;
    let found = 0;
    for (const [i, photo] of photos.entries()) {
      const bytes = readTestdata(photo.path);
      const meta = await sharp(bytes).metadata();
      const k = faceWidth / probes[i].faceWidth;
      const stored = await sharp(bytes)
        .resize(Math.round(meta.width! * k), Math.round(meta.height! * k))
        .jpeg({ quality: 90 })
        .toBuffer();
      const image = await decodeImage(stored);
      const faces = await engine.detect(image);
      if (faces.length === 0) continue;
      found++;
      const [embedding] = await engine.embedFaces(image, [largest(faces)]);
      probes.forEach((probe, j) => {
        if (j === i || probe.identity !== photo.identity) return;
        pairs++;
        if (cosineSimilarity(probe.embedding, embedding) >= threshold) accepted++;
      });
    }
    return { accepted, pairs, found };
  }

  it('keeps recognising faces of MIN_ENROL_FACE_PX and loses many just below it', { timeout: 180_000 }, async () => {
    const BELOW = Math.round(MIN_ENROL_FACE_PX * 0.75);
    const atMin = await sameIdentityAccepted(MIN_ENROL_FACE_PX);
    const below = await sameIdentityAccepted(BELOW);
    const line = (px: number, r: { accepted: number; pairs: number; found: number }) =>
      `stored face ${px} px: ${r.accepted}/${r.pairs} same-person pairs accepted (${((100 * r.accepted) / r.pairs).toFixed(1)}%), face found in ${r.found}/${photos.length}`;
    console.log(`recognition by stored face size (MobileFaceNet, threshold ${engine.recognizer.defaultThreshold}):\n  ${line(MIN_ENROL_FACE_PX, atMin)}\n  ${line(BELOW, below)}`);
    expect(atMin.found).toBe(photos.length);
    expect(atMin.accepted / atMin.pairs).toBeGreaterThanOrEqual(0.95);
    expect(below.accepted / below.pairs).toBeLessThan(0.8);
  });
});
