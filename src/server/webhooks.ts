// Visitor events POSTed to WEBHOOK_URL. `send` only queues: recognition never waits for the
// receiver. A few deliveries run at once, each retried with exponential backoff and jitter while
// the receiver is unreachable, times out or answers 408, 429 or 5xx; any other answer is final.
// The queue is bounded; when it is full the oldest waiting event is dropped, since the newest
// arrival is the one a reception desk acts on. Every body is signed so that the receiver can tell
// our events from anyone else's:
//   X-Face-Recog-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with WEBHOOK_SECRET>
// and carries X-Face-Recog-Delivery, one id per event kept across retries: delivery is at least
// once (a receiver that answered too late gets the event again), and the id lets it drop repeats.
import { createHmac, randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { WebhookOutcome } from './metrics.js';
import type { VisitorEvent } from './tracking/events.js';

export const SIGNATURE_HEADER = 'x-face-recog-signature';
export const DELIVERY_HEADER = 'x-face-recog-delivery';

// Deliveries in flight at once: enough that one slow receiver answer does not hold up the rest.
const MAX_IN_FLIGHT = 4;
// Events waiting beyond those in flight (a few minutes of arrivals at a busy desk).
const MAX_QUEUE = 1000;
// Attempts per event: with the backoff below, the last one comes 8 to 15 s after the first.
const MAX_ATTEMPTS = 6;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 30_000;
const ATTEMPT_TIMEOUT_MS = 5000;
// How long close() waits for the queue to drain before abandoning what is left.
const CLOSE_TIMEOUT_MS = 5000;

/** The counters /metrics shows (ServiceMetrics implements them). */
export interface WebhookMetrics {
  countWebhook(outcome: WebhookOutcome, count?: number): void;
  countWebhookRetry(): void;
}

export interface WebhookOptions {
  url: string;
  secret: string;
  metrics: WebhookMetrics;
  log: Pick<FastifyBaseLogger, 'warn'>;
}

interface Delivery {
  id: string;
  body: string;
}

type AttemptResult = 'delivered' | 'retry' | 'rejected';

/** `sha256=<hex>` of the body, as sent in X-Face-Recog-Signature. */
export function signBody(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Delay before attempt `attempt + 1`: 500 ms doubling per attempt up to 30 s, of which a random
 * half is kept ("equal jitter"), so that services that failed together do not retry together.
 */
export function retryDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

export class WebhookSender {
  private readonly url: string;
  private readonly secret: string;
  private readonly metrics: WebhookMetrics;
  private readonly log: Pick<FastifyBaseLogger, 'warn'>;
  private readonly queue: Delivery[] = [];
  private readonly abandon = new AbortController();
  private inFlight = 0;
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(options: WebhookOptions) {
    this.url = options.url;
    this.secret = options.secret;
    this.metrics = options.metrics;
    this.log = options.log;
  }

  /** Events queued or being delivered. */
  get pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Queues the event and returns at once; after close() the event is counted abandoned. */
  send(event: VisitorEvent): void {
    if (this.closing) {
      this.metrics.countWebhook('abandoned');
      return;
    }
    if (this.queue.length >= MAX_QUEUE) {
      this.queue.shift();
      this.metrics.countWebhook('dropped');
    }
    this.queue.push({ id: randomUUID(), body: JSON.stringify(event) });
    this.pump();
  }

  /**
   * Stops taking events and waits up to `timeoutMs` for those queued to be delivered; whatever is
   * still queued or retrying then is abandoned (counted) and the connections in flight are cut.
   */
  async close(timeoutMs = CLOSE_TIMEOUT_MS): Promise<void> {
    this.closing = true;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.idle().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (drained) return;
    this.metrics.countWebhook('abandoned', this.queue.splice(0).length);
    this.abandon.abort();
    await this.idle();
  }

  private idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const delivery = this.queue.shift()!;
      this.inFlight++;
      void this.deliver(delivery).finally(() => {
        this.inFlight--;
        this.pump();
        if (this.pending === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      });
    }
  }

  private async deliver(delivery: Delivery): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const { result, reason } = await this.attempt(delivery);
      if (result === 'delivered') {
        this.metrics.countWebhook('delivered');
        return;
      }
      if (this.abandon.signal.aborted) {
        this.metrics.countWebhook('abandoned');
        return;
      }
      if (result === 'rejected' || attempt === MAX_ATTEMPTS) {
        this.metrics.countWebhook('failed');
        this.log.warn({ webhook: new URL(this.url).origin, delivery: delivery.id, attempts: attempt, reason }, 'webhook delivery failed; event not delivered');
        return;
      }
      this.metrics.countWebhookRetry();
      if (!(await this.wait(retryDelayMs(attempt)))) {
        this.metrics.countWebhook('abandoned');
        return;
      }
    }
  }

  private async attempt(delivery: Delivery): Promise<{ result: AttemptResult; reason: string }> {
    try {
      const response = await fetch(this.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'face-recog-webhook',
          [SIGNATURE_HEADER]: signBody(delivery.body, this.secret),
          [DELIVERY_HEADER]: delivery.id,
        },
        body: delivery.body,
        // A redirected POST would arrive as a GET, unsigned: a redirect is an answer, not followed.
        redirect: 'manual',
        signal: AbortSignal.any([this.abandon.signal, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)]),
      });
      // The answer's body is read and discarded: a connection whose body was read is reused
      // (cancelling it instead closes the connection, and costs a new one per event).
      await response.body?.pipeTo(new WritableStream());
      if (response.ok) return { result: 'delivered', reason: '' };
      const reason = `HTTP ${response.status}`;
      const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
      return { result: retryable ? 'retry' : 'rejected', reason };
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      return { result: 'retry', reason: cause ?? (error as Error).name };
    }
  }

  /** Sleeps `ms`; false when the sender was abandoned meanwhile. */
  private wait(ms: number): Promise<boolean> {
    const signal = this.abandon.signal;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(false);
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
