// Parity with OpenCV (python3-opencv 4.6), from golden data made by tools/golden/generate.py.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignToTemplate } from '../../src/engine/align.js';
import { writeBlob } from '../../src/engine/blob.js';
import { postProcessYuNet, type Face, type Landmarks, type YuNetOutputs } from '../../src/engine/detect.js';
import type { FaceEngine } from '../../src/engine/engine.js';
import type { RgbImage } from '../../src/engine/image.js';
import { getRecognizer } from '../../src/engine/models/registry.js';
import {
  base64Floats,
  base64Ints,
  cropImage,
  fixturesMissing,
  loadTestImage,
  readGolden,
  testEngine,
} from '../helpers/fixtures.js';

interface GoldenFace {
  box: [number, number, number, number];
  landmarks: [number, number][];
  score: number;
}

interface DetectCase {
  name: string;
  image: string;
  crop: [number, number, number, number] | null;
  width: number;
  height: number;
  pixelsSha256: string;
  padWidth: number;
  padHeight: number;
  scoreThreshold: number;
  nmsThreshold: number;
  topK: number;
  raw: Record<string, Record<'anchors' | 'cls' | 'obj' | 'bbox' | 'kps', string>>;
  faces: GoldenFace[];
}

interface AlignCase {
  name: string;
  image: string;
  pixelsSha256: string;
  landmarks: [number, number][];
  alignedRgb: string;
  sfaceBlobSha256: string;
  mobilefacenetBlob?: string;
}

const WIDTHS = { cls: 1, obj: 1, bbox: 4, kps: 10 } as const;

function pixelsSha256(image: RgbImage): string {
  return createHash('sha256').update(image.data).digest('hex');
}

function iou(a: number[], b: number[]): number {
  const x1 = Math.max(a[0], b[0]);
  const y1 = Math.max(a[1], b[1]);
  const x2 = Math.min(a[0] + a[2], b[0] + b[2]);
  const y2 = Math.min(a[1] + a[3], b[1] + b[3]);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}

function compareFaces(ours: Face[], golden: GoldenFace[]): { minIoU: number; maxLandmarkPx: number; maxScoreDiff: number } {
  expect(ours.length).toBe(golden.length);
  let minIoU = 1;
  let maxLandmarkPx = 0;
  let maxScoreDiff = 0;
  golden.forEach((g, i) => {
    minIoU = Math.min(minIoU, iou(ours[i].box, g.box));
    maxScoreDiff = Math.max(maxScoreDiff, Math.abs(ours[i].score - g.score));
    g.landmarks.forEach(([x, y], k) => {
      maxLandmarkPx = Math.max(maxLandmarkPx, Math.hypot(ours[i].landmarks[k][0] - x, ours[i].landmarks[k][1] - y));
    });
  });
  return { minIoU, maxLandmarkPx, maxScoreDiff };
}

describe.skipIf(fixturesMissing)('parity with OpenCV 4.6 (golden data)', () => {
  const detectGolden = readGolden<{ opencv: string; cases: DetectCase[] }>('yunet.json.gz');
  const alignGolden = readGolden<{ opencv: string; cases: AlignCase[] }>('align.json.gz');
  let engine: FaceEngine;
  const report: string[] = [];

  beforeAll(async () => {
    engine = await testEngine();
  });
  // The figures of the cases that ran (each case asserts its own bounds).
  afterAll(() => {
    console.log(`parity with OpenCV ${detectGolden.opencv}:\n  ${report.join('\n  ')}`);
  });

  async function caseImage(c: DetectCase): Promise<RgbImage> {
    const full = await loadTestImage(c.image);
    return c.crop ? cropImage(full, ...c.crop) : full;
  }

  describe('YuNet', () => {
    for (const c of detectGolden.cases) {
      it(`${c.name}: raw outputs, decoded faces and the whole detect call match OpenCV`, async () => {
        const image = await caseImage(c);
        expect(pixelsSha256(image), 'decoded pixels must equal cv2.imread').toBe(c.pixelsSha256);

        const blob = engine.detector.makeBlob(image);
        expect(blob.dims).toEqual([1, 3, c.padHeight, c.padWidth]);
        const outputs = await engine.detector.forward(blob);

        let maxRawDiff = 0;
        for (const [stride, heads] of Object.entries(c.raw)) {
          const anchors = base64Ints(heads.anchors);
          for (const head of Object.keys(WIDTHS) as (keyof typeof WIDTHS)[]) {
            const width = WIDTHS[head];
            const expected = base64Floats(heads[head]);
            const actual = outputs[`${head}_${stride}`];
            anchors.forEach((anchor, i) => {
              for (let k = 0; k < width; k++) {
                maxRawDiff = Math.max(maxRawDiff, Math.abs(actual[anchor * width + k] - expected[i * width + k]));
              }
            });
          }
        }
        expect(maxRawDiff).toBeLessThan(1e-4);

        const options = { scoreThreshold: c.scoreThreshold, nmsThreshold: c.nmsThreshold, topK: c.topK };
        const decoded = compareFaces(postProcessYuNet(outputs as YuNetOutputs, c.padWidth, c.padHeight, [8, 16, 32], options), c.faces);
        expect(decoded.minIoU).toBeGreaterThanOrEqual(0.99);
        expect(decoded.maxLandmarkPx).toBeLessThan(0.1);

        // The public call (no resize: the longer side is the detect size) gives the same faces.
        const detected = await engine.detect(image, { ...options, detectSize: Math.max(c.width, c.height) });
        const golden = [...c.faces].sort((a, b) => b.score - a.score);
        const whole = compareFaces(detected, golden);
        expect(whole.minIoU).toBeGreaterThanOrEqual(0.99);

        report.push(
          `${c.name}: ${c.faces.length} faces, raw max|diff| ${maxRawDiff.toExponential(2)}, ` +
            `min IoU ${decoded.minIoU.toFixed(5)}, landmark max ${decoded.maxLandmarkPx.toExponential(2)} px, score max|diff| ${decoded.maxScoreDiff.toExponential(2)}`,
        );
      });
    }
  });

  describe('alignment and recognizer input', () => {
    for (const c of alignGolden.cases) {
      it(`${c.name}: aligned crop matches FaceRecognizerSF.alignCrop`, async () => {
        const image = await loadTestImage(c.image);
        expect(pixelsSha256(image)).toBe(c.pixelsSha256);
        const aligned = alignToTemplate(image, c.landmarks as Landmarks);
        const expected = Buffer.from(c.alignedRgb, 'base64');
        let sum = 0;
        let max = 0;
        for (let i = 0; i < expected.length; i++) {
          const d = Math.abs(aligned.data[i] - expected[i]);
          sum += d;
          max = Math.max(max, d);
        }
        const mean = sum / expected.length;
        expect(mean).toBeLessThanOrEqual(1);
        report.push(`${c.name}: aligned crop mean |diff| ${mean.toFixed(4)}, max ${max}`);

        // SFace's blob (FaceRecognizerSF::feature): bit-identical to cv2.dnn.blobFromImage(swapRB).
        const goldenCrop: RgbImage = { data: expected, width: 112, height: 112 };
        const sfaceBlob = new Float32Array(3 * 112 * 112);
        writeBlob(sfaceBlob, 0, goldenCrop, 112, 112, getRecognizer('sface-2021dec').input);
        expect(createHash('sha256').update(Buffer.from(sfaceBlob.buffer)).digest('hex')).toBe(c.sfaceBlobSha256);

        if (c.mobilefacenetBlob) {
          const mfn = new Float32Array(3 * 112 * 112);
          writeBlob(mfn, 0, goldenCrop, 112, 112, getRecognizer('mobilefacenet').input);
          const want = base64Floats(c.mobilefacenetBlob);
          let maxBlob = 0;
          want.forEach((v, i) => (maxBlob = Math.max(maxBlob, Math.abs(v - mfn[i]))));
          expect(maxBlob).toBeLessThan(1e-5);
        }
      });
    }
  });
});
