// Test images made at test time from the shared photos (never stored in the repo): tight crops,
// tiny faces composited into large canvases, turned copies. Each comes with where its face is.
import sharp, { type OverlayOptions, type Sharp } from 'sharp';
import type { Face } from '../../src/engine/detect.js';
import type { FaceEngine } from '../../src/engine/engine.js';
import type { RgbImage } from '../../src/engine/image.js';
import { labels, loadTestImage, readTestdata } from './fixtures.js';

export type Box = [number, number, number, number];

/** A generated image and the box of the face it shows, in its pixels. */
export interface FaceImage {
  name: string;
  image: RgbImage;
  face: Box;
}

/** A face photo, and its face as the single 640 pass finds it (the largest one). */
export interface SourceFace {
  path: string;
  identity: string;
  image: RgbImage;
  face: Box;
}

export function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  const intersection = w > 0 && h > 0 ? w * h : 0;
  return intersection / (a[2] * a[3] + b[2] * b[3] - intersection);
}

/** The same face: boxes from different scales and crops agree this well. */
export const SAME_FACE_IOU = 0.4;

export function finds(faces: readonly Face[], box: Box): boolean {
  return faces.some((f) => iou(f.box, box) >= SAME_FACE_IOU);
}

export function largest(faces: readonly Face[]): Face {
  return faces.reduce((a, b) => (b.box[2] * b.box[3] > a.box[2] * a.box[3] ? b : a));
}

/** Every photo of faces/ labelled with exactly one face, with its face box. */
export async function singleFacePhotos(engine: FaceEngine): Promise<SourceFace[]> {
  const photos: SourceFace[] = [];
  for (const label of labels().filter((l) => l.path.startsWith('faces/') && l.faces === 1)) {
    const image = await loadTestImage(label.path);
    const face = largest(await engine.detect(image, { detectSize: 640 }));
    photos.push({ path: label.path, identity: label.identity, image, face: face.box });
  }
  return photos;
}

function raw(image: RgbImage): Sharp {
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
}

async function rgb(pipeline: Sharp): Promise<RgbImage> {
  const { data, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** The square around the face whose side the face box's longer side spans `fraction` of (shifted, then shrunk, to stay inside the photo). */
function squareAround(source: SourceFace, fraction: number): { left: number; top: number; side: number } {
  const [x, y, w, h] = source.face;
  const side = Math.min(Math.round(Math.max(w, h) / fraction), source.image.width, source.image.height);
  const left = Math.round(Math.min(Math.max(x + w / 2 - side / 2, 0), source.image.width - side));
  const top = Math.round(Math.min(Math.max(y + h / 2 - side / 2, 0), source.image.height - side));
  return { left, top, side };
}

/** Tight crops of the photo at each output size, as ID photos and small stored images are. */
export async function tightCrops(source: SourceFace, fraction: number, sizes: readonly number[]): Promise<FaceImage[]> {
  const { left, top, side } = squareAround(source, fraction);
  const region = raw(source.image).extract({ left, top, width: side, height: side });
  const [x, y, w, h] = source.face;
  return Promise.all(
    sizes.map(async (size) => {
      const k = size / side;
      return {
        name: `${source.path} at ${fraction} -> ${size}px`,
        image: await rgb(region.clone().resize(size, size)),
        face: [(x - left) * k, (y - top) * k, w * k, h * k] as Box,
      };
    }),
  );
}

/** A face with the surroundings of a head-and-shoulders photo, as a PNG, and where the face is in it. */
export async function portrait(source: SourceFace): Promise<{ png: Buffer; side: number; face: Box }> {
  const CONTEXT_FRACTION = 0.5;
  const { left, top, side } = squareAround(source, CONTEXT_FRACTION);
  const [x, y, w, h] = source.face;
  const png = await raw(source.image).extract({ left, top, width: side, height: side }).png().toBuffer();
  return { png, side, face: [x - left, y - top, w, h] };
}

export interface Placement {
  /** The portrait's face box longer side in the canvas, in pixels. */
  faceSize: number;
  left: number;
  top: number;
}

/** Portraits pasted onto a background (a photo of testdata, or an image) covering width x height, each scaled to its placement. */
export async function composite(
  background: string | RgbImage,
  width: number,
  height: number,
  portraits: { png: Buffer; side: number; face: Box }[],
  placements: Placement[],
): Promise<{ image: RgbImage; faces: Box[] }> {
  const layers: OverlayOptions[] = [];
  const faces: Box[] = [];
  for (const [i, p] of portraits.entries()) {
    const { faceSize, left, top } = placements[i];
    const k = faceSize / Math.max(p.face[2], p.face[3]);
    const size = Math.max(1, Math.round(p.side * k));
    layers.push({ input: await sharp(p.png).resize(size, size).toBuffer(), left: Math.round(left), top: Math.round(top) });
    faces.push([Math.round(left) + p.face[0] * k, Math.round(top) + p.face[1] * k, p.face[2] * k, p.face[3] * k]);
  }
  const base = typeof background === 'string' ? sharp(readTestdata(background)) : raw(background);
  const canvas = await base.resize(width, height, { fit: 'cover' }).png().toBuffer();
  return { image: await rgb(sharp(canvas).composite(layers)), faces };
}

/** `image` turned clockwise by `degrees`, through sharp (not the engine's own rotation). */
export async function turned(image: RgbImage, degrees: 90 | 180 | 270): Promise<RgbImage> {
  return rgb(raw(image).rotate(degrees));
}

/** The box `box` of a width x height image becomes once the image is turned clockwise by `degrees`. */
export function turnedBox([x, y, w, h]: Box, degrees: 90 | 180 | 270, width: number, height: number): Box {
  if (degrees === 90) return [height - y - h, x, h, w];
  if (degrees === 180) return [width - x - w, height - y - h, w, h];
  return [y, width - x - w, h, w];
}

/** `image` scaled by `scale` (bilinear). */
export function scaled(image: RgbImage, scale: number): Promise<RgbImage> {
  return rgb(raw(image).resize(Math.round(image.width * scale), Math.round(image.height * scale)));
}

/** The JPEG a visitor backend would store for `image`. */
export function jpeg(image: RgbImage, quality = 90): Promise<Buffer> {
  return raw(image).jpeg({ quality }).toBuffer();
}
