// What the soak sends and what each answer must be: the enrolled visitors, the mix of requests on
// every route (right and wrong ones, each with its correct answer), the answers every run must
// have seen at least once, and the tally of what came back.
import { answerOf } from '../../test/hardening/helpers/http.js';
import { readTestdata } from '../../test/helpers/fixtures.js';

export const VISITORS: [string, string][] = [
  ['v-obama', 'faces/obama/2.jpg'],
  ['v-biden', 'faces/biden/1.jpg'],
  ['v-kit', 'faces/kit_harington/1.jpg'],
  ['v-rose', 'faces/rose_leslie/1.jpg'],
];

/** Photos sent, with the visitors (most confident face first, then sorted) each must be recognised as. */
export const QUERIES: { photo: string; visitors: (string | null)[] }[] = [
  { photo: 'faces/obama/1.jpg', visitors: ['v-obama'] },
  { photo: 'faces/biden/2.jpg', visitors: ['v-biden'] },
  { photo: 'faces/kit_harington/2.jpg', visitors: ['v-kit'] },
  { photo: 'faces/rose_leslie/2.jpg', visitors: ['v-rose'] },
  { photo: 'faces/tom_cruise/1.jpg', visitors: [null] },
  { photo: 'multi/two_people.jpg', visitors: ['v-biden', 'v-obama'] },
  { photo: 'noface/coffee.jpg', visitors: [] },
];

export const ROUTES = {
  burst: 'POST /api/v1/recognize (burst)',
  noisy: 'POST /api/v1/detect (client over its rate limit, body not JSON)',
  sampler: 'GET /metrics (sampler)',
  frame: 'WebSocket frame',
  connection: 'WebSocket connection',
};

/**
 * Route and answer pairs every run must show at least once: each route answered, each wrong
 * request refused with its code, and the designed answers to overload (a burst beyond the queue,
 * a client over its budget). The run goes on past its duration until it has seen them all.
 */
export const DESIGNED_ANSWERS: [route: string, outcome: string][] = [
  ['POST /api/v1/recognize', '200'],
  ['POST /api/v1/detect', '200'],
  ['POST /api/v1/extract-features', '200'],
  ['POST /api/v1/extract', '200'],
  ['POST /api/v1/verify', '200'],
  ['GET /health', '200'],
  ['GET /openapi.json', '200'],
  [ROUTES.sampler, '200'],
  ['POST /api/v1/detect (junk image)', '400 invalid_image'],
  ['POST /api/v1/recognize (truncated JPEG)', '400 invalid_image'],
  ['POST /api/v1/recognize (bad JSON)', '400 invalid_request'],
  ['POST /api/v1/detect (wrong key)', '401 unauthorized'],
  ['GET /api/v2/nothing', '404 not_found'],
  [ROUTES.frame, 'results'],
  [ROUTES.frame, 'error invalid_image'],
  [ROUTES.burst, '503 overloaded'],
  [ROUTES.noisy, '429 rate_limited'],
];

// Answers the service is designed to give under load: they are expected, never counted as faults.
const DESIGNED_LOAD_ANSWERS = ['503 overloaded', '503 timeout'];
/** Unexpected answers quoted in the report. */
const MAX_EXAMPLES = 20;

export const b64 = (relative: string) => readTestdata(relative).toString('base64');

export interface Outcome {
  /** "200", "503 overloaded", "network error: ECONNRESET", ... */
  outcome: string;
  /** Why this answer is wrong; null when it is what the contract says. */
  problem: string | null;
}

export interface Call {
  route: string;
  send: (url: string) => Promise<Response>;
  /** Checks a 2xx-4xx answer's body; designed load answers are accepted before this is asked. */
  check: (status: number, body: any) => string | null;
}

export function post(path: string, key: string, body: unknown): (url: string) => Promise<Response> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return (url) => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: text });
}

function get(path: string, key: string): (url: string) => Promise<Response> {
  return (url) => fetch(`${url}${path}`, { headers: { 'x-api-key': key } });
}

const expectStatus = (want: number, code?: string) => (status: number, body: any) =>
  status === want && (code === undefined || body?.error?.code === code) ? null : `expected ${want}${code ? ` ${code}` : ''}`;

export function recognizedIds(body: any): (string | null)[] {
  return ((body.faces ?? []) as { visitor_id: string | null }[]).map((face) => face.visitor_id);
}

export function sameVisitors(got: (string | null)[], want: (string | null)[]): boolean {
  const sort = (ids: (string | null)[]) => ids.map((id) => id ?? '(stranger)').sort().join(',');
  return sort(got) === sort(want);
}

/**
 * A realtime face is named once its track's frames say so: each face is its expected visitor or
 * not named yet, never anyone else.
 */
export function noneMisnamed(got: (string | null)[], want: (string | null)[]): boolean {
  if (got.length !== want.length) return false;
  const left = [...want];
  for (const id of got) {
    if (id === null) continue;
    const at = left.indexOf(id);
    if (at < 0) return false;
    left.splice(at, 1);
  }
  return true;
}

/** The mix every HTTP worker cycles through: every route, right and wrong requests, each with its correct answer. */
export function workload(key: string): Call[] {
  const recognize: Call[] = QUERIES.map(({ photo, visitors }) => ({
    route: 'POST /api/v1/recognize',
    send: post('/api/v1/recognize', key, { image: b64(photo) }),
    check: (status, body) => (status === 200 && sameVisitors(recognizedIds(body), visitors) ? null : `expected visitors ${JSON.stringify(visitors)}`),
  }));
  const obama = b64('faces/obama/1.jpg');
  return [
    ...recognize,
    { route: 'POST /api/v1/detect', send: post('/api/v1/detect', key, { image: b64('hard/obama_240p.jpg') }), check: (s, b) => (s === 200 && b.count === 1 ? null : 'expected 1 face') },
    { route: 'POST /api/v1/detect', send: post('/api/v1/detect', key, { image: b64('multi/two_people.jpg') }), check: (s, b) => (s === 200 && b.count === 2 ? null : 'expected 2 faces') },
    { route: 'POST /api/v1/extract-features', send: post('/api/v1/extract-features', key, { image: b64('faces/obama/3.jpg') }), check: (s, b) => (s === 200 && b.feature_vector?.length === 128 ? null : 'expected a 128-d vector') },
    { route: 'POST /api/v1/extract', send: post('/api/v1/extract', key, { image: b64('noface/coffee.jpg') }), check: (s, b) => (s === 200 && b.face_detected === false ? null : 'expected no face') },
    { route: 'POST /api/v1/verify', send: post('/api/v1/verify', key, { image1: obama, image2: b64('faces/obama/3.jpg') }), check: (s, b) => (s === 200 && b.matched === true ? null : 'expected a match') },
    { route: 'POST /api/v1/verify', send: post('/api/v1/verify', key, { image1: obama, image2: b64('faces/biden/2.jpg') }), check: (s, b) => (s === 200 && b.matched === false ? null : 'expected no match') },
    { route: 'GET /health', send: get('/health', key), check: (s, b) => (s === 200 && b.status === 'ok' ? null : 'expected ok') },
    { route: 'GET /openapi.json', send: get('/openapi.json', key), check: expectStatus(200) },
    { route: 'POST /api/v1/detect (junk image)', send: post('/api/v1/detect', key, { image: 'bm90IGFuIGltYWdl' }), check: expectStatus(400, 'invalid_image') },
    { route: 'POST /api/v1/recognize (truncated JPEG)', send: post('/api/v1/recognize', key, { image: readTestdata('faces/obama/4.jpg').subarray(0, 30_000).toString('base64') }), check: expectStatus(400, 'invalid_image') },
    { route: 'POST /api/v1/recognize (bad JSON)', send: post('/api/v1/recognize', key, '{"image":'), check: expectStatus(400, 'invalid_request') },
    { route: 'POST /api/v1/detect (wrong key)', send: post('/api/v1/detect', `${key}-wrong`, { image: obama }), check: expectStatus(401, 'unauthorized') },
    { route: 'GET /api/v2/nothing', send: get('/api/v2/nothing', key), check: expectStatus(404, 'not_found') },
  ];
}

/** Every answer of the run by route and outcome, the latencies of the successful ones, and what was wrong. */
export class Tally {
  readonly latencies = new Map<string, number[]>();
  readonly outcomes = new Map<string, Map<string, number>>();
  unexpected = 0;
  readonly examples: string[] = [];

  add(route: string, { outcome, problem }: Outcome, ms: number): void {
    const byOutcome = this.outcomes.get(route) ?? new Map<string, number>();
    byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
    this.outcomes.set(route, byOutcome);
    if (outcome === '200' || outcome === 'results') {
      const latencies = this.latencies.get(route) ?? [];
      latencies.push(ms);
      this.latencies.set(route, latencies);
    }
    if (problem) {
      this.unexpected++;
      if (this.examples.length < MAX_EXAMPLES) this.examples.push(`${route}: ${outcome} (${problem})`);
    }
  }

  get total(): number {
    return [...this.outcomes.values()].reduce((sum, m) => sum + [...m.values()].reduce((a, b) => a + b, 0), 0);
  }

  /** The designed answers not seen yet, as "route: outcome". */
  missing(): string[] {
    return DESIGNED_ANSWERS.filter(([route, outcome]) => !this.outcomes.get(route)?.get(outcome)).map(([route, outcome]) => `${route}: ${outcome}`);
  }
}

async function judge(call: Call, response: Response): Promise<Outcome> {
  const { body } = await answerOf(response);
  const outcome = response.status < 400 ? String(response.status) : `${response.status} ${body?.error?.code ?? '(not a contract error)'}`;
  if (DESIGNED_LOAD_ANSWERS.includes(outcome)) return { outcome, problem: response.headers.get('retry-after') ? null : 'no Retry-After' };
  if (response.status >= 500) return { outcome, problem: 'server fault' };
  return { outcome, problem: call.check(response.status, body) };
}

/** Sends one call, judges and tallies its answer; returns the outcome. */
export async function perform(url: string, call: Call, tally: Tally): Promise<Outcome> {
  const started = performance.now();
  let result: Outcome;
  try {
    result = await judge(call, await call.send(url));
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    result = { outcome: `network error: ${cause}`, problem: 'no answer' };
  }
  tally.add(call.route, result, performance.now() - started);
  return result;
}
