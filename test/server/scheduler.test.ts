// The inference scheduler: bounded concurrency, a bounded queue, deadlines, a background lane.
import { describe, expect, it } from 'vitest';
import { FaceRecogError } from '../../src/errors.js';
import { Deadline, InferenceScheduler } from '../../src/server/scheduler.js';

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

describe('InferenceScheduler', () => {
  it('runs at most `concurrency` tasks and starts the next when one finishes', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 2, maxQueue: 10 });
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
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 1 });
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
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 0 });
    const running = gate();
    const first = scheduler.run(running.task);
    await expect(scheduler.run(async () => 1)).rejects.toMatchObject({ code: 'overloaded' });
    running.release();
    await first;
    await expect(scheduler.run(async () => 2)).resolves.toBe(2);
  });

  it('fails a queued task with timeout when its deadline passes, and forgets it', async () => {
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 5 });
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
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 0 });
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
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 5 });
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
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 5 });
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
    const scheduler = new InferenceScheduler({ concurrency: 1, maxQueue: 1 });
    await expect(scheduler.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(scheduler.run(async () => 'next')).resolves.toBe('next');
    expect(scheduler.running).toBe(0);
  });
});
