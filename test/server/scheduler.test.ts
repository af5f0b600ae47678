// The inference scheduler: bounded concurrency, admission by expected wait, a bounded queue, deadlines, a background lane.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { EnginePool } from '../../src/engine/worker-pool.js';
import { FaceRecogError } from '../../src/errors.js';
import { buildApp } from '../../src/server/app.js';
import { createLogger } from '../../src/server/logging.js';
import { ServiceMetrics } from '../../src/server/metrics.js';
import type { ServiceParts } from '../../src/server/parts.js';
import { InferencePipeline } from '../../src/server/pipeline.js';
import { Deadline, InferenceScheduler } from '../../src/server/scheduler.js';
import { ArrivalLedger } from '../../src/server/tracking/events.js';
import { trackingStage } from '../../src/server/tracking/stage.js';
import { MODELS_DIR, fixturesMissing, readTestdata } from '../helpers/fixtures.js';
import { MemoryGallery } from './helpers/memory-gallery.js';

/** A task that runs until released, recording that it started. */
function gate(log?: string[], name?: string) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  return {
    release,
    task: async () => {
      if (log && name) log.push(name);
      await released;
      return name;
    },
  };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A clock that moves only when a task says so: task durations, so the service rate, are the test's own. */
function fakeClock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** A scheduler whose measured tasks took `taskMs` each on a fake clock. */
async function measuredScheduler(options: { concurrency: number; timeoutMs: number; taskMs: number; maxQueue?: number }) {
  const clock = fakeClock();
  const scheduler = new InferenceScheduler({ maxQueue: 1000, ...options, now: clock.now });
  await scheduler.run(async () => clock.advance(options.taskMs));
  return scheduler;
}

describe('InferenceScheduler', () => {
  it('runs at most `concurrency` tasks and starts the next when one finishes', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 2, maxQueue: 10, timeoutMs: 10_000 });
    const gates = Array.from({ length: 5 }, () => gate());
    const results = gates.map((g) => scheduler.run(g.task));
    await flush();
    expect(scheduler.running).toBe(2);
    expect(scheduler.depth()).toBe(3);
    gates[0].release();
    await results[0];
    await flush();
    expect(scheduler.running).toBe(2);
    expect(scheduler.depth()).toBe(2);
    gates.forEach((g) => g.release());
    await Promise.all(results);
    expect(scheduler.running).toBe(0);
  });

  it('refuses with overloaded and a Retry-After hint once the queue is full', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 1, timeoutMs: 10_000 });
    const running = gate();
    const queued = gate();
    const first = scheduler.run(running.task);
    const second = scheduler.run(queued.task);
    expect(scheduler.saturated).toBe(true);
    const refused = await scheduler.run(async () => 'never').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FaceRecogError);
    expect((refused as FaceRecogError).code).toBe('overloaded');
    expect((refused as FaceRecogError).retryAfterS).toBeGreaterThanOrEqual(1);
    running.release();
    queued.release();
    await Promise.all([first, second]);
    expect(scheduler.saturated).toBe(false);
  });

  it('with no queue at all, refuses everything beyond the running tasks', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 0, timeoutMs: 10_000 });
    const running = gate();
    const first = scheduler.run(running.task);
    await expect(scheduler.run(async () => 1)).rejects.toMatchObject({ code: 'overloaded' });
    running.release();
    await first;
    await expect(scheduler.run(async () => 2)).resolves.toBe(2);
  });

  it('fails a queued task with timeout when its deadline passes, and forgets it', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 5, timeoutMs: 10_000 });
    const running = gate();
    const first = scheduler.run(running.task);
    let started = false;
    const late = scheduler.run(
      async () => {
        started = true;
      },
      { deadline: new Deadline(20) },
    );
    await expect(late).rejects.toMatchObject({ code: 'timeout' });
    expect(scheduler.depth()).toBe(0);
    running.release();
    await first;
    await flush();
    expect(started).toBe(false);
  });

  it('Deadline.check throws timeout only once the time is up', () => {
    expect(() => new Deadline(60_000).check()).not.toThrow();
    expect(() => new Deadline(-1).check()).toThrow(expect.objectContaining({ code: 'timeout' }));
  });

  it('never refuses background work; it runs when no request is waiting', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 0, timeoutMs: 10_000 });
    const order: string[] = [];
    const running = gate(order, 'request');
    const first = scheduler.run(running.task);
    const background = [gate(order, 'background-1'), gate(order, 'background-2')];
    const done = background.map((g) => scheduler.run(g.task, { lane: 'background' }));
    expect(scheduler.depth('background')).toBe(2);
    running.release();
    await first;
    background.forEach((g) => g.release());
    await Promise.all(done);
    expect(order).toEqual(['request', 'background-1', 'background-2']);
  });

  it('starts a waiting request ahead of background work that waited longer', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 5, timeoutMs: 10_000 });
    const order: string[] = [];
    const hold = gate(order, 'hold');
    const held = scheduler.run(hold.task);
    const background = gate(order, 'background');
    const request = gate(order, 'request');
    const backgroundDone = scheduler.run(background.task, { lane: 'background' });
    const requestDone = scheduler.run(request.task);
    hold.release();
    await held;
    await flush();
    expect(order).toEqual(['hold', 'request']);
    request.release();
    await requestDone;
    await flush();
    expect(order).toEqual(['hold', 'request', 'background']);
    background.release();
    await backgroundDone;
  });

  it('idle() resolves once nothing runs or waits', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 5, timeoutMs: 10_000 });
    await scheduler.idle();
    const a = gate();
    const b = gate();
    const done = [scheduler.run(a.task), scheduler.run(b.task, { lane: 'background' })];
    let idle = false;
    const waiting = scheduler.idle().then(() => (idle = true));
    a.release();
    await done[0];
    await flush();
    expect(idle).toBe(false);
    b.release();
    await waiting;
    expect(idle).toBe(true);
  });

  it('passes task errors through and keeps serving', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 1, timeoutMs: 10_000 });
    await expect(scheduler.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(scheduler.run(async () => 'next')).resolves.toBe('next');
    expect(scheduler.running).toBe(0);
  });

  describe('admission by expected wait', () => {
    it('admits a burst that can finish within the timeout and refuses the rest at once, with Retry-After', async () => {
      // 2 slots, 100 ms per task: 20 tasks/s. The k-th waiting request (from 0) expects (k + 1) / 20 s
      // of wait plus 100 ms of work: within 1 s up to k = 17.
      const scheduler = await measuredScheduler({ concurrency: 2, timeoutMs: 1000, taskMs: 100 });
      expect(scheduler.serviceRate).toBe(20);
      const held = [gate(), gate()];
      const running = held.map((g) => scheduler.run(g.task));
      const burst = Array.from({ length: 18 }, () => gate());
      const served = burst.map((g) => scheduler.run(g.task));
      expect(scheduler.depth()).toBe(18);
      expect(scheduler.saturated).toBe(true);
      const refused = await scheduler.run(async () => 'never').catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'overloaded' });
      // The backlog (2 running, 18 waiting, this one) at 20 per second.
      expect((refused as FaceRecogError).retryAfterS).toBe(2);
      expect(scheduler.depth()).toBe(18);
      [...held, ...burst].forEach((g) => g.release());
      await Promise.all([...running, ...served]);
    });

    it('refuses sooner when the measured rate is slower, not at a fixed count', async () => {
      const fast = await measuredScheduler({ concurrency: 1, timeoutMs: 1000, taskMs: 50 });
      const slow = await measuredScheduler({ concurrency: 1, timeoutMs: 1000, taskMs: 250 });
      const admittedWhileBusy = async (scheduler: InferenceScheduler) => {
        const held = gate();
        const tasks = [scheduler.run(held.task)];
        const waiting: ReturnType<typeof gate>[] = [];
        while (!scheduler.saturated) {
          const g = gate();
          waiting.push(g);
          tasks.push(scheduler.run(g.task));
        }
        [held, ...waiting].forEach((g) => g.release());
        await Promise.all(tasks);
        return waiting.length;
      };
      // The k-th waiting request (from 0) expects k + 1 task times of wait plus its own within 1000 ms.
      expect(await admittedWhileBusy(fast)).toBe(19);
      expect(await admittedWhileBusy(slow)).toBe(3);
    });

    it('uses the deadline a request brings when it is shorter than the timeout', async () => {
      const scheduler = await measuredScheduler({ concurrency: 1, timeoutMs: 10_000, taskMs: 100 });
      const held = gate();
      const running = scheduler.run(held.task);
      // This one would expect 100 ms of wait and 100 ms of work: more than its 150 ms.
      await expect(scheduler.run(async () => 'late', { deadline: new Deadline(150) })).rejects.toMatchObject({ code: 'overloaded' });
      held.release();
      await running;
    });

    it('before any task has finished, admits up to the queue bound', async () => {
      const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 3, timeoutMs: 1 });
      expect(scheduler.serviceRate).toBeNull();
      const gates = Array.from({ length: 4 }, () => gate());
      const tasks = gates.map((g) => scheduler.run(g.task));
      expect(scheduler.depth()).toBe(3);
      await expect(scheduler.run(async () => 'never')).rejects.toMatchObject({ code: 'overloaded' });
      gates.forEach((g) => g.release());
      await Promise.all(tasks);
    });
  });
});

describe.skipIf(fixturesMissing)('admission over a real socket, inference in worker threads', () => {
  // The scheduler's clock is the test's: each measured task "took" TASK_MS, so with one slot the
  // service rate is 1 / TASK_MS and a request k places back (from 0) expects (k + 1 + 1) * TASK_MS.
  // The real deadline is long (TIMEOUT_MS), so a slow machine cannot turn a wait into a timeout.
  const TIMEOUT_MS = 60_000;
  const TASK_MS = 11_000;
  const FITS = 4; // (3 + 2) * 11 s = 55 s <= 60 s; a fifth would expect 66 s.
  const clock = { now: 0 };
  let pool: EnginePool;
  let scheduler: InferenceScheduler;
  let url: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    const env = { RECOGNIZER: 'mobilefacenet', MODELS_DIR, MODELS_OFFLINE: '1', LOG_LEVEL: 'silent', REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) };
    const config = loadConfig({ ...env, INFERENCE_WORKERS: '1', INFERENCE_CONCURRENCY: '1', ORT_THREADS: '1' });
    pool = await EnginePool.start({ dir: MODELS_DIR, offline: true, detector: config.models.detector, recognizer: config.models.recognizer, intraOpThreads: 1, workers: 1, tasksPerWorker: 1 });
    scheduler = new InferenceScheduler({ ...config.inference, now: () => clock.now });
    const gallery = new MemoryGallery();
    const metrics = new ServiceMetrics({ scheduler, gallery: () => gallery });
    // The service's parts by hand, so that the scheduler runs on the test's clock.
    const parts: ServiceParts = { config, scheduler, metrics, startedAt: Date.now(), closing: false, engine: pool, pipeline: new InferencePipeline(pool, scheduler, config, metrics), gallery };
    const openConnectionStage = trackingStage({ arrivals: new ArrivalLedger(config.events.cooldownS), webhooks: null });
    const app = buildApp(parts, { logger: createLogger('silent'), version: 'test', openConnectionStage });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    close = () => app.close();
  });
  afterAll(async () => {
    await close?.();
    await pool?.close();
  });

  const detect = () =>
    fetch(`${url}/api/v1/detect`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: readTestdata('faces/obama/1.jpg').toString('base64') }),
    });

  it('serves a burst that fits in the timeout and refuses the request beyond it at once, with Retry-After', async () => {
    await scheduler.run(async () => void (clock.now += TASK_MS));
    let release!: () => void;
    const held = scheduler.run(() => new Promise<void>((resolve) => (release = resolve)));
    const burst = Array.from({ length: FITS }, detect);
    await vi.waitFor(() => expect(scheduler.depth()).toBe(FITS), { timeout: 30_000, interval: 5 });
    const refused = await detect();
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('overloaded');
    // The backlog (one running, four waiting, this one) at one task per 11 s.
    expect(Number(refused.headers.get('retry-after'))).toBe(66);
    expect(scheduler.depth()).toBe(FITS);
    release();
    await held;
    const answers = await Promise.all(burst);
    expect(answers.map((a) => a.status)).toEqual(Array(FITS).fill(200));
    for (const answer of answers) expect(((await answer.json()) as { count: number }).count).toBe(1);
  });
});
