// The integration guide's own TypeScript (../shared/spec/integration-guide.txt: "4. TypeScript
// Integration Examples" and "Option B: WebSocket") run against the service over real sockets, with
// camera frames sent faster than they are processed. The snippets below are the guide's text with
// only their syntax typos fixed:
//   - detectFaces, recognizeVisitor: `fetch(url)\n.method: 'POST',` -> `fetch(url, {\nmethod: 'POST',`,
//     and the `);` that closes the options -> `});`;
//   - recognizeVisitor: the guide splits it over two code blocks with a stray `};` before its final
//     `return null;`: joined;
//   - extractFeatures: `fetch('http://face-recog-api:8000/api/v1/extract.` -> `fetch('http://face-recog-api:8000/api/v1/extract', {`,
//     and `);` -> `});`.
// One comment is added: a @ts-expect-error over the WebSocket snippet's untyped `face` parameter.
// What the snippets leave to the backend is defined here (db, cacheFeatureVector, visitorId,
// base64Frame, handleRecognizedVisitor), and `face-recog-api:8000`, the guide's docker-compose
// service name, reaches the test server through this file's fetch and WebSocket, as compose's
// network would route it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WS from 'ws';
import { fixturesMissing } from '../helpers/fixtures.js';
import { MemoryGallery } from './helpers/memory-gallery.js';
import { base64Of, holdSlot, post, startServer, type TestServer } from './helpers/server.js';

const GUIDE_HOST = 'face-recog-api:8000';
const FRAME = 'hard/obama_240p.jpg';

let server: TestServer;
const toServer = (url: string): string => url.replace(`http://${GUIDE_HOST}`, server.url).replace(`ws://${GUIDE_HOST}`, server.wsUrl);

/** fetch as the guide calls it, its host routed to the test server. */
const fetch = (url: string, init?: RequestInit): Promise<Response> => globalThis.fetch(toServer(url), init);

/** Exceptions thrown by the guide's WebSocket handlers (ws would otherwise leave them uncaught). */
const thrown: unknown[] = [];

/** A browser-style WebSocket (what the guide is written against) over the `ws` package, its host routed to the test server. */
class GuideSocket extends WS {
  constructor(url: string) {
    super(toServer(url));
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    try {
      return super.emit(event, ...args);
    } catch (error) {
      thrown.push(error);
      return true;
    }
  }
}
interface BrowserWebSocket {
  onopen: (() => void) | null;
  onmessage: ((event: { data: string }) => void) | null;
  send(data: string): void;
}
const WebSocket = GuideSocket as unknown as new (url: string) => BrowserWebSocket;

// The backend's side of the snippets.
const queries: { sql: string; params: unknown[] }[] = [];
const db = {
  query: async (sql: string, params: unknown[]) => {
    queries.push({ sql, params });
    return { rows: [{ visitor_id: params[0] }] };
  },
};
const cached: { visitorId: string; vector: number[] }[] = [];
const cacheFeatureVector = async (visitorId: string, vector: number[]) => {
  cached.push({ visitorId, vector });
};
let visitorId = '';

// ---- The guide's snippets, as written (typos fixed as listed above) ----

const detectFaces = async (imageBase64: string) => {
  const response = await fetch('http://face-recog-api:8000/api/v1/detect', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ image: imageBase64 })
  });

  const result = await response.json();
  // result: { faces: [{ bbox: [x, y, w, h], confidence: number }], count: number }
  return result.faces;
};

const recognizeVisitor = async (imageBase64: string, threshold: number = 0.8) => {
  const response = await fetch('http://face-recog-api:8000/api/v1/recognize', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ image: imageBase64, threshold })
  });

  const result = await response.json();
  // result: { visitor_id: string | null, confidence: number | null, matched: boolean }

  if (result.matched && result.visitor_id) {
    // Your TypeScript backend fetches visitor info
    const visitor = await db.query(
      'SELECT * FROM visitors WHERE visitor_id = $1',
      [result.visitor_id]
    );
    return { visitor, confidence: result.confidence };
  }
    return null;
};

// Pre-extract features to cache for better performance
const extractFeatures = async (imageBase64: string) => {
  const response = await fetch('http://face-recog-api:8000/api/v1/extract', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ image: imageBase64 })
  });

  const result = await response.json();
  // result: { feature_vector: number[] | null, face_detected: boolean }

  if (result.face_detected && result.feature_vector) {
    // Cache in your database for faster recognition
    await cacheFeatureVector(visitorId, result.feature_vector);
  }
};

// ---- end of the guide's snippets (the WebSocket one is inside its test, where it runs) ----

describe.skipIf(fixturesMissing)("the integration guide's TypeScript, unmodified", () => {
  beforeAll(async () => {
    const gallery = new MemoryGallery();
    await gallery.enroll('obama', 'faces/obama/2.jpg');
    await gallery.enroll('biden', 'faces/biden/1.jpg');
    server = await startServer({ gallery });
  });
  afterAll(() => server?.close());

  it('detectFaces returns every face with its box and detector confidence', async () => {
    const faces = await detectFaces(base64Of('multi/two_people.jpg'));
    expect(faces).toHaveLength(2);
    for (const face of faces) {
      expect(face.bbox).toHaveLength(4);
      expect(face.confidence).toBeGreaterThan(0.9);
    }
  });

  it("recognizeVisitor finds the visitor at the service's threshold; the guide's default of 0.8 misses this true match", async () => {
    const photo = base64Of('faces/obama/1.jpg');
    const threshold = server.config.matchThreshold ?? 0.45;
    const found = await recognizeVisitor(photo, threshold);
    expect(found).toMatchObject({ visitor: { rows: [{ visitor_id: 'obama' }] } });
    expect(queries.at(-1)?.params).toEqual(['obama']);
    expect(found!.confidence).toBeGreaterThanOrEqual(threshold);
    // The same photo with the guide's sample default: its similarity (about 0.7) is below 0.8.
    expect(found!.confidence).toBeLessThan(0.8);
    expect(await recognizeVisitor(photo)).toBeNull();
    expect(await recognizeVisitor(base64Of('faces/tom_cruise/1.jpg'), threshold)).toBeNull();
  });

  it('extractFeatures caches the vector of a face, and nothing for a photo without one', async () => {
    visitorId = 'obama';
    await extractFeatures(base64Of('faces/obama/2.jpg'));
    visitorId = 'nobody';
    await extractFeatures(base64Of('noface/coffee.jpg'));
    expect(cached.map((c) => c.visitorId)).toEqual(['obama']);
    expect(cached[0].vector).toHaveLength(128);
  });

  it('the WebSocket example on /ws/realtimetime handles every message (results, dropped, error) without throwing', async () => {
    const base64Frame = base64Of(FRAME);
    const recognised: { visitorId: string; confidence: number }[] = [];
    const handleRecognizedVisitor = (visitorId: string, confidence: number) => recognised.push({ visitorId, confidence });
    // The camera sends faster than the service answers: inference is busy, so frames queue up.
    const busy = holdSlot(server.scheduler);

    // ---- The guide's "Option B: WebSocket" snippet, as written ----
    // TypeScript backend WebSocket client
    const ws = new WebSocket('ws://face-recog-api:8000/ws/realtimetime');

    ws.onopen = () => {
        // Send frame from camera
        ws.send(JSON.stringify({
            type: 'frame',
            image: base64Frame
        }));
    };

    ws.onmessage = (event) => {
        const result = JSON.parse(event.data);
        // result: { type: 'results', faces: [...], count: number }

        // @ts-expect-error: the guide leaves `face` untyped, an implicit any under strict TypeScript
        result.faces.forEach(face => {
            if (face.matched && face.visitor_id) {
                // Handle recognized visitor
                handleRecognizedVisitor(face.visitor_id, face.confidence);
            }
        });
    };
    // ---- end of the guide's snippet ----

    const socket = ws as unknown as GuideSocket;
    const received: any[] = [];
    // Ahead of the guide's handler, so that a message it throws on is still seen here.
    socket.prependListener('message', (data) => received.push(JSON.parse(data.toString())));
    await new Promise((resolve) => socket.once('open', resolve));
    // More camera frames right behind the guide's first, the last one unusable, and a message that is not JSON.
    for (let i = 0; i < 3; i++) ws.send(JSON.stringify({ type: 'frame', image: base64Frame }));
    ws.send(JSON.stringify({ type: 'frame', image: 'not an image' }));
    ws.send('{not json');
    const droppedMetric = async () => Number(/face_recog_ws_frames_total\{outcome="dropped"\} (\d+)/.exec(await (await globalThis.fetch(`${server.url}/metrics`)).text())?.[1] ?? 0);
    for (let tries = 0; tries < 500 && (await droppedMetric()) < 3; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
    busy.release();

    // Frames are numbered per connection: 1 is the guide's, 2-4 are dropped for the newest, 5 is the unusable one.
    const until = async (test: () => boolean) => {
      while (!test()) await new Promise((resolve) => socket.once('message', resolve));
    };
    await until(() => received.some((m) => m.type === 'error' && m.id === 5));
    expect(received.map((m) => m.type).sort()).toEqual(['dropped', 'error', 'error', 'results']);
    expect(received.find((m) => m.type === 'dropped').ids).toEqual([2, 3, 4]);
    // One frame alone names nobody: the face's track is named by its third frame, which raises an
    // arrival event. The message that was not JSON counted as 6.
    expect(recognised).toEqual([]);
    ws.send(JSON.stringify({ type: 'frame', image: base64Frame }));
    await until(() => received.some((m) => m.id === 7));
    ws.send(JSON.stringify({ type: 'frame', image: base64Frame }));
    await until(() => received.some((m) => m.id === 8));
    socket.close();
    expect(received.slice(4).map((m) => m.type)).toEqual(['results', 'event', 'results']);
    expect(thrown).toEqual([]);
    // The guide hands face.confidence to handleRecognizedVisitor as the match: the track's mean similarity,
    // here that of three copies of one picture, which recognize reports for it.
    const { body } = await post(server, '/api/v1/recognize', { image: base64Frame });
    expect(recognised).toEqual([{ visitorId: 'obama', confidence: expect.closeTo(body.confidence, 9) }]);
  });
});
