// The HTTP API of CONTRACT.md over a real socket, with the real engine and real photos.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturesMissing, readTestdata } from '../helpers/fixtures.js';
import { MemoryGallery } from './helpers/memory-gallery.js';
import { base64Of, post, startServer, type TestServer } from './helpers/server.js';

const OBAMA = 'faces/obama/1.jpg';
const TWO_PEOPLE = 'multi/two_people.jpg';
const NO_FACE = 'noface/coffee.jpg';

describe.skipIf(fixturesMissing)('HTTP API', () => {
  let server: TestServer;
  let obama: string;

  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    await gallery.enroll('biden', 'faces/biden/1.jpg');
    await gallery.enroll('kit', 'faces/kit_harington/1.jpg');
    server = await startServer({ gallery });
    obama = base64Of(OBAMA);
  });
  afterAll(() => server?.close());

  describe('POST /api/v1/detect', () => {
    it('finds one face with box, score and five landmarks in image pixels', async () => {
      const { status, body } = await post(server, '/api/v1/detect', { image: obama });
      expect(status).toBe(200);
      expect(body.count).toBe(1);
      const [face] = body.faces;
      const [x, y, w, h] = face.bbox;
      expect(Object.keys(face)).toEqual(['bbox', 'confidence', 'landmarks']);
      expect(face.confidence).toBeGreaterThan(0.9);
      expect(face.landmarks).toHaveLength(5);
      // Inside the 910x1137 photo, and the eyes inside the box.
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x + w).toBeLessThanOrEqual(910);
      expect(y + h).toBeLessThanOrEqual(1137);
      for (const [lx, ly] of face.landmarks.slice(0, 2)) {
        expect(lx).toBeGreaterThan(x);
        expect(lx).toBeLessThan(x + w);
        expect(ly).toBeGreaterThan(y);
        expect(ly).toBeLessThan(y + h);
      }
      // Coordinates rounded to two decimals.
      for (const v of [...face.bbox, ...face.landmarks.flat()]) expect(Math.round(v * 100) / 100).toBe(v);
    });

    it('finds every face of a group photo, most confident first, and none in a photo without people', async () => {
      const group = await post(server, '/api/v1/detect', { image: base64Of(TWO_PEOPLE) });
      expect(group.body.count).toBe(2);
      expect(group.body.faces[0].confidence).toBeGreaterThanOrEqual(group.body.faces[1].confidence);
      const none = await post(server, '/api/v1/detect', { image: base64Of(NO_FACE) });
      expect(none.body).toEqual({ faces: [], count: 0 });
    });

    it('accepts data URLs, PNG and WebP, and applies EXIF orientation', async () => {
      const dataUrl = await post(server, '/api/v1/detect', { image: `data:image/jpeg;base64,${obama}` });
      expect(dataUrl.body.count).toBe(1);
      const png = await post(server, '/api/v1/detect', { image: base64Of('hard/obama2_rgba.png') });
      expect(png.body.count).toBe(1);
      const webp = await post(server, '/api/v1/detect', { image: base64Of('hard/deepface_p03_webp_named_jpg.jpg') });
      expect(webp.body.count).toBe(1);
      // Pixels stored sideways with orientation 6 ("rotate 90 clockwise to display"): the answer is
      // in displayed coordinates, so it must equal the upright photo's.
      const upright = await sharp(readTestdata(OBAMA)).resize(455).jpeg().toBuffer();
      const sideways = await sharp(upright).rotate(-90).withMetadata({ orientation: 6 }).jpeg().toBuffer();
      const a = await post(server, '/api/v1/detect', { image: upright.toString('base64') });
      const b = await post(server, '/api/v1/detect', { image: sideways.toString('base64') });
      expect(b.body.count).toBe(1);
      a.body.faces[0].bbox.forEach((v: number, i: number) => expect(Math.abs(v - b.body.faces[0].bbox[i])).toBeLessThan(4));
    });

    it('honours per-request detect_size and score_threshold', async () => {
      const strict = await post(server, '/api/v1/detect', { image: base64Of(TWO_PEOPLE), score_threshold: 0.999 });
      expect(strict.body.count).toBe(0);
      const small = await post(server, '/api/v1/detect', { image: obama, detect_size: 160 });
      expect(small.status).toBe(200);
      expect(small.body.count).toBe(1);
    });
  });

  describe('POST /api/v1/extract-features and its alias /api/v1/extract', () => {
    it('returns the L2-normalised vector of the most confident face with dimension and model', async () => {
      for (const path of ['/api/v1/extract-features', '/api/v1/extract']) {
        const { status, body } = await post(server, path, { image: obama });
        expect(status).toBe(200);
        expect(body).toMatchObject({ face_detected: true, dimension: 128, model: 'mobilefacenet' });
        expect(body.feature_vector).toHaveLength(128);
        const norm = Math.hypot(...body.feature_vector);
        expect(norm).toBeCloseTo(1, 4);
        expect(body.bbox).toHaveLength(4);
      }
    });

    it('says so when there is no face', async () => {
      const { body } = await post(server, '/api/v1/extract-features', { image: base64Of(NO_FACE) });
      expect(body).toEqual({ feature_vector: null, face_detected: false, dimension: 128, model: 'mobilefacenet', bbox: null });
    });
  });

  describe('POST /api/v1/recognize', () => {
    it('names a known visitor from another photo of them', async () => {
      const { status, body } = await post(server, '/api/v1/recognize', { image: obama });
      expect(status).toBe(200);
      expect(body).toMatchObject({ visitor_id: 'obama', matched: true, face_detected: true, threshold: 0.45 });
      expect(body.confidence).toBeGreaterThan(0.45);
      expect(body.faces).toHaveLength(1);
      // The face's confidence is its match, as the guide reads it; the detector's score has its own name.
      expect(Object.keys(body.faces[0])).toEqual(['bbox', 'landmarks', 'detection_confidence', 'confidence', 'visitor_id', 'matched']);
      expect(body.faces[0]).toMatchObject({ visitor_id: 'obama', matched: true, confidence: body.confidence });
      const detected = await post(server, '/api/v1/detect', { image: obama });
      expect(body.faces[0].detection_confidence).toBe(detected.body.faces[0].confidence);
      expect(body.faces[0].bbox).toEqual(detected.body.faces[0].bbox);
    });

    it('reports every face of a group photo with its own visitor', async () => {
      const { body } = await post(server, '/api/v1/recognize', { image: base64Of(TWO_PEOPLE) });
      expect(body.faces).toHaveLength(2);
      expect(body.faces.map((f: { visitor_id: string }) => f.visitor_id).sort()).toEqual(['biden', 'obama']);
      for (const face of body.faces) {
        expect(face.matched).toBe(true);
        expect(face.confidence).toBeGreaterThan(0.45);
        expect(face.bbox).toHaveLength(4);
        expect(face.landmarks).toHaveLength(5);
        expect(face.detection_confidence).toBeGreaterThan(0.9);
      }
      // Top-level fields describe the most confident face.
      expect(body.faces[0].detection_confidence).toBeGreaterThanOrEqual(body.faces[1].detection_confidence);
      expect(body.visitor_id).toBe(body.faces[0].visitor_id);
      expect(body.confidence).toBe(body.faces[0].confidence);
    });

    it('never names a stranger: visitor_id stays null below the threshold, the similarity is still reported', async () => {
      const { body } = await post(server, '/api/v1/recognize', { image: base64Of('faces/tom_cruise/1.jpg') });
      expect(body.face_detected).toBe(true);
      expect(body.matched).toBe(false);
      expect(body.visitor_id).toBeNull();
      expect(typeof body.confidence).toBe('number');
      expect(body.confidence).toBeLessThan(0.45);
      expect(body.faces[0]).toMatchObject({ visitor_id: null, matched: false });
    });

    it('applies the threshold on the exact similarity', async () => {
      const first = await post(server, '/api/v1/recognize', { image: obama });
      const similarity: number = first.body.confidence;
      const at = await post(server, '/api/v1/recognize', { image: obama, threshold: similarity });
      expect(at.body).toMatchObject({ matched: true, visitor_id: 'obama' });
      const above = await post(server, '/api/v1/recognize', { image: obama, threshold: Math.min(1, similarity + 1e-9) });
      expect(above.body).toMatchObject({ matched: false, visitor_id: null, confidence: similarity });
      const lenient = await post(server, '/api/v1/recognize', { image: base64Of('faces/tom_cruise/1.jpg'), threshold: -1 });
      expect(lenient.body.matched).toBe(true);
    });

    it('answers no face and no match for a photo without people', async () => {
      const { body } = await post(server, '/api/v1/recognize', { image: base64Of(NO_FACE) });
      expect(body).toMatchObject({ visitor_id: null, confidence: null, matched: false, face_detected: false, faces: [] });
    });

    it('reports a null similarity when the gallery is empty', async () => {
      const empty = await startServer({ gallery: new MemoryGallery() });
      try {
        const { body } = await post(empty, '/api/v1/recognize', { image: obama });
        expect(body).toMatchObject({ visitor_id: null, confidence: null, matched: false, face_detected: true });
        expect(body.faces[0].confidence).toBeNull();
        expect(body.faces[0].detection_confidence).toBeGreaterThan(0.9);
      } finally {
        await empty.close();
      }
    });

    it('embeds and matches only MAX_FACES faces but still lists every face', async () => {
      const limited = await startServer({ env: { MAX_FACES: '1' }, gallery: server.gallery });
      try {
        const { body } = await post(limited, '/api/v1/recognize', { image: base64Of(TWO_PEOPLE) });
        expect(body.faces).toHaveLength(2);
        expect(body.faces[0].confidence).toEqual(expect.any(Number));
        expect(body.faces[1]).toMatchObject({ confidence: null, visitor_id: null, matched: false });
        expect(body.faces[1].detection_confidence).toEqual(expect.any(Number));
      } finally {
        await limited.close();
      }
    });

    it('answers 503 gallery_unavailable with Retry-After while the database is down', async () => {
      server.gallery.outage = 'connection refused';
      try {
        const { status, headers, body } = await post(server, '/api/v1/recognize', { image: obama });
        expect(status).toBe(503);
        expect(body.error.code).toBe('gallery_unavailable');
        expect(Number(headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      } finally {
        server.gallery.outage = null;
      }
    });
  });

  describe('POST /api/v1/verify', () => {
    it('matches two photos of one person and not two different people', async () => {
      const same = await post(server, '/api/v1/verify', { image1: obama, image2: base64Of('faces/obama/3.jpg') });
      expect(same.status).toBe(200);
      expect(same.body).toMatchObject({ matched: true, threshold: 0.45, face_detected: [true, true] });
      const different = await post(server, '/api/v1/verify', { image1: obama, image2: base64Of('faces/biden/1.jpg') });
      expect(different.body).toMatchObject({ matched: false, face_detected: [true, true] });
      expect(same.body.similarity).toBeGreaterThan(different.body.similarity);
    });

    it('gives a null similarity when either image has no face', async () => {
      const { body } = await post(server, '/api/v1/verify', { image1: obama, image2: base64Of(NO_FACE), threshold: 0.3 });
      expect(body).toEqual({ similarity: null, matched: false, threshold: 0.3, face_detected: [true, false] });
    });
  });

  describe('similarities stay within [-1, 1]', () => {
    // float32 rounding takes a face against itself just past 1 for most of these photos.
    const SAME_PERSON = ['faces/deepface_p01/2.jpg', 'faces/deepface_p01/5.jpg', 'faces/deepface_p01/6.jpg', 'faces/deepface_p01/7.jpg'];

    it('verify of an image with itself answers at most 1', async () => {
      for (const photo of SAME_PERSON) {
        const image = base64Of(photo);
        const { body } = await post(server, '/api/v1/verify', { image1: image, image2: image });
        expect(body.similarity).toBeLessThanOrEqual(1);
        expect(body.similarity).toBeGreaterThan(0.9999);
      }
    });

    it('recognize of an enrolled image answers at most 1, and matches at threshold 1', async () => {
      const gallery = new MemoryGallery();
      for (const [i, photo] of SAME_PERSON.entries()) await gallery.enroll(`p01-${i}`, photo);
      const own = await startServer({ gallery });
      try {
        for (const [i, photo] of SAME_PERSON.entries()) {
          const { body } = await post(own, '/api/v1/recognize', { image: base64Of(photo), threshold: 1 });
          expect(body).toMatchObject({ visitor_id: `p01-${i}`, matched: true });
          expect(body.confidence).toBeLessThanOrEqual(1);
          expect(body.faces[0].confidence).toBe(body.confidence);
        }
      } finally {
        await own.close();
      }
    });
  });

  describe('errors', () => {
    const expectError = (response: { status: number; body: any; headers?: Headers }, status: number, code: string) => {
      expect(response.status).toBe(status);
      if (response.headers) expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      expect(response.body.error.code).toBe(code);
      expect(typeof response.body.error.message).toBe('string');
      expect(response.body.error.message.length).toBeGreaterThan(5);
      expect(JSON.stringify(response.body)).not.toMatch(/\bat .+\.(ts|js):\d+/);
    };

    it('400 invalid_request for bad JSON, a missing image, wrongly typed or out-of-range fields', async () => {
      expectError(await post(server, '/api/v1/detect', '{"image": '), 400, 'invalid_request');
      expectError(await post(server, '/api/v1/detect', {}), 400, 'invalid_request');
      expectError(await post(server, '/api/v1/detect', { image: 123 }), 400, 'invalid_request');
      expectError(await post(server, '/api/v1/detect', [obama]), 400, 'invalid_request');
      expectError(await post(server, '/api/v1/detect', { image: obama, detect_size: 8 }), 400, 'invalid_request');
      expectError(await post(server, '/api/v1/verify', { image1: obama }), 400, 'invalid_request');
      const wrongType = await fetch(`${server.url}/api/v1/detect`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: obama });
      expectError({ status: wrongType.status, body: await wrongType.json() }, 400, 'invalid_request');
    });

    it('400 invalid_request for a threshold outside [-1, 1] or not a number', async () => {
      for (const threshold of [1.5, -1.01, '0.5', true]) {
        const response = await post(server, '/api/v1/recognize', { image: obama, threshold });
        expectError(response, 400, 'invalid_request');
        expect(response.body.error.message).toContain('threshold');
      }
      expectError(await post(server, '/api/v1/verify', { image1: obama, image2: obama, threshold: 2 }), 400, 'invalid_request');
    });

    it('400 invalid_image for junk, non-image data, unsupported formats and truncated files', async () => {
      expectError(await post(server, '/api/v1/detect', { image: 'not base64 at all!' }), 400, 'invalid_image');
      expectError(await post(server, '/api/v1/detect', { image: Buffer.from('hello world, not an image').toString('base64') }), 400, 'invalid_image');
      const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).gif().toBuffer();
      expectError(await post(server, '/api/v1/detect', { image: gif.toString('base64') }), 400, 'invalid_image');
      const jpeg = readTestdata(OBAMA);
      const truncated = jpeg.subarray(0, Math.floor(jpeg.length / 2)).toString('base64');
      for (const path of ['/api/v1/detect', '/api/v1/extract-features', '/api/v1/recognize']) {
        expectError(await post(server, path, { image: truncated }), 400, 'invalid_image');
      }
      expectError(await post(server, '/api/v1/verify', { image1: obama, image2: truncated }), 400, 'invalid_image');
      expectError(await post(server, '/api/v1/detect', { image: 'data:text/plain;base64,aGVsbG8=' }), 400, 'invalid_image');
    });

    it('404 not_found for unknown routes', async () => {
      const response = await fetch(`${server.url}/api/v1/nothing-here`);
      expectError({ status: response.status, body: await response.json(), headers: response.headers }, 404, 'not_found');
    });
  });

  describe('size limits', () => {
    let limited: TestServer;
    beforeAll(async () => {
      limited = await startServer({ env: { MAX_IMAGE_BYTES: String(100 * 1024), MAX_IMAGE_PIXELS: String(400 * 400) } });
    });
    afterAll(() => limited?.close());

    it('413 payload_too_large for a body beyond what MAX_IMAGE_BYTES allows', async () => {
      const response = await post(limited, '/api/v1/detect', { image: 'A'.repeat(300 * 1024) });
      expect(response.status).toBe(413);
      expect(response.body.error.code).toBe('payload_too_large');
    });

    it('413 image_too_large for an image over MAX_IMAGE_BYTES within the body limit', async () => {
      const image = Buffer.alloc(110 * 1024, 1).toString('base64');
      const response = await post(limited, '/api/v1/detect', { image });
      expect(response.status).toBe(413);
      expect(response.body.error.code).toBe('image_too_large');
    });

    it('413 image_too_large for a pixel count over MAX_IMAGE_PIXELS, checked before decoding', async () => {
      const big = await sharp({ create: { width: 800, height: 600, channels: 3, background: 'gray' } }).jpeg({ quality: 30 }).toBuffer();
      expect(big.length).toBeLessThan(100 * 1024);
      const response = await post(limited, '/api/v1/detect', { image: big.toString('base64') });
      expect(response.status).toBe(413);
      expect(response.body.error.code).toBe('image_too_large');
      expect(response.body.error.message).toContain('800x600');
    });

    it('lets a verify body carry two images at the limit', async () => {
      const small = await sharp(readTestdata(OBAMA)).resize(300).jpeg({ quality: 80 }).toBuffer();
      expect(small.length).toBeLessThan(100 * 1024);
      const response = await post(limited, '/api/v1/verify', { image1: small.toString('base64'), image2: small.toString('base64') });
      expect(response.status).toBe(200);
      expect(response.body.matched).toBe(true);
    });
  });
});
