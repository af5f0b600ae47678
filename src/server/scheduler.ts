// Who may use the CPU for inference, and when. onnxruntime already spreads one run over every
// core, so running more pipelines at once only adds memory and latency: requests wait in a short
// bounded queue instead, and anything beyond it is refused at once with a hint of when to retry.
// The gallery's background extraction has its own lane and only runs when no request is waiting.
import { FaceRecogError } from '../errors.js';

export type Lane = 'request' | 'background';

/** The moment after which a request is no longer worth answering. */
export class Deadline {
  readonly expiresAt: number;

  constructor(timeoutMs: number, now = Date.now()) {
    this.expiresAt = now + timeoutMs;
  }

  get remainingMs(): number {
    return this.expiresAt - Date.now();
  }

  /** Throws `timeout` once the deadline has passed; called between pipeline stages. */
  check(): void {
    if (this.remainingMs <= 0) throw timeoutError();
  }
}

function timeoutError(): FaceRecogError {
  return new FaceRecogError('timeout', 'the request did not finish within its deadline; the service is busy, retry later', {
    retryAfterS: 1,
  });
}

export interface SchedulerOptions {
  /** Tasks run at once. */
  concurrency: number;
  /** Request-lane tasks allowed to wait; more are refused with `overloaded`. */
  maxQueue: number;
}

interface Waiting {
  start: () => void;
  fail: (error: FaceRecogError) => void;
  timer?: NodeJS.Timeout;
}

// Before any task has finished, assume this long per task for Retry-After hints.
const INITIAL_TASK_MS = 200;
// Weight of the newest task duration in the moving average.
const DURATION_SMOOTHING = 0.2;

export class InferenceScheduler {
  private readonly options: SchedulerOptions;
  private readonly queues: Record<Lane, Waiting[]> = { request: [], background: [] };
  private active = 0;
  private averageTaskMs = INITIAL_TASK_MS;
  private idleWaiters: (() => void)[] = [];

  constructor(options: SchedulerOptions) {
    this.options = options;
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  /** Tasks waiting in a lane. */
  depth(lane: Lane = 'request'): number {
    return this.queues[lane].length;
  }

  /** True when a new request-lane task would be refused. */
  get saturated(): boolean {
    return this.active >= this.options.concurrency && this.queues.request.length >= this.options.maxQueue;
  }

  /** Seconds after which a refused request has a fair chance: the backlog at the recent pace. */
  get retryAfterS(): number {
    const backlog = this.active + this.queues.request.length + 1;
    return Math.max(1, Math.ceil((backlog * this.averageTaskMs) / this.options.concurrency / 1000));
  }

  /**
   * Runs `task` when a slot is free. Request-lane tasks are refused with `overloaded` when the
   * queue is full, and with `timeout` when `deadline` passes before they start.
   */
  run<T>(task: () => Promise<T>, options: { lane?: Lane; deadline?: Deadline } = {}): Promise<T> {
    const lane = options.lane ?? 'request';
    if (lane === 'request' && this.saturated) {
      return Promise.reject(
        new FaceRecogError('overloaded', `the service is busy (${this.depth()} requests waiting); retry later`, {
          retryAfterS: this.retryAfterS,
        }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const waiting: Waiting = {
        start: () => {
          clearTimeout(waiting.timer);
          this.execute(task).then(resolve, reject);
        },
        fail: reject,
      };
      if (this.active < this.options.concurrency && this.queues.request.length === 0) {
        waiting.start();
        return;
      }
      const queue = this.queues[lane];
      queue.push(waiting);
      if (options.deadline) {
        waiting.timer = setTimeout(() => {
          queue.splice(queue.indexOf(waiting), 1);
          waiting.fail(timeoutError());
        }, Math.max(0, options.deadline.remainingMs));
      }
    });
  }

  /** Resolves when nothing runs or waits (used at shutdown). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.active === 0 && this.queues.request.length === 0 && this.queues.background.length === 0;
  }

  private async execute<T>(task: () => Promise<T>): Promise<T> {
    this.active++;
    const started = performance.now();
    try {
      return await task();
    } finally {
      const elapsed = performance.now() - started;
      this.averageTaskMs += DURATION_SMOOTHING * (elapsed - this.averageTaskMs);
      this.active--;
      this.startNext();
    }
  }

  private startNext(): void {
    while (this.active < this.options.concurrency) {
      const next = this.queues.request.shift() ?? this.queues.background.shift();
      if (!next) break;
      next.start();
    }
    if (this.isIdle()) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }
}
