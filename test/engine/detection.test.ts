// Detection by default finds faces of every size (CONTRACT.md, Detection): tight crops, close-ups,
// tiny faces in large canvases, turned photos, on images generated at test time from the shared
// photos; `detect_size` still runs exactly one OpenCV pass.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Face, Landmarks } from '../../src/engine/detect.js';
import type { FaceEngine } from '../../src/engine/engine.js';
import { mergePasses, passInputSizes, shrinkImage } from '../../src/engine/pyramid.js';
import { rotateImage, unrotateFace } from '../../src/engine/rotate.js';
import { decodeImage, type RgbImage } from '../../src/engine/image.js';
import { cosineSimilarity } from '../../src/engine/embed.js';
import { fixturesMissing, labels, loadTestImage, testEngine } from '../helpers/fixtures.js';
import {
  composite,
  finds,
  iou,
  jpeg,
  portrait,
  scaled,
  singleFacePhotos,
  tightCrops,
  turned,
  turnedBox,
  type Box,
  type SourceFace,
} from '../helpers/generated-faces.js';

// These bound a hang, not the speed: each sweep detects hundreds of images at several scales, which
// takes minutes on a loaded machine (4 minutes and more for a tight-crop sweep at load average 14).
const SWEEP_TIMEOUT_MS = 900_000;
const PHOTOS_TIMEOUT_MS = 600_000;

function face(box: Box, score: number): Face {
  const [x, y, w, h] = box;
  const landmarks = [0, 1, 2, 3, 4].map((i) => [x + (w * (i + 1)) / 6, y + h / 2]) as Landmarks;
  return { box, landmarks, score };
}

describe('pass plan, merge and pyramid levels', () => {
  const sizes = (w: number, h: number, finest: number) => passInputSizes(w, h, finest).map((s) => `${s.width}x${s.height}`);

  it('adds a coarser pass only while a face too large for the passes so far fits in the image', () => {
    // A 640x480 image can hold a face up to 576 px tall: beyond YuNet's 448, so one pass at a quarter.
    expect(sizes(640, 480, 640)).toEqual(['640x480', '160x120']);
    expect(sizes(480, 640, 640)).toEqual(['480x640', '120x160']);
    // 16:9 frames hold at most a 432 px face at 640x360: the single pass covers it.
    expect(sizes(1920, 1080, 640)).toEqual(['640x360']);
    expect(sizes(4000, 500, 640)).toEqual(['640x80']);
    // Small images are scaled up for the finest pass, and seen whole in the coarse one.
    expect(sizes(64, 64, 640)).toEqual(['640x640', '160x160']);
    expect(sizes(4000, 3000, 1280)).toEqual(['1280x960', '320x240']);
    expect(sizes(4000, 3000, 4096)).toEqual(['4096x3072', '1024x768', '256x192']);
    // A finest pass no larger than YuNet's range needs nothing else.
    expect(sizes(1000, 1000, 320)).toEqual(['320x320']);
  });

  it('keeps every face of the finest pass and adds later ones only where nothing overlaps', () => {
    const fine = [face([100, 100, 20, 24], 0.91), face([10, 10, 30, 36], 0.95)];
    const overlapping = face([98, 99, 22, 26], 0.99);
    const elsewhere = face([300, 50, 200, 260], 0.93);
    const merged = mergePasses([fine, [overlapping, elsewhere]], 0.3, 5000);
    expect(merged).toEqual([fine[1], elsewhere, fine[0]]);
    // Two fine faces overlapping each other stay (the pass's own NMS decided), later duplicates do not.
    const twins = [face([0, 0, 100, 100], 0.95), face([10, 0, 100, 100], 0.92)];
    expect(mergePasses([twins, [face([5, 0, 100, 100], 0.99), face([5, 0, 100, 100], 0.98)]], 0.3, 5000)).toEqual(twins);
    expect(mergePasses([fine, [elsewhere]], 0.3, 2)).toEqual([fine[1], elsewhere]);
  });

  it('shrinks a level to the rounded means of 4x4 blocks, dropping the incomplete edge', () => {
    // 8 px wide rows are whole 32-bit words; 9 px wide ones, or a buffer at an odd offset, are not.
    for (const [width, height, offset] of [
      [9, 5, 0],
      [8, 9, 0],
      [8, 4, 1],
    ]) {
      const data = new Uint8Array(offset + width * height * 3).subarray(offset);
      for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) % 256;
      const level = shrinkImage({ data, width, height });
      expect([level.width, level.height]).toEqual([Math.floor(width / 4), Math.floor(height / 4)]);
      for (let y = 0; y < level.height; y++) {
        for (let x = 0; x < level.width; x++) {
          for (let c = 0; c < 3; c++) {
            let sum = 0;
            for (let dy = 0; dy < 4; dy++) for (let dx = 0; dx < 4; dx++) sum += data[((y * 4 + dy) * width + x * 4 + dx) * 3 + c];
            expect(level.data[(y * level.width + x) * 3 + c]).toBe(Math.round(sum / 16));
          }
        }
      }
    }
  });

  it('maps a box and landmarks found in a turned copy back onto the image as displayed', async () => {
    // One white pixel at (x, y) = (5, 2) in a 7x4 image; its square [5, 2, 1, 1] must come back.
    const image: RgbImage = { data: new Uint8Array(7 * 4 * 3), width: 7, height: 4 };
    image.data.fill(255, (2 * 7 + 5) * 3, (2 * 7 + 5) * 3 + 3);
    for (const rotation of [90, 180, 270] as const) {
      const copy = await rotateImage(image, rotation);
      const at = copy.data.findIndex((v) => v === 255) / 3;
      const [cx, cy] = [at % copy.width, Math.floor(at / copy.width)];
      const back = unrotateFace(face([cx, cy, 1, 1], 0.9), rotation, image.width, image.height);
      expect(back.box).toEqual([5, 2, 1, 1]);
      // Landmark order is kept: each point moves with its pixel.
      const point = unrotateFace({ ...face([cx, cy, 1, 1], 0.9), landmarks: Array(5).fill([cx + 0.5, cy + 0.5]) as Landmarks }, rotation, 7, 4);
      expect(point.landmarks[0]).toEqual([5.5, 2.5]);
    }
  });
});

describe.skipIf(fixturesMissing)('finding faces in generated images', () => {
  let engine: FaceEngine;
  let photos: SourceFace[];
  const report: string[] = [];

  beforeAll(async () => {
    engine = await testEngine();
    photos = await singleFacePhotos(engine);
  });

  const FRACTIONS = [0.6, 0.8, 0.95, 1.0];
  const SIZES = [112, 150, 320, 1024, 2048];
  const MIN_FOUND = 0.98;

  for (const fraction of FRACTIONS) {
    it(`finds the face in tight crops (face box ${fraction} of the side) at ${SIZES.join(', ')} px`, { timeout: SWEEP_TIMEOUT_MS }, async () => {
      let found = 0;
      let single = 0;
      let total = 0;
      let others = 0;
      const missed: string[] = [];
      for (const photo of photos) {
        for (const crop of await tightCrops(photo, fraction, SIZES)) {
          const faces = await engine.detect(crop.image);
          total++;
          if (finds(faces, crop.face)) found++;
          else missed.push(crop.name);
          others += faces.filter((f) => iou(f.box, crop.face) < 0.4).length;
          if (finds(await engine.detect(crop.image, { detectSize: 640 }), crop.face)) single++;
        }
      }
      report.push(`tight crops at ${fraction}: default ${found}/${total}, single 640 pass ${single}/${total}, other detections ${others}${missed.length ? `; missed ${missed.join(', ')}` : ''}`);
      expect(total).toBe(photos.length * SIZES.length);
      expect(found / total).toBeGreaterThanOrEqual(MIN_FOUND);
    });
  }

  // Eight portraits per canvas, on photos without faces, in two rows of four.
  async function tinyFaces(width: number, height: number, denominator: number): Promise<{ found: number; total: number; others: number }> {
    const backgrounds = ['noface/brick.jpg', 'noface/coffee.jpg', 'noface/horse.jpg', 'noface/motorcycle.jpg'];
    const PER_CANVAS = 8;
    let found = 0;
    let total = 0;
    let others = 0;
    for (let start = 0; start < photos.length; start += PER_CANVAS) {
      const group = await Promise.all(photos.slice(start, start + PER_CANVAS).map(portrait));
      const faceSize = Math.max(width, height) / denominator;
      const placements = group.map((_, k) => ({ faceSize, left: (width / 4) * (k % 4) + width / 16, top: (height / 2) * Math.floor(k / 4) + height / 8 }));
      const canvas = await composite(backgrounds[(start / PER_CANVAS) % backgrounds.length], width, height, group, placements);
      const faces = await engine.detect(canvas.image);
      total += canvas.faces.length;
      found += canvas.faces.filter((box) => finds(faces, box)).length;
      others += faces.filter((f) => canvas.faces.every((box) => iou(f.box, box) < 0.4)).length;
    }
    return { found, total, others };
  }

  for (const [width, height] of [
    [640, 480],
    [1920, 1080],
    [4000, 3000],
  ]) {
    it(`finds tiny faces composited into a ${width}x${height} canvas (1/40 and 1/30 of its longer side)`, { timeout: PHOTOS_TIMEOUT_MS }, async () => {
      const at40 = await tinyFaces(width, height, 40);
      const at30 = await tinyFaces(width, height, 30);
      report.push(
        `tiny faces in ${width}x${height}: 1/40 (${(Math.max(width, height) / 40).toFixed(0)} px) ${at40.found}/${at40.total}, ` +
          `1/30 ${at30.found}/${at30.total}, other detections ${at40.others + at30.others}`,
      );
      expect(at40.found / at40.total).toBeGreaterThanOrEqual(0.8);
      expect(at30.found / at30.total).toBeGreaterThanOrEqual(0.95);
      expect(at40.others + at30.others).toBe(0);
    });
  }

  it('finds a face filling most of the image and the small faces around it', { timeout: PHOTOS_TIMEOUT_MS }, async () => {
    const SIDE = 1200;
    const SMALL_FACE = SIDE / 20;
    let bigFound = 0;
    let smallFound = 0;
    let smallTotal = 0;
    const bigOnes = photos.filter((_, i) => i % 8 === 0);
    for (const [i, big] of bigOnes.entries()) {
      // The large face spans 0.8 of the side; the corners are left for four small faces.
      const [base] = await tightCrops(big, 0.8, [SIDE]);
      const smallOnes = await Promise.all([1, 2, 3, 4].map((k) => portrait(photos[(i * 4 + k) % photos.length])));
      const corner = SIDE * 0.1;
      const placements = [
        [0, 0],
        [SIDE - corner, 0],
        [0, SIDE - corner],
        [SIDE - corner, SIDE - corner],
      ].map(([left, top]) => ({ faceSize: SMALL_FACE, left, top }));
      const canvas = await composite(base.image, SIDE, SIDE, smallOnes, placements);
      const faces = await engine.detect(canvas.image);
      if (finds(faces, base.face)) bigFound++;
      smallTotal += canvas.faces.length;
      smallFound += canvas.faces.filter((box) => finds(faces, box)).length;
    }
    report.push(`large face (0.8 of a ${SIDE} px square) with four ${SMALL_FACE} px faces: large ${bigFound}/${bigOnes.length}, small ${smallFound}/${smallTotal}`);
    expect(bigFound).toBe(bigOnes.length);
    expect(smallFound / smallTotal).toBeGreaterThanOrEqual(0.9);
  });

  it("keeps every face of the single 640 pass in multi/ photos, as they are and scaled", { timeout: PHOTOS_TIMEOUT_MS }, async () => {
    const rows: string[] = [];
    for (const label of labels().filter((l) => l.path.startsWith('multi/'))) {
      const original = await loadTestImage(label.path);
      for (const scale of [1, 0.5, 2]) {
        const image = scale === 1 ? original : await decodeImage(await jpeg(await scaled(original, scale)));
        const single = await engine.detect(image, { detectSize: 640 });
        const faces = await engine.detect(image);
        for (const s of single) expect(faces).toContainEqual(s);
        expect(faces.length).toBeGreaterThanOrEqual(single.length);
        rows.push(`${label.path} x${scale}: single ${single.length}, default ${faces.length}`);
      }
    }
    report.push(`multi/ photos:\n    ${rows.join('\n    ')}`);
  });

  it('finds no face in noface/ photos, as they are, scaled and turned', { timeout: PHOTOS_TIMEOUT_MS }, async () => {
    const found: string[] = [];
    for (const label of labels().filter((l) => l.path.startsWith('noface/'))) {
      const original = await loadTestImage(label.path);
      for (const scale of [1, 0.25, 3]) {
        const image = scale === 1 ? original : await scaled(original, scale);
        const faces = await engine.detect(image, { autoRotate: true });
        if (faces.length > 0) found.push(`${label.path} x${scale}: ${faces.length}`);
      }
    }
    expect(found).toEqual([]);
  });

  it('finds turned photos with auto-rotate, in the coordinates of the image as sent', { timeout: PHOTOS_TIMEOUT_MS }, async () => {
    const sample = photos;
    let checked = 0;
    for (const photo of sample) {
      const [upright] = await engine.analyze(photo.image, {}, 1);
      for (const degrees of [90, 180, 270] as const) {
        const copy = await decodeImage(await jpeg(await turned(photo.image, degrees)));
        const detection = await engine.detectWithRotation(copy, { autoRotate: true });
        expect(detection.rotation, `${photo.path} turned ${degrees}`).toBe((360 - degrees) % 360);
        const [best] = detection.faces;
        expect(iou(best.box, turnedBox(upright.box, degrees, photo.image.width, photo.image.height))).toBeGreaterThan(0.85);
        // The landmarks keep their meaning: the embedding from the turned photo is the upright one's.
        const [embedding] = await engine.embedFaces(copy, [best]);
        expect(cosineSimilarity(embedding, upright.embedding)).toBeGreaterThan(0.9);
        checked++;
      }
    }
    expect(checked).toBe(sample.length * 3);
  });

  it('finds hard/obama1_rot90cw.jpg only when asked to turn it', async () => {
    const image = await loadTestImage('hard/obama1_rot90cw.jpg');
    expect(await engine.detect(image)).toEqual([]);
    const detection = await engine.detectWithRotation(image, { autoRotate: true });
    expect(detection.rotation).toBe(270);
    expect(detection.faces).toHaveLength(1);
    const [x, y, w, h] = detection.faces[0].box;
    // Sideways: the face box is wider than tall, inside the image as sent.
    expect(w).toBeGreaterThan(h);
    expect(x + w).toBeLessThanOrEqual(image.width);
    expect(y + h).toBeLessThanOrEqual(image.height);
  });

  it('runs exactly one OpenCV pass when detect_size is given', async () => {
    const image = await loadTestImage('multi/selfie_many_people.jpg');
    const options = { ...engine.detectDefaults, detectSize: 640 };
    expect(await engine.detect(image, { detectSize: 640 })).toEqual(await engine.detector.detect(image, options));
    const crop = (await tightCrops(photos[0], 1.0, [150]))[0];
    expect(finds(await engine.detect(crop.image, { detectSize: 640 }), crop.face)).toBe(false);
    expect(finds(await engine.detect(crop.image), crop.face)).toBe(true);
  });

  it('prints what was found', () => {
    console.log(`detection on generated images:\n  ${report.join('\n  ')}`);
    expect(report.length).toBeGreaterThan(0);
  });
});
