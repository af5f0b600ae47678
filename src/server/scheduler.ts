// Who may use the inference workers, and when. A bounded number of tasks run at once (the
// workers' capacity); requests beyond it wait, each holding only its encoded payload, so memory
// follows the running tasks. A request is admitted while it can be expected to finish within the
// request timeout at the service rate measured so far, and refused at once with a hint of when to
// retry otherwise. The gallery's background extraction has its own lane and only runs when no
// request is waiting.
import { FaceRecogError, deadlinePassed } from '../errors.js';

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
    if (this.remainingMs <= 0) throw deadlinePassed();
  }
}

export interface SchedulerOptions {
  /** Tasks run at once. */
  concurrency: number;
  /** Request-lane tasks allowed to wait whatever the expected wait: a bound on the payloads held. */
  maxQueue: number;
  /** The request timeout: a request not expected to finish within it is refused. */
  timeoutMs: number;
  /** The clock task durations are measured with (tests give a controllable one). */
  now?: () => number;
}

interface Waiting {
  start: () => void;
  fail: (error: FaceRecogError) => void;
  timer?: NodeJS.Timeout;
}

// Weight of the newest task duration in the moving average.
const DURATION_SMOOTHING = 0.2;
// Before any task has finished, Retry-After hints assume this long per task.
const UNMEASURED_TASK_MS = 200;

export class InferenceScheduler {
  private readonly options: SchedulerOptions;
  private readonly queues: Record<Lane, Waiting[]> = { request: [], background: [] };
  private readonly now: () => number;
  private active = 0;
  /** Mean duration of recent tasks, null until one has finished. */
  private averageTaskMs: number | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(options: SchedulerOptions) {
    this.options = options;
    this.now = options.now ?? (() => performance.now());
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  /** Tasks waiting in a lane. */
  depth(lane: Lane = 'request'): number {
    return this.queues[lane].length;
  }

  /**
   * Tasks finished per second while all slots are busy: by Little's law, the slots over the mean
   * time a task holds one (which, measured under load, includes the slowdown of sharing the cores).
   * Null until a task has finished: a service that has measured nothing refuses nothing early.
   */
  get serviceRate(): number | null {
    return this.averageTaskMs === null ? null : (1000 * this.options.concurrency) / this.averageTaskMs;
  }

  /**
   * Milliseconds a request-lane task arriving now can expect until it finishes: it starts once the
   * tasks ahead of it have freed a slot (waiting requests, then one running task), then takes the
   * mean task time. Null until the service rate is measured.
   */
  get expectedCompletionMs(): number | null {
    const rate = this.serviceRate;
    if (rate === null || this.averageTaskMs === null) return null;
    const ahead = this.active < this.options.concurrency ? 0 : this.queues.request.length + 1;
    return (1000 * ahead) / rate + this.averageTaskMs;
  }

  /** True when a new request-lane task would be refused: expected to miss the timeout, or no room to wait. */
  get saturated(): boolean {
    return this.refuses(this.options.timeoutMs);
  }

  /** Seconds after which a refused request has a fair chance: the backlog at the measured rate. */
  get retryAfterS(): number {
    const backlog = this.active + this.queues.request.length + 1;
    const rate = this.serviceRate ?? (1000 * this.options.concurrency) / UNMEASURED_TASK_MS;
    return Math.max(1, Math.ceil(backlog / rate));
  }

  /**
   * Runs `task` when a slot is free. Request-lane tasks are refused with `overloaded` when they
   * are not expected to finish in time (see `saturated`), and fail with `timeout` when `deadline`
   * passes before they start.
   */
  run<T>(task: () => Promise<T>, options: { lane?: Lane; deadline?: Deadline } = {}): Promise<T> {
    const lane = options.lane ?? 'request';
    if (lane === 'request' && this.refuses(options.deadline?.remainingMs ?? this.options.timeoutMs)) {
      return Promise.reject(this.overloaded());
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
          waiting.fail(deadlinePassed());
        }, Math.max(0, options.deadline.remainingMs));
      }
    });
  }

  private refuses(budgetMs: number): boolean {
    if (this.active < this.options.concurrency && this.queues.request.length === 0) return false;
    if (this.queues.request.length >= this.options.maxQueue) return true;
    const expected = this.expectedCompletionMs;
    return expected !== null && expected > budgetMs;
  }

  private overloaded(): FaceRecogError {
    const expected = this.expectedCompletionMs;
    const wait = expected === null ? '' : `, about ${(expected / 1000).toFixed(1)} s to answer a new one`;
    return new FaceRecogError('overloaded', `the service is busy (${this.depth()} requests waiting${wait}); retry later`, {
      retryAfterS: this.retryAfterS,
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
    const started = this.now();
    try {
      return await task();
    } finally {
      const elapsed = this.now() - started;
      this.averageTaskMs = this.averageTaskMs === null ? elapsed : this.averageTaskMs + DURATION_SMOOTHING * (elapsed - this.averageTaskMs);
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
