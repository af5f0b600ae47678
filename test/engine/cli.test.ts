// The face-recog command as a person runs it.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { MODELS_DIR, REPO_ROOT, fixturesMissing, testEngine, testdataPath } from '../helpers/fixtures.js';
import { singleFacePhotos, tightCrops } from '../helpers/generated-faces.js';

const run = promisify(execFile);
const env = { ...process.env, MODELS_DIR, MODELS_OFFLINE: '1', RECOGNIZER: 'mobilefacenet' };

function cli(...args: string[]) {
  return cliWith(env, ...args);
}

function cliWith(environment: NodeJS.ProcessEnv, ...args: string[]) {
  return run(join(REPO_ROOT, 'node_modules', '.bin', 'tsx'), [join(REPO_ROOT, 'src', 'cli', 'main.ts'), ...args], { env: environment, cwd: REPO_ROOT });
}

describe.skipIf(fixturesMissing)('face-recog CLI', () => {
  it('detect prints the faces and draws them into --out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'face-recog-cli-'));
    const out = join(dir, 'annotated.png');
    const { stdout } = await cli('detect', testdataPath('multi/two_people.jpg'), '--out', out);
    const result = JSON.parse(stdout) as { count: number; faces: { bbox: number[]; landmarks: number[][] }[] };
    expect(result.count).toBe(2);
    expect(result.faces[0].landmarks).toHaveLength(5);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([1126, 661]);
    // The drawing changed pixels inside the first box's outline.
    const [x, y] = result.faces[0].bbox.map(Math.round);
    const original = await sharp(testdataPath('multi/two_people.jpg')).extract({ left: x, top: y, width: 40, height: 3 }).raw().toBuffer();
    const drawn = await sharp(out).removeAlpha().extract({ left: x, top: y, width: 40, height: 3 }).raw().toBuffer();
    expect(Buffer.compare(original, drawn)).not.toBe(0);
    await rm(dir, { recursive: true });
  });

  it('detect finds a close-up as the service does (every face size by default), without the recognizer model', async () => {
    const engine = await testEngine();
    const [source] = (await singleFacePhotos(engine)).filter((p) => p.path === 'faces/obama/1.jpg');
    // The face box spanning the whole side of a 320 px square: beyond a single 640 pass.
    const [crop] = await tightCrops(source, 1.0, [320]);
    expect(await engine.detect(crop.image, { detectSize: 640 })).toHaveLength(0);
    const dir = await mkdtemp(join(tmpdir(), 'face-recog-cli-'));
    const closeUp = join(dir, 'close-up.png');
    await sharp(crop.image.data, { raw: { width: crop.image.width, height: crop.image.height, channels: 3 } }).png().toFile(closeUp);
    // SFace is not in MODELS_DIR here: detect must not reach for it.
    const { stdout } = await cliWith({ ...env, RECOGNIZER: 'sface-2021dec' }, 'detect', closeUp);
    expect(JSON.parse(stdout).count).toBe(1);
    await rm(dir, { recursive: true });
  });

  it('compare matches the same person and not two different people', async () => {
    const same = JSON.parse((await cli('compare', testdataPath('faces/obama/1.jpg'), testdataPath('faces/obama/3.jpg'))).stdout);
    const different = JSON.parse((await cli('compare', testdataPath('faces/obama/1.jpg'), testdataPath('faces/biden/1.jpg'))).stdout);
    expect(same).toMatchObject({ matched: true, face_detected: [true, true], model: 'mobilefacenet' });
    expect(different).toMatchObject({ matched: false, face_detected: [true, true] });
    expect(same.similarity).toBeGreaterThan(different.similarity);
  });

  it('fails with one clear line when a model is missing offline', async () => {
    const error = await run(join(REPO_ROOT, 'node_modules', '.bin', 'tsx'), [join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'compare', testdataPath('faces/obama/1.jpg'), testdataPath('faces/obama/3.jpg')], {
      env: { ...env, RECOGNIZER: 'sface-2021dec' },
      cwd: REPO_ROOT,
    }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(error?.code).toBe(1);
    expect(error?.stderr.trim().split('\n')).toHaveLength(1);
    expect(error?.stderr).toContain('face_recognition_sface_2021dec.onnx');
  });
});
