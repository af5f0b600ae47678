// Quarter turns for photos whose EXIF orientation was lost: YuNet only finds upright faces, so a
// sideways photo is searched in a turned copy and what is found there is mapped back onto the
// image as displayed.
import sharp from 'sharp';
import type { Face, Landmarks, Point } from './detect.js';
import type { RgbImage } from './image.js';

/** Clockwise quarter turn applied to an image, in degrees. */
export type Rotation = 0 | 90 | 180 | 270;

/** Faces of an image as displayed, and the turn of the copy they were found in. */
export interface Detection {
  faces: Face[];
  rotation: Rotation;
}

/** The turns tried when an image shows no upright face. */
export const QUARTER_TURNS: readonly Rotation[] = [90, 180, 270];

/** `image` turned clockwise by `rotation` (pixels moved exactly, no resampling). */
export async function rotateImage(image: RgbImage, rotation: Rotation): Promise<RgbImage> {
  if (rotation === 0) return image;
  const { data, info } = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .rotate(rotation)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/**
 * A point of the copy turned by `rotation` back in the original width x height image. Pixel edges
 * are at integers (as box coordinates are), so a turned image's corner maps onto a corner.
 */
function unrotatePoint([x, y]: Point, rotation: Rotation, width: number, height: number): Point {
  switch (rotation) {
    case 0:
      return [x, y];
    case 90:
      return [y, height - x];
    case 180:
      return [width - x, height - y];
    case 270:
      return [width - y, x];
  }
}

/** A face found in the copy turned by `rotation`, in the coordinates of the original width x height image. */
export function unrotateFace(face: Face, rotation: Rotation, width: number, height: number): Face {
  if (rotation === 0) return face;
  const [x, y, w, h] = face.box;
  const [ax, ay] = unrotatePoint([x, y], rotation, width, height);
  const [bx, by] = unrotatePoint([x + w, y + h], rotation, width, height);
  return {
    box: [Math.min(ax, bx), Math.min(ay, by), Math.abs(bx - ax), Math.abs(by - ay)],
    landmarks: face.landmarks.map((p) => unrotatePoint(p, rotation, width, height)) as Landmarks,
    score: face.score,
  };
}
