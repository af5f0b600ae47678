// How the soak loads the service: HTTP workers at saturation, bursts beyond the queue, a client
// over its rate limit and WebSocket cameras sending faster than they can be answered. Each runs
// until `stop` is aborted and tallies every answer it gets.
import { setTimeout as delay } from 'node:timers/promises';
import WebSocket from 'ws';
import { QUERIES, ROUTES, b64, noneMisnamed, perform, post, recognizedIds, workload, type Call, type Outcome, type Tally } from './workload.js';

export interface DriverSettings {
  /** The service's RATE_LIMIT_PER_MINUTE, per key. */
  rateLimitPerMinute: number;
  firstBurstS: number;
  burstEveryS: number;
  /** Recognize requests sent at once per burst. */
  burstSize: number;
  frameEveryMs: number;
  /** Every n-th frame of a camera is junk. */
  junkFrameEvery: number;
  /** The client over its rate limit sends this many times its budget per window. */
  noisyOverBudget: number;
  noisyInFlight: number;
}

/** The rate limiter's window: RATE_LIMIT_PER_MINUTE counts requests per minute. */
const RATE_WINDOW_MS = 60_000;
/** How often the client over its limit tops up the requests it is due to have sent. */
const NOISY_TICK_MS = 10;

/** Waits `ms`, or less when `stop` is aborted meanwhile. */
export function pause(ms: number, stop: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal: stop }).catch(() => undefined);
}

/** One HTTP worker: the whole mix, in turn, as fast as the service answers. */
export async function httpWorker(url: string, key: string, offset: number, stop: AbortSignal, tally: Tally): Promise<void> {
  const calls = workload(key);
  for (let i = offset; !stop.aborted; i++) await perform(url, calls[i % calls.length], tally);
}

/** `burstSize` recognize requests at once: soon after the start, so that the warm-up has one, then every `burstEveryS`. */
export async function bursts(url: string, settings: DriverSettings, stop: AbortSignal, tally: Tally): Promise<void> {
  const call = { ...workload('soak-burst')[0], route: ROUTES.burst };
  for (let wait = settings.firstBurstS; ; wait = settings.burstEveryS) {
    await pause(wait * 1000, stop);
    if (stop.aborted) return;
    await Promise.all(Array.from({ length: settings.burstSize }, () => perform(url, call, tally)));
  }
}

/**
 * A client over its rate limit: cheap requests (a body that is not JSON, refused before any
 * inference), 429 once its window's budget is spent. It is paced by count, not by timers: at
 * every tick it sends what it is due to have sent by then at `noisyOverBudget` times its budget,
 * so that a late timer on a loaded machine delays its requests but never lowers their number.
 */
export async function noisyClient(url: string, settings: DriverSettings, stop: AbortSignal, tally: Tally): Promise<void> {
  const call: Call = {
    route: ROUTES.noisy,
    send: post('/api/v1/detect', 'soak-noisy', '{'),
    check: (status, body) =>
      (status === 400 && body?.error?.code === 'invalid_request') || (status === 429 && body?.error?.code === 'rate_limited') ? null : 'expected 400 invalid_request or 429 rate_limited',
  };
  const perMs = (settings.rateLimitPerMinute * settings.noisyOverBudget) / RATE_WINDOW_MS;
  const started = performance.now();
  let sent = 0;
  const inFlight = new Set<Promise<unknown>>();
  while (!stop.aborted) {
    const due = perMs * (performance.now() - started);
    while (sent < due && inFlight.size < settings.noisyInFlight) {
      const request: Promise<unknown> = perform(url, call, tally).finally(() => inFlight.delete(request));
      inFlight.add(request);
      sent++;
    }
    await pause(NOISY_TICK_MS, stop);
  }
  await Promise.all(inFlight);
}

/**
 * A camera: a frame every `frameEveryMs` (faster than it can be answered), which the service
 * answers or reports dropped for a newer one. Every `junkFrameEvery`-th frame is junk, sent alone
 * (once the camera's earlier frames are answered, and nothing after it until it is), so that it
 * is answered with its error rather than replaced.
 */
export async function camera(url: string, key: string, settings: DriverSettings, stop: AbortSignal, tally: Tally): Promise<void> {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/ws/realtime`, { headers: { 'x-api-key': key } });
  await new Promise<void>((resolveOpen, reject) => socket.once('open', () => resolveOpen()).once('error', reject));
  // A failing socket also closes: the close handler below records it.
  socket.on('error', () => undefined);
  const sent = new Map<number, { at: number; visitors: (string | null)[] | 'junk' }>();
  const waiting = new Set<number>();
  let wakers: (() => void)[] = [];
  const wake = () => wakers.splice(0).forEach((w) => w());
  stop.addEventListener('abort', wake, { once: true });
  const open = () => socket.readyState === WebSocket.OPEN && !stop.aborted;
  /** Resolves once every frame sent so far is answered (or the camera stops). */
  const answeredAll = async () => {
    while (waiting.size > 0 && open()) await new Promise<void>((resolve) => wakers.push(resolve));
  };
  const answered = new Set<number>();
  let closedByUs = false;
  const answer = (id: number, result: Outcome) => {
    if (answered.has(id)) result = { ...result, problem: 'answered twice' };
    answered.add(id);
    waiting.delete(id);
    const frame = sent.get(id);
    tally.add(ROUTES.frame, result, frame ? performance.now() - frame.at : 0);
    wake();
  };
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString());
    // A visitor's arrival is not the answer to a frame; its frame's results follow.
    if (message.type === 'event') return;
    if (message.type === 'dropped') {
      for (const id of message.ids as number[]) answer(id, { outcome: 'dropped', problem: null });
      return;
    }
    const expected = sent.get(message.id)?.visitors;
    if (message.type === 'results') {
      const ok = expected !== 'junk' && expected !== undefined && noneMisnamed(recognizedIds(message), expected);
      answer(message.id, { outcome: 'results', problem: ok ? null : `expected ${JSON.stringify(expected)}` });
    } else {
      const outcome = `error ${message.code}`;
      const designed = ['error overloaded', 'error timeout'].includes(outcome) || (expected === 'junk' && outcome === 'error invalid_image');
      answer(message.id, { outcome, problem: designed ? null : 'unexpected error' });
    }
  });
  const closed = new Promise<void>((resolveClose) =>
    socket.once('close', (code) => {
      if (!closedByUs) tally.add(ROUTES.connection, { outcome: `closed ${code}`, problem: 'closed by the service' }, 0);
      wake();
      resolveClose();
    }),
  );
  const frames = QUERIES.map((q) => ({ image: b64(q.photo), visitors: q.visitors }));
  for (let id = 1; open(); id++) {
    const junk = id % settings.junkFrameEvery === 0;
    if (junk) await answeredAll();
    if (!open()) break;
    const frame = frames[id % frames.length];
    sent.set(id, { at: performance.now(), visitors: junk ? 'junk' : frame.visitors });
    waiting.add(id);
    socket.send(JSON.stringify({ type: 'frame', id, image: junk ? 'AAAA' : frame.image }));
    if (junk) await answeredAll();
    else await pause(settings.frameEveryMs, stop);
  }
  closedByUs = true;
  socket.close();
  await closed;
}
