// HTTP latency and throughput as a client sees them: fetch over kept-alive local sockets, request
// bodies serialised before the clock starts, every answer checked (a benchmark of wrong answers
// measures nothing, so one ends the run).
import { EIGHT_FACES, QUERY_IDENTITY } from './inputs.js';
import { WARMUP_RUNS, latencyOf, timeRuns, type Latency } from './common.js';

export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** What is wrong with an answer, or null when it is the expected one. */
export type Check = (answer: Answer) => string | null;

export async function post(url: string, body: string): Promise<Answer> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function describe(answer: Answer): string {
  return `${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
}

export const expectFaces: Check = (a) => (a.status === 200 && Number(a.body.count) >= 1 ? null : `expected a face, got ${describe(a)}`);

export const expectFeatures: Check = (a) =>
  a.status === 200 && a.body.face_detected === true && Array.isArray(a.body.feature_vector) ? null : `expected a feature vector, got ${describe(a)}`;

/** The query shows QUERY_IDENTITY, whose photos are enrolled as visitors `<identity>-<n>`. */
export const expectQueryVisitor: Check = (a) =>
  a.status === 200 && a.body.matched === true && String(a.body.visitor_id).startsWith(`${QUERY_IDENTITY}-`)
    ? null
    : `expected a match with an ${QUERY_IDENTITY} visitor, got ${describe(a)}`;

/** The 8-face query: every face found and matched against the gallery. */
export const expectEightFaces: Check = (a) =>
  a.status === 200 && Array.isArray(a.body.faces) && a.body.faces.length === EIGHT_FACES ? null : `expected ${EIGHT_FACES} faces, got ${describe(a)}`;

async function checked(url: string, body: string, check: Check): Promise<void> {
  const problem = check(await post(url, body));
  if (problem) throw new Error(`POST ${url}: ${problem}`);
}

/** A request whose answer is checked, as work to time. */
export function checkedRequest(url: string, body: string, check: Check): () => Promise<void> {
  return () => checked(url, body, check);
}

/** `n` requests one after another, after `warmup` unmeasured ones. */
export async function timeRequests(url: string, body: string, n: number, check: Check, warmup = WARMUP_RUNS): Promise<Latency> {
  return latencyOf(await timeRuns(n, checkedRequest(url, body, check), warmup));
}

export interface Throughput {
  concurrency: number;
  /** Successful answers per second. */
  rps: number;
  ok: number;
  /** Refusals, counted apart: 429 (queue full, rate limit) and 503 (timeout, not ready). */
  status429: number;
  status503: number;
  seconds: number;
}

/**
 * `concurrency` clients, each sending its next request as soon as its previous one is answered,
 * for `seconds`; answers completed within the window are counted.
 */
export async function throughput(url: string, body: string, concurrency: number, seconds: number, check: Check): Promise<Throughput> {
  const counts = { ok: 0, status429: 0, status503: 0 };
  const started = performance.now();
  const end = started + seconds * 1000;
  const client = async () => {
    while (performance.now() < end) {
      const answer = await post(url, body);
      if (performance.now() > end) break;
      if (answer.status === 429) counts.status429++;
      else if (answer.status === 503) counts.status503++;
      else {
        const problem = check(answer);
        if (problem) throw new Error(`POST ${url} with ${concurrency} clients: ${problem}`);
        counts.ok++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  return { concurrency, rps: Math.round((counts.ok / seconds) * 10) / 10, ...counts, seconds };
}

export interface Burst {
  clients: number;
  requests: number;
  served: number;
  /** 429 and 503 answers. */
  refused: number;
  servedFraction: number;
  seconds: number;
}

/**
 * `clients` clients starting at once, each sending `requestsEach` requests one after another and
 * ignoring Retry-After (a refused request is followed at once by the next): how much of a
 * sudden crowd is served rather than refused.
 */
export async function burst(url: string, body: string, clients: number, requestsEach: number, check: Check): Promise<Burst> {
  let served = 0;
  let refused = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < requestsEach; i++) {
        const answer = await post(url, body);
        if (answer.status === 429 || answer.status === 503) {
          refused++;
          continue;
        }
        const problem = check(answer);
        if (problem) throw new Error(`POST ${url} in a burst of ${clients} clients: ${problem}`);
        served++;
      }
    }),
  );
  const requests = clients * requestsEach;
  return { clients, requests, served, refused, servedFraction: Math.round((served / requests) * 1000) / 1000, seconds: Math.round(performance.now() - started) / 1000 };
}
