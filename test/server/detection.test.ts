// Detection settings over HTTP (CONTRACT.md, Detection): faces of every size by default,
// `detect_size` as one OpenCV pass, and `auto_rotate` for photos whose orientation was lost.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing, loadTestImage, readTestdata, testEngine } from '../helpers/fixtures.js';
import { jpeg, largest, tightCrops } from '../helpers/generated-faces.js';
import { MemoryGallery } from './helpers/memory-gallery.js';
import { base64Of, post, startServer, type TestServer } from './helpers/server.js';

const SIDEWAYS = 'hard/obama1_rot90cw.jpg';

describe.skipIf(fixturesMissing)('detection over HTTP', () => {
  let server: TestServer;

  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    server = await startServer({ gallery });
  });
  afterAll(() => server?.close());

  it('finds the face of a close-up crop by default, which a single 640 pass misses', async () => {
    // The face box spans the whole 150 px image, as in stored visitor photos cut to the face.
    const photo = await loadTestImage('faces/obama/1.jpg');
    const face = largest(await (await testEngine()).detect(photo, { detectSize: 640 })).box;
    const [closeUp] = await tightCrops({ path: 'faces/obama/1.jpg', identity: 'obama', image: photo, face }, 1.0, [150]);
    const image = (await jpeg(closeUp.image)).toString('base64');
    expect((await post(server, '/api/v1/detect', { image })).body.count).toBe(1);
    expect((await post(server, '/api/v1/detect', { image, detect_size: 640 })).body.count).toBe(0);
    const recognized = await post(server, '/api/v1/recognize', { image });
    expect(recognized.body).toMatchObject({ face_detected: true, visitor_id: 'obama', matched: true });
  });

  it('turns a sideways photo only when auto_rotate is true, answering in its own coordinates', async () => {
    const image = base64Of(SIDEWAYS);
    const { width, height } = await sharp(readTestdata(SIDEWAYS)).metadata();
    expect((await post(server, '/api/v1/detect', { image })).body.count).toBe(0);
    const turned = await post(server, '/api/v1/detect', { image, auto_rotate: true });
    expect(turned.status).toBe(200);
    expect(turned.body.count).toBe(1);
    const [x, y, w, h] = turned.body.faces[0].bbox;
    expect(w).toBeGreaterThan(h);
    expect(x >= 0 && y >= 0 && x + w <= width! && y + h <= height!).toBe(true);
    const features = await post(server, '/api/v1/extract-features', { image, auto_rotate: true });
    expect(features.body).toMatchObject({ face_detected: true, bbox: turned.body.faces[0].bbox });
    const recognized = await post(server, '/api/v1/recognize', { image, auto_rotate: true });
    expect(recognized.body).toMatchObject({ face_detected: true, visitor_id: 'obama', matched: true });
  });

  it('refuses an auto_rotate that is not a boolean', async () => {
    const { status, body } = await post(server, '/api/v1/detect', { image: base64Of(SIDEWAYS), auto_rotate: 'yes' });
    expect(status).toBe(400);
    expect(body.error.code).toBe('invalid_request');
  });
});
