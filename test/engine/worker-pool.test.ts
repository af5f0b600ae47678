// The inference workers: the same faces and embeddings as the engine in this thread, the encoded
// bytes moved (not copied) to a worker, errors that keep their code, work spread over every
// worker, and a clean stop. This file loads the workers from TypeScript source under vitest;
// test/engine/worker-pool-runtimes.test.ts starts them under tsx and from the compiled dist too.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_IMAGE_LIMITS } from '../../src/engine/image.js';
import { EnginePool } from '../../src/engine/worker-pool.js';
import { MODELS_DIR, fixturesMissing, readTestdata, testEngine } from '../helpers/fixtures.js';

const OPTIONS = { request: {}, maxFaces: 8, limits: DEFAULT_IMAGE_LIMITS };

/** An encoded image in a buffer of its own, as the pipeline hands one over. */
const bytesOf = (buffer: Buffer) => new Uint8Array(buffer);

describe.skipIf(fixturesMissing)('EnginePool', () => {
  let pool: EnginePool;
  beforeAll(async () => {
    // Two threads for an image run alone, one each for images run beside others: both engines of each worker are used below.
    pool = await EnginePool.start({ dir: MODELS_DIR, offline: true, detector: 'yunet-2023mar', recognizer: 'mobilefacenet', intraOpThreads: 2, workers: 2, tasksPerWorker: 2 });
  });
  afterAll(() => pool?.close());

  it('finds the faces and embeddings the engine finds in this thread', async () => {
    const engine = await testEngine();
    for (const photo of ['multi/selfie_many_people.jpg', 'faces/obama/1.jpg']) {
      const jpeg = readTestdata(photo);
      const [inWorker, inThread] = await Promise.all([pool.analyzeImage(bytesOf(jpeg), OPTIONS), engine.analyzeImage(bytesOf(jpeg), OPTIONS)]);
      expect(inWorker.faces.length).toBeGreaterThan(0);
      expect(inWorker.faces).toEqual(inThread.faces);
      expect(inWorker.embeddings).toEqual(inThread.embeddings);
      expect(inWorker.seconds.decode).toBeGreaterThan(0);
    }
    expect(pool.detectorName).toBe(engine.detectorName);
    expect(pool.recognizer).toEqual(engine.recognizer);
  });

  it('moves the bytes to the worker instead of copying them', async () => {
    const bytes = bytesOf(readTestdata('faces/obama/1.jpg'));
    const analysis = pool.analyzeImage(bytes, OPTIONS);
    expect(bytes.byteLength).toBe(0);
    expect((await analysis).faces.length).toBe(1);
  });

  it('copies bytes that share their buffer, leaving the owner intact', async () => {
    const jpeg = readTestdata('faces/obama/1.jpg');
    const shared = new Uint8Array(jpeg.byteLength + 16);
    shared.set(jpeg, 16);
    const view = shared.subarray(16);
    expect((await pool.analyzeImage(view, OPTIONS)).faces.length).toBe(1);
    expect(view.byteLength).toBe(jpeg.byteLength);
  });

  it('enrols a stored photo turned sideways as the engine in this thread does', async () => {
    const turned = await sharp(readTestdata('faces/obama/1.jpg')).rotate(90).jpeg().toBuffer();
    const engine = await testEngine();
    const [inWorker, inThread] = await Promise.all([pool.enrolImage(bytesOf(turned), DEFAULT_IMAGE_LIMITS), engine.enrolImage(bytesOf(turned), DEFAULT_IMAGE_LIMITS)]);
    expect(inWorker.choice).toMatchObject({ ok: true, rotation: 270 });
    expect(inWorker).toEqual({ ...inThread, seconds: inWorker.seconds });
  });

  it('rejects with the engine error code, and keeps serving', async () => {
    await expect(pool.analyzeImage(bytesOf(Buffer.from('not an image at all')), OPTIONS)).rejects.toMatchObject({ code: 'invalid_image' });
    await expect(pool.analyzeImage(bytesOf(readTestdata('faces/obama/1.jpg')), { ...OPTIONS, expiresAt: Date.now() - 1 })).rejects.toMatchObject({
      code: 'timeout',
    });
    expect((await pool.analyzeImage(bytesOf(readTestdata('faces/obama/1.jpg')), OPTIONS)).faces.length).toBe(1);
  });

  it('holds at most tasksPerWorker tasks per worker and queues the rest, with the same answers side by side', async () => {
    const jpeg = readTestdata('faces/obama/1.jpg');
    const alone = await pool.analyzeImage(bytesOf(jpeg), OPTIONS);
    const tasks = Array.from({ length: 9 }, () => pool.analyzeImage(bytesOf(jpeg), OPTIONS));
    expect(pool.pending).toBe(9);
    const results = await Promise.all(tasks);
    for (const r of results) expect({ faces: r.faces, embeddings: r.embeddings }).toEqual({ faces: alone.faces, embeddings: alone.embeddings });
    expect(pool.pending).toBe(0);
  });

  it('finishes the tasks it holds when closed, then refuses new ones', async () => {
    const closing = await EnginePool.start({ dir: MODELS_DIR, offline: true, detector: 'yunet-2023mar', recognizer: 'mobilefacenet', intraOpThreads: 1, workers: 1, tasksPerWorker: 1 });
    const jpeg = readTestdata('faces/obama/1.jpg');
    const held = closing.analyzeImage(bytesOf(jpeg), OPTIONS);
    const queued = closing.analyzeImage(bytesOf(jpeg), OPTIONS);
    const closed = closing.close();
    await expect(queued).rejects.toMatchObject({ code: 'not_ready' });
    expect((await held).faces.length).toBe(1);
    await closed;
    await expect(closing.analyzeImage(bytesOf(jpeg), OPTIONS)).rejects.toMatchObject({ code: 'not_ready' });
  });

  it('fails to start with the reason a model cannot be loaded', async () => {
    await expect(
      EnginePool.start({ dir: '/nonexistent-models', offline: true, detector: 'yunet-2023mar', recognizer: 'mobilefacenet', workers: 1, tasksPerWorker: 1 }),
    ).rejects.toMatchObject({ code: 'model_unavailable' });
  });
});
