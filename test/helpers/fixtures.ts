// Where the shared test data lives, and what to do when it is missing: fail loudly in CI,
// skip with the reason elsewhere.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { FaceEngine } from '../../src/engine/engine.js';
import { decodeImage, type RgbImage } from '../../src/engine/image.js';
import { MODELS_DIR, REPO_ROOT, TESTDATA_DIR } from './paths.js';

export { MODELS_DIR, REPO_ROOT, TESTDATA_DIR };

const required = [join(TESTDATA_DIR, 'labels.csv'), join(MODELS_DIR, 'face_detection_yunet_2023mar.onnx'), join(MODELS_DIR, 'MobileFaceNet.onnx')];
const missing = required.filter((p) => !existsSync(p));

/** Why the fixtures cannot be used, or null. Throws in CI: a missing fixture must fail the run. */
export const fixturesMissing: string | null = (() => {
  if (missing.length === 0) return null;
  const reason = `test fixtures missing: ${missing.join(', ')} (set TESTDATA_DIR / MODELS_DIR, or put ../shared beside the repo)`;
  if (process.env.CI) throw new Error(reason);
  console.warn(`skipping: ${reason}`);
  return reason;
})();

export function testdataPath(relative: string): string {
  return join(TESTDATA_DIR, relative);
}

export function readTestdata(relative: string): Buffer {
  return readFileSync(testdataPath(relative));
}

export function loadTestImage(relative: string): Promise<RgbImage> {
  return decodeImage(readTestdata(relative));
}

export interface Label {
  path: string;
  identity: string;
  faces: number | null;
}

export function labels(): Label[] {
  const [, ...rows] = readFileSync(testdataPath('labels.csv'), 'utf8').trim().split('\n');
  return rows.map((row) => {
    const [path, identity, faces] = row.split(',');
    return { path, identity, faces: faces === '' || faces === undefined ? null : Number(faces) };
  });
}

export function readGolden<T>(name: string): T {
  return JSON.parse(gunzipSync(readFileSync(join(REPO_ROOT, 'test', 'golden', name))).toString('utf8')) as T;
}

export function base64Floats(b64: string): Float32Array {
  const bytes = Buffer.from(b64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

export function base64Ints(b64: string): Int32Array {
  const bytes = Buffer.from(b64, 'base64');
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

export function cropImage(image: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let row = 0; row < height; row++) {
    const from = ((y + row) * image.width + x) * 3;
    data.set(image.data.subarray(from, from + width * 3), row * width * 3);
  }
  return { data, width, height };
}

let engine: Promise<FaceEngine> | undefined;

/** One engine per test process: YuNet + MobileFaceNet from MODELS_DIR, never downloading. */
export function testEngine(): Promise<FaceEngine> {
  engine ??= FaceEngine.load({ dir: MODELS_DIR, offline: true, detector: 'yunet-2023mar', recognizer: 'mobilefacenet' });
  return engine;
}
