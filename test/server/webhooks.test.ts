// WebhookSender against real HTTP receivers on local sockets: signed bodies, retries, the bounded
// queue, shutdown, a receiver that is down; and the configuration that turns it on.
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ServiceMetrics } from '../../src/server/metrics.js';
import { InferenceScheduler } from '../../src/server/scheduler.js';
import { ArrivalLedger, arrivalEvent, type ArrivalEvent } from '../../src/server/tracking/events.js';
import { FaceTracker, type TrackerFace } from '../../src/server/tracking/tracker.js';
import { WebhookSender, retryDelayMs } from '../../src/server/webhooks.js';
import { Receiver, closedPortUrl, delivered, remoteReceiver, signatureValid, webhookCounters } from './helpers/webhook-receiver.js';

const SECRET = 'a long random webhook secret';

function metrics(): ServiceMetrics {
  return new ServiceMetrics({ scheduler: new InferenceScheduler({ concurrency: 1, maxQueue: 1, timeoutMs: 10_000 }), gallery: () => null });
}

/** The webhook counters as /metrics prints them. */
async function counters(m: ServiceMetrics): Promise<Record<string, number>> {
  return webhookCounters(await m.registry.metrics());
}

function events(count: number, from = 0): ArrivalEvent[] {
  return Array.from({ length: count }, (_, i) => arrivalEvent(`visitor-${from + i}`, `track-${from + i}`, 'desk', 0.61, Date.UTC(2025, 0, 2, 9, 0, from + i)));
}

const log = { warnings: [] as object[], warn(obj: object) { this.warnings.push(obj); } };

describe('webhook deliveries', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function setUp(url?: string): Promise<{ receiver: Receiver; sender: WebhookSender; m: ServiceMetrics }> {
    const receiver = await Receiver.start();
    const m = metrics();
    const sender = new WebhookSender({ url: url ?? receiver.url, secret: SECRET, metrics: m, log });
    cleanups.push(() => receiver.close(), () => sender.close(0));
    return { receiver, sender, m };
  }

  it('posts each event once as JSON, signed with the secret', async () => {
    const { receiver, sender, m } = await setUp();
    const sent = events(5);
    for (const event of sent) sender.send(event);
    await receiver.requests(5);
    await sender.close();
    expect(receiver.received).toHaveLength(5);
    expect(receiver.received.map((r) => JSON.parse(r.body)).sort((a, b) => a.visitor_id.localeCompare(b.visitor_id))).toEqual(sent);
    for (const r of receiver.received) {
      expect(r.contentType).toBe('application/json');
      expect(signatureValid(r.body, r.signature, SECRET)).toBe(true);
      expect(signatureValid(r.body, r.signature, 'another secret')).toBe(false);
    }
    expect(new Set(receiver.received.map((r) => r.delivery)).size).toBe(5);
    expect(await counters(m)).toMatchObject({ [delivered('delivered')]: 5, [delivered('failed')]: 0, face_recog_webhook_retries_total: 0 });
  });

  it('a receiver that fails twice gets the event on the third try, same body and delivery id', async () => {
    const { receiver, sender, m } = await setUp();
    receiver.answer = (_, attempt) => (attempt === 1 ? 500 : attempt === 2 ? 503 : 200);
    sender.send(events(1)[0]);
    await receiver.requests(3);
    await sender.close();
    const [first, second, third] = receiver.received;
    expect(new Set([first.delivery, second.delivery, third.delivery]).size).toBe(1);
    expect(new Set([first.body, second.body, third.body]).size).toBe(1);
    expect(signatureValid(third.body, third.signature, SECRET)).toBe(true);
    expect(receiver.received).toHaveLength(3);
    expect(await counters(m)).toMatchObject({ [delivered('delivered')]: 1, face_recog_webhook_retries_total: 2 });
  });

  it('an answer that retrying cannot change (400) is final, counted failed and logged without the body', async () => {
    const { receiver, sender, m } = await setUp();
    receiver.answer = () => 400;
    log.warnings.length = 0;
    sender.send(events(1)[0]);
    await receiver.requests(1);
    await sender.close();
    expect(receiver.received).toHaveLength(1);
    expect(await counters(m)).toMatchObject({ [delivered('failed')]: 1, face_recog_webhook_retries_total: 0 });
    expect(log.warnings).toEqual([expect.objectContaining({ reason: 'HTTP 400', attempts: 1 })]);
    expect(JSON.stringify(log.warnings)).not.toContain('visitor-0');
  });

  it('a full queue drops its oldest waiting events, counts them, and delivers the rest', async () => {
    const { receiver, sender, m } = await setUp();
    // The receiver holds its first answers until released: the sender's slots stay busy meanwhile.
    receiver.answer = () => 'hang';
    const sent = events(1010);
    for (const event of sent) sender.send(event);
    await receiver.requests(4);
    const inFlight = receiver.received.map((r) => JSON.parse(r.body).visitor_id as string);
    expect(sender.pending).toBe(1004);
    expect(await counters(m)).toMatchObject({ [delivered('dropped')]: 6 });
    receiver.answer = () => 204;
    receiver.release(204);
    await sender.close(60_000);
    expect(receiver.received).toHaveLength(1004);
    const got = new Set(receiver.received.map((r) => JSON.parse(r.body).visitor_id as string));
    expect(inFlight).toEqual(['visitor-0', 'visitor-1', 'visitor-2', 'visitor-3']);
    // visitor-4..9 were the oldest waiting when the queue overflowed.
    for (let i = 4; i < 10; i++) expect(got.has(`visitor-${i}`)).toBe(false);
    for (let i = 10; i < 1010; i++) expect(got.has(`visitor-${i}`)).toBe(true);
  }, 120_000);

  it('close() waits for the queue to drain; with a bound, abandons what a hanging receiver holds', async () => {
    const { receiver, sender, m } = await setUp();
    for (const event of events(20)) sender.send(event);
    await sender.close();
    expect(receiver.received).toHaveLength(20);
    expect(sender.pending).toBe(0);

    const hanging = await setUp();
    hanging.receiver.answer = () => 'hang';
    for (const event of events(10)) hanging.sender.send(event);
    await hanging.receiver.requests(4);
    await hanging.sender.close(100);
    expect(hanging.sender.pending).toBe(0);
    expect(await counters(hanging.m)).toMatchObject({ [delivered('abandoned')]: 10, [delivered('delivered')]: 0 });
    hanging.sender.send(events(1)[0]);
    expect(await counters(hanging.m)).toMatchObject({ [delivered('abandoned')]: 11 });
    expect(await counters(m)).toMatchObject({ [delivered('delivered')]: 20 });
  });

  it('a receiver that is down or hangs does not slow the caller (times printed, not asserted)', async () => {
    const frames = 500;
    // The caller: per frame, yield to the event loop (as while inference runs), track five faces,
    // then send one event. The deliveries' own work (connecting, failing, retrying) runs meanwhile.
    const callerMs = async (send: (event: ArrivalEvent) => void): Promise<number> => {
      const tracker = new FaceTracker({ camera: 'desk', threshold: 0.45, arrivals: new ArrivalLedger(60) });
      const sent = events(frames);
      const start = performance.now();
      for (const [i, event] of sent.entries()) {
        await new Promise((resolve) => setImmediate(resolve));
        tracker.update(fiveFaces(i), [], i * 33);
        send(event);
      }
      return performance.now() - start;
    };
    // The receiver that is up runs in a process of its own, as a visitor backend would: its work
    // must not be counted as the caller's.
    const remote = await remoteReceiver();
    cleanups.push(async () => void remote.process.kill());
    const hanging = await Receiver.start();
    hanging.answer = () => 'hang';
    cleanups.push(() => hanging.close());
    const urls = { up: remote.url, down: await closedPortUrl(), hanging: hanging.url };
    const times: Record<string, number[]> = { without: [], up: [], down: [], hanging: [] };
    const m = metrics();
    // Alternating runs, so that a drift in the machine's speed falls on all alike. Each sender is
    // closed (drained or abandoned) before the next run, so that no run pays for another's work.
    for (let run = 0; run < 3; run++) {
      times.without.push(await callerMs(() => undefined));
      for (const [name, url] of Object.entries(urls)) {
        const sender = new WebhookSender({ url, secret: SECRET, metrics: m, log });
        times[name].push(await callerMs((e) => sender.send(e)));
        // Every send returned while the unreachable receiver's events were still being retried.
        if (name !== 'up') expect(sender.pending).toBeGreaterThan(0);
        await sender.close(name === 'up' ? 60_000 : 0);
      }
    }
    const median = (v: number[]): number => Math.round([...v].sort((a, b) => a - b)[1] * 10) / 10;
    console.log(`caller ms for ${frames} frames (median of 3): ${JSON.stringify(Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])))}`);
    expect(await counters(m)).toMatchObject({ [delivered('delivered')]: 3 * frames, [delivered('abandoned')]: 6 * frames });
  }, 120_000);
});

function fiveFaces(frame: number): TrackerFace[] {
  return Array.from({ length: 5 }, (_, k) => ({
    box: [40 + k * 120 + (frame % 7), 60, 80, 96],
    landmarks: [[0, 0], [0, 0], [0, 0], [0, 0], [0, 0]],
    score: 0.9,
    embedding: null,
  }));
}

describe('retry schedule', () => {
  it('doubles from 500 ms with equal jitter, capped at 30 s', () => {
    expect([1, 2, 3, 4].map((attempt) => retryDelayMs(attempt, () => 0))).toEqual([250, 500, 1000, 2000]);
    expect([1, 2, 3, 4].map((attempt) => retryDelayMs(attempt, () => 1))).toEqual([500, 1000, 2000, 4000]);
    expect(retryDelayMs(20, () => 1)).toBe(30_000);
  });
});

describe('configuration', () => {
  it('WEBHOOK_URL needs WEBHOOK_SECRET and an http(s) URL; EVENT_COOLDOWN_S defaults to 60', () => {
    expect(loadConfig({}).events).toEqual({ cooldownS: 60, webhook: null });
    expect(loadConfig({ WEBHOOK_URL: 'https://backend.example/hooks', WEBHOOK_SECRET: 's3cret', EVENT_COOLDOWN_S: '5' }).events).toEqual({
      cooldownS: 5,
      webhook: { url: 'https://backend.example/hooks', secret: 's3cret' },
    });
    expect(() => loadConfig({ WEBHOOK_URL: 'https://backend.example/hooks' })).toThrow(/WEBHOOK_SECRET/);
    expect(() => loadConfig({ WEBHOOK_URL: 'backend/hooks', WEBHOOK_SECRET: 's' })).toThrow(ConfigError);
    expect(() => loadConfig({ WEBHOOK_URL: 'ftp://backend/hooks', WEBHOOK_SECRET: 's' })).toThrow(/http/);
    expect(() => loadConfig({ EVENT_COOLDOWN_S: '-1' })).toThrow(/EVENT_COOLDOWN_S/);
  });
});
