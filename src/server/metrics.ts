// Prometheus metrics, one registry per app so that several apps (tests) never share counters.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Gallery } from '../gallery/types.js';
import type { InferenceScheduler } from './scheduler.js';

export interface MetricSources {
  scheduler: InferenceScheduler;
  gallery: () => Gallery | null;
}

/**
 * How often the event loop's delay is sampled (face_recog_nodejs_eventloop_lag_*). A sample is the
 * time between two ticks of a timer this far apart, so a block shorter than the interval can hide
 * inside it: 1 ms sees the blocks that matter beside a 10 to 30 ms request, for a thousand timer
 * ticks a second.
 */
export const EVENT_LOOP_RESOLUTION_MS = 1;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const INFERENCE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export type InferenceStage = 'decode' | 'detect' | 'embed' | 'search';
export type FrameOutcome = 'processed' | 'dropped' | 'cancelled' | 'error';
/** What became of a visitor event sent to WEBHOOK_URL: see webhooks.ts. */
const WEBHOOK_OUTCOMES = ['delivered', 'failed', 'dropped', 'abandoned'] as const;
export type WebhookOutcome = (typeof WEBHOOK_OUTCOMES)[number];

export class ServiceMetrics {
  readonly registry = new Registry();
  private readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  private readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  private readonly inference: Histogram<'model' | 'stage'>;
  private readonly frames: Counter<'outcome'>;
  private readonly wsConnections: Gauge;
  private readonly webhookDeliveries: Counter<'outcome'>;
  private readonly webhookRetries: Counter;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'face_recog_', eventLoopMonitoringPrecision: EVENT_LOOP_RESOLUTION_MS });
    this.httpRequests = new Counter({
      name: 'face_recog_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'face_recog_http_request_duration_seconds',
      help: 'HTTP request latency from arrival to response, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inference = new Histogram({
      name: 'face_recog_inference_seconds',
      help: 'Time per pipeline stage (decode, detect, embed, search) by model',
      labelNames: ['model', 'stage'],
      buckets: INFERENCE_BUCKETS,
      registers,
    });
    this.frames = new Counter({
      name: 'face_recog_ws_frames_total',
      help: 'WebSocket frames by outcome (processed, dropped for a newer one, cancelled by their connection closing, error)',
      labelNames: ['outcome'],
      registers,
    });
    this.wsConnections = new Gauge({ name: 'face_recog_ws_connections', help: 'Open WebSocket connections', registers });
    this.webhookDeliveries = new Counter({
      name: 'face_recog_webhook_deliveries_total',
      help: 'Visitor events sent to WEBHOOK_URL by outcome: delivered (2xx), failed (retries exhausted or refused), dropped (queue full, oldest first), abandoned (still queued at shutdown)',
      labelNames: ['outcome'],
      registers,
    });
    // Every outcome shows from the start, so that a rate over them is defined before the first event.
    for (const outcome of WEBHOOK_OUTCOMES) this.webhookDeliveries.inc({ outcome }, 0);
    this.webhookRetries = new Counter({
      name: 'face_recog_webhook_retries_total',
      help: 'Webhook attempts repeated after the receiver failed (unreachable, timeout, 408, 429 or 5xx)',
      registers,
    });
    new Gauge({
      name: 'face_recog_queue_depth',
      help: 'Inference tasks waiting for a slot, by lane',
      labelNames: ['lane'],
      registers,
      collect() {
        this.set({ lane: 'request' }, sources.scheduler.depth('request'));
        this.set({ lane: 'background' }, sources.scheduler.depth('background'));
      },
    });
    new Gauge({
      name: 'face_recog_inference_running',
      help: 'Inference tasks running now',
      registers,
      collect() {
        this.set(sources.scheduler.running);
      },
    });
    new Gauge({
      name: 'face_recog_gallery_faces',
      help: 'Face embeddings searchable in the gallery',
      registers,
      collect() {
        this.set(sources.gallery()?.status().faces ?? 0);
      },
    });
    new Counter({
      name: 'face_recog_gallery_extractions_total',
      help: 'Stored images this replica extracted (among replicas, one extracts; the others load its results)',
      registers,
      collect() {
        // The gallery counts; the counter shows its total.
        this.reset();
        this.inc(sources.gallery()?.status().extractions ?? 0);
      },
    });
    new Gauge({
      name: 'face_recog_gallery_failed_images',
      help: 'Stored images skipped because they cannot be decoded or show no face',
      registers,
      collect() {
        this.set(sources.gallery()?.status().failed ?? 0);
      },
    });
  }

  observeRequest(route: string, method: string, status: number, seconds: number): void {
    const labels = { route, method, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }

  observeInference(model: string, stage: InferenceStage, seconds: number): void {
    this.inference.observe({ model, stage }, seconds);
  }

  countFrames(outcome: FrameOutcome, count = 1): void {
    this.frames.inc({ outcome }, count);
  }

  countWebhook(outcome: WebhookOutcome, count = 1): void {
    this.webhookDeliveries.inc({ outcome }, count);
  }

  countWebhookRetry(): void {
    this.webhookRetries.inc();
  }

  connectionOpened(): void {
    this.wsConnections.inc();
  }

  connectionClosed(): void {
    this.wsConnections.dec();
  }
}
