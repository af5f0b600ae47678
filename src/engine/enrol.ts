// Which face of a stored visitor photo is enrolled, and when a photo cannot be used: the gallery
// asks a visitor for a better photo from these reasons.
import type { Face } from './detect.js';
import type { Detection, Rotation } from './rotate.js';

/**
 * The smallest face (its box's shorter side, in pixels of the stored image) enrolled. Measured with
 * MobileFaceNet over testdata faces/ (77 photos, 296 same-person pairs): stored photos scaled down
 * so that the face is s px wide, probed with the other photos at full size. Same-person pairs at
 * or above the recognizer's threshold: full size 100%, 48 px 99.0%, 40 px 98.0%, 36 px 97.0%,
 * 32 px 96.3%, 30 px 90.5%, 28 px 85.1%, 26 px 77.0%, 24 px 64.5%, 20 px 33.9%. The curve is flat
 * down to 32 px and falls steeply below it (the 112 px aligned crop is then upsampled 3.5x and more).
 */
export const MIN_ENROL_FACE_PX = 32;

export type EnrolmentChoice =
  | { ok: true; face: Face; rotation: Rotation; severalFaces: boolean }
  | { ok: false; reason: 'no_face' | 'face_too_small'; message: string };

function shorterSide(face: Face): number {
  return Math.min(face.box[2], face.box[3]);
}

function area(face: Face): number {
  return face.box[2] * face.box[3];
}

/**
 * The face to enrol among those found in a stored photo: the largest (a visitor photo's subject is
 * in front), the more confident of equal ones. `severalFaces` when another face is large enough to
 * be recognised too, so that the photo is ambiguous about who the visitor is; smaller faces in the
 * background are not counted.
 */
export function chooseEnrolmentFace({ faces, rotation }: Detection): EnrolmentChoice {
  if (faces.length === 0) return { ok: false, reason: 'no_face', message: 'no face found in the stored image (upright or turned by 90, 180 or 270 degrees)' };
  const [face, ...others] = [...faces].sort((a, b) => area(b) - area(a) || b.score - a.score);
  const side = shorterSide(face);
  if (side < MIN_ENROL_FACE_PX) {
    return {
      ok: false,
      reason: 'face_too_small',
      message: `the largest face is ${Math.round(side)} px wide; at least ${MIN_ENROL_FACE_PX} px are needed to recognise it reliably`,
    };
  }
  return { ok: true, face, rotation, severalFaces: others.some((f) => shorterSide(f) >= MIN_ENROL_FACE_PX) };
}
