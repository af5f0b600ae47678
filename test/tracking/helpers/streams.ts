// Camera streams for the tracking tests and bench, made at run time from ../shared/testdata: the
// shared clip decoded frame by frame with ffmpeg, and "walk-up" streams in which a face photo
// approaches a camera (growing, drifting, under changing light, blur and JPEG quality), and the
// visitor galleries they are matched against.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Face } from '../../../src/engine/detect.js';
import type { FaceEngine, FaceWithEmbedding } from '../../../src/engine/engine.js';
import { decodeImage, type RgbImage } from '../../../src/engine/image.js';
import type { Match } from '../../../src/gallery/types.js';
import { labels, readTestdata, testdataPath } from '../../helpers/fixtures.js';
import { MemoryGallery } from '../../server/helpers/memory-gallery.js';

export const CLIP = 'video/short_hamilton_clip.mp4';
/** The clip's frame rate (29.97 fps), for times in ms. */
export const CLIP_FPS = 30000 / 1001;
/** The person on stage in frames ~82-210 (MANIFEST.md); alex_lacamoire is the pianist, never detected. */
export const CLIP_VISITOR = 'lin_manuel_miranda';
export const CLIP_CAST = [CLIP_VISITOR, 'alex_lacamoire'];
/** The frames in which YuNet finds him: MANIFEST.md says ~90-210, the detector has him from 82 as he walks on. */
export const CLIP_VISITOR_FRAMES = { first: 82, last: 210 };

// The service embeds at most this many faces per frame by default (MAX_FACES).
const MAX_FACES = 20;

/** Every frame of the clip as decoded pixels (ffmpeg to a temp raw file, one frame per decoded picture). */
export function decodeClip(): RgbImage[] {
  const dir = mkdtempSync(join(tmpdir(), 'tracks-clip-'));
  try {
    const raw = join(dir, 'frames.rgb');
    const probe = execFileSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', testdataPath(CLIP)]);
    const [width, height] = probe.toString().trim().split(',').map(Number);
    // passthrough: no frame duplicated or dropped to make a constant rate.
    execFileSync('ffmpeg', ['-v', 'error', '-i', testdataPath(CLIP), '-an', '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', raw]);
    const bytes = readFileSync(raw);
    const size = width * height * 3;
    return Array.from({ length: bytes.length / size }, (_, i) => ({ data: bytes.subarray(i * size, (i + 1) * size), width, height }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One analysed frame: its faces (embedded as the service would) and each face's best visitor. */
export interface AnalysedFrame {
  faces: FaceWithEmbedding[];
  matches: (Match | null)[];
}

export async function analyseFrames(engine: FaceEngine, frames: Iterable<RgbImage> | AsyncIterable<RgbImage>): Promise<FaceWithEmbedding[][]> {
  const analysed: FaceWithEmbedding[][] = [];
  for await (const frame of frames) analysed.push(await engine.analyze(frame, {}, MAX_FACES));
  return analysed;
}

export async function matchFrames(gallery: MemoryGallery, frames: FaceWithEmbedding[][]): Promise<AnalysedFrame[]> {
  return Promise.all(frames.map(async (faces) => ({ faces, matches: await gallery.search(faces.map((f) => f.embedding)) })));
}

/** A face photo of labels.csv and the embedding of its most confident face. */
export interface EmbeddedPhoto {
  path: string;
  identity: string;
  embedding: Float32Array;
}

export async function embedFacePhotos(engine: FaceEngine): Promise<EmbeddedPhoto[]> {
  const photos: EmbeddedPhoto[] = [];
  for (const { path, identity } of labels().filter((l) => l.path.startsWith('faces/'))) {
    const [face] = await engine.analyze(await decodeImage(readTestdata(path)), {}, 1);
    if (face) photos.push({ path, identity, embedding: face.embedding });
  }
  return photos;
}

/** An in-memory gallery of the photos the filter keeps, each enrolled under its identity. */
export function galleryOf(photos: EmbeddedPhoto[], keep: (photo: EmbeddedPhoto) => boolean): MemoryGallery {
  const gallery = new MemoryGallery();
  for (const photo of photos.filter(keep)) gallery.entries.push({ visitorId: photo.identity, embedding: photo.embedding });
  return gallery;
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so that a stream is the same every run. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAME = { width: 640, height: 360 };
const BACKGROUNDS = ['noface/brick.jpg', 'noface/coffee.jpg', 'noface/rocket.jpg', 'noface/coins.jpg'];
// The walker's face grows from this width to the next (px in the 640x360 frame) as they approach.
const FACE_WIDTH_FAR = 45;
const FACE_WIDTH_NEAR = 150;
// The photo is cut this many face widths wide around the face, so that hair and shoulders come along.
const CROP_FACE_WIDTHS = 2.4;
const JPEG_QUALITY = { min: 30, max: 90 };
const BRIGHTNESS = { min: 0.55, max: 1.25 };
const BLUR_SIGMAS = [0, 0, 0, 0.8, 1.6];

/**
 * `frames` JPEG frames in which the face at `box` of `photo` walks up to the camera: the face
 * grows from 45 to 150 px wide, drifts across a blurred background, and every frame has its own
 * brightness, blur and JPEG quality (what a lobby camera does to a face), all from `seed`.
 */
export async function walkUpStream(photo: string, box: Face['box'], seed: number, frames: number): Promise<Buffer[]> {
  const random = seededRandom(seed);
  const image = await decodeImage(readTestdata(photo));
  const [fx, fy, fw, fh] = box;
  const cropSide = Math.min(image.width, image.height, Math.round(fw * CROP_FACE_WIDTHS));
  const left = clamp(Math.round(fx + fw / 2 - cropSide / 2), 0, image.width - cropSide);
  const top = clamp(Math.round(fy + fh / 2 - cropSide / 2), 0, image.height - cropSide);
  const crop = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract({ left, top, width: cropSide, height: cropSide })
    .png()
    .toBuffer();
  const background = await sharp(readTestdata(BACKGROUNDS[Math.floor(random() * BACKGROUNDS.length)]))
    .resize(FRAME.width, FRAME.height, { fit: 'cover' })
    .blur(6)
    .toBuffer();
  const start = { x: 0.2 + random() * 0.6, y: 0.3 + random() * 0.4 };
  const end = { x: 0.2 + random() * 0.6, y: 0.3 + random() * 0.4 };
  const faceScale = fw / cropSide;
  const jpegs: Buffer[] = [];
  for (let i = 0; i < frames; i++) {
    const progress = frames === 1 ? 1 : i / (frames - 1);
    const faceWidth = FACE_WIDTH_FAR + (FACE_WIDTH_NEAR - FACE_WIDTH_FAR) * progress;
    const side = Math.min(FRAME.height, Math.round(faceWidth / faceScale));
    const cx = (start.x + (end.x - start.x) * progress) * FRAME.width + (random() - 0.5) * 6;
    const cy = (start.y + (end.y - start.y) * progress) * FRAME.height + (random() - 0.5) * 6;
    const sigma = BLUR_SIGMAS[Math.floor(random() * BLUR_SIGMAS.length)];
    let walker = sharp(crop).resize(side, side).modulate({ brightness: BRIGHTNESS.min + random() * (BRIGHTNESS.max - BRIGHTNESS.min) });
    if (sigma > 0) walker = walker.blur(sigma);
    jpegs.push(
      await sharp(background)
        .composite([
          {
            input: await walker.toBuffer(),
            left: clamp(Math.round(cx - side / 2), 0, FRAME.width - side),
            top: clamp(Math.round(cy - side / 2), 0, FRAME.height - side),
          },
        ])
        .jpeg({ quality: Math.round(JPEG_QUALITY.min + random() * (JPEG_QUALITY.max - JPEG_QUALITY.min)) })
        .toBuffer(),
    );
  }
  return jpegs;
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
