// What the server's extractor makes of stored visitor photos (the ExtractResult of
// src/gallery/types.ts), and a sideways stored photo enrolled and recognised through the gallery.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_ENROL_FACE_PX } from '../../src/engine/enrol.js';
import type { GalleryHandle } from '../../src/gallery/index.js';
import type { ExtractResult, Extractor } from '../../src/gallery/types.js';
import { fixturesMissing, loadTestImage, readTestdata, testEngine } from '../helpers/fixtures.js';
import { largest } from '../helpers/generated-faces.js';
import { base64Of, dataUrlOf, embeddingOf, engineExtractor, openGallery, startTestPostgres, waitFor, type TestPostgres } from './helpers.js';

const SIDEWAYS = 'hard/obama1_rot90cw.jpg';
const MOBILEFACENET_THRESHOLD = 0.45;

describe.skipIf(fixturesMissing)("the server's extractor on stored photos", () => {
  let extractor: Extractor;

  beforeAll(async () => {
    ({ extractor } = await engineExtractor());
  });

  async function enrolled(stored: string | Buffer): Promise<Extract<ExtractResult, { ok: true }>> {
    const result = await extractor(stored);
    if (!result.ok) throw new Error(`not enrolled: ${result.reason}: ${result.message}`);
    return result;
  }

  it('enrols an upright photo the same from base64, a data URL and the bytes of a bytea column', async () => {
    const fromText = await enrolled(base64Of('faces/obama/1.jpg'));
    expect(fromText).toMatchObject({ ok: true, reason: null, face: { rotation: 0 } });
    for (const other of [dataUrlOf('faces/obama/1.jpg'), readTestdata('faces/obama/1.jpg')]) {
      const result = await enrolled(other);
      expect(result.face.box).toEqual(fromText.face.box);
      expect(Array.from(result.face.embedding)).toEqual(Array.from(fromText.face.embedding));
    }
  });

  it('turns a sideways photo upright, records the turn and gives the box in the photo as stored', async () => {
    const { face } = await enrolled(base64Of(SIDEWAYS));
    const { width, height } = await sharp(readTestdata(SIDEWAYS)).metadata();
    expect(face.rotation).toBe(270);
    const [x, y, w, h] = face.box;
    expect(w).toBeGreaterThan(h);
    expect(x >= 0 && y >= 0 && x + w <= width! && y + h <= height!).toBe(true);
  });

  it('enrols the largest face of a group photo and says there were several', async () => {
    const result = await enrolled(base64Of('multi/obama_and_biden.jpg'));
    expect(result.reason).toBe('several_faces');
    const faces = await (await testEngine()).detect(await loadTestImage('multi/obama_and_biden.jpg'));
    expect(result.face.box).toEqual(largest(faces).box);
  });

  it('names why a photo is not enrolled: no face, a face too small, not an image', async () => {
    expect(await extractor(base64Of('noface/coffee.jpg'))).toMatchObject({ ok: false, reason: 'no_face' });
    // The photo scaled down until its face is narrower than MIN_ENROL_FACE_PX.
    const photo = await loadTestImage('faces/obama/1.jpg');
    const [faceWidth] = largest(await (await testEngine()).detect(photo)).box.slice(2);
    const tiny = await sharp(readTestdata('faces/obama/1.jpg'))
      .resize({ width: Math.round((photo.width * (MIN_ENROL_FACE_PX - 8)) / faceWidth) })
      .jpeg()
      .toBuffer();
    const small = await extractor(tiny.toString('base64'));
    expect(small).toMatchObject({ ok: false, reason: 'face_too_small' });
    expect(!small.ok && small.message).toMatch(/px/);
    const truncated = readTestdata('faces/tom_cruise/1.jpg').subarray(0, 5000);
    expect(await extractor(truncated)).toMatchObject({ ok: false, reason: 'invalid_image' });
    expect(await extractor('not an image')).toMatchObject({ ok: false, reason: 'invalid_image' });
  });
});

describe.skipIf(fixturesMissing)('a sideways stored photo through the gallery', () => {
  let pg: TestPostgres;
  let gallery: GalleryHandle;
  const results = new Map<string, ExtractResult>();

  beforeAll(async () => {
    pg = await startTestPostgres();
    const { url, db } = await pg.database('visitors_sideways');
    await db.query(`CREATE TABLE visitors (visitor_id text PRIMARY KEY, "base64Image" text)`);
    await db.query(`INSERT INTO visitors (visitor_id, "base64Image") VALUES ('obama', $1), ('biden', $2)`, [base64Of(SIDEWAYS), base64Of('faces/biden/1.jpg')]);
    const { extractor } = await engineExtractor();
    const recording: Extractor = async (stored) => {
      const result = await extractor(stored);
      results.set(typeof stored === 'string' ? stored : stored.toString('base64'), result);
      return result;
    };
    gallery = await openGallery(url, recording);
    await gallery.ready;
  });

  afterAll(async () => {
    await gallery?.close();
    await pg?.destroy();
  });

  it("recognises the visitor whose only image is sideways, from another photo", async () => {
    await waitFor('both images enrolled', () => (gallery.status().faces === 2 ? true : undefined));
    expect(gallery.status()).toMatchObject({ faces: 2, failed: 0 });
    const sideways = results.get(base64Of(SIDEWAYS));
    expect(sideways).toMatchObject({ ok: true, face: { rotation: 270 } });
    const [match] = await gallery.search([await embeddingOf('faces/obama/2.jpg')]);
    expect(match?.visitorId).toBe('obama');
    expect(match!.similarity).toBeGreaterThanOrEqual(MOBILEFACENET_THRESHOLD);
  });
});
