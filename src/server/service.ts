// The composition root: the one place that builds the service from its configuration (the
// scheduler, the metrics, the engine (a pool of inference workers) and its one pipeline, the gallery
// fed by that pipeline, the visitor events and their webhook, the app over them) and starts and
// stops them in order. `npm start`, the tests and the benchmarks all
// run the service through it; tests hand it their own engine or gallery.
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { engineOptions, type Config } from '../config.js';
import type { InferenceEngine } from '../engine/analysis.js';
import { downloadProgressReporter } from '../engine/models/progress.js';
import { EnginePool } from '../engine/worker-pool.js';
import { startGallery, type GalleryOptions } from '../gallery/index.js';
import type { Gallery } from '../gallery/types.js';
import { buildApp } from './app.js';
import { createLogger } from './logging.js';
import { ServiceMetrics } from './metrics.js';
import type { ServiceParts } from './parts.js';
import { InferencePipeline } from './pipeline.js';
import type { OpenConnectionStage } from './realtime.js';
import { InferenceScheduler } from './scheduler.js';
import { ArrivalLedger } from './tracking/events.js';
import { trackingStage } from './tracking/stage.js';
import { WebhookSender } from './webhooks.js';

export interface ServiceOptions {
  /** Default: a pino logger at LOG_LEVEL on stdout (logging.ts). */
  logger?: Logger;
  /** Shown in the OpenAPI document. */
  version?: string;
  /**
   * Default: a pool of inference workers over the configured models (engineOptions), downloaded
   * with a progress bar where missing. Tests may hand in a FaceEngine running in this thread.
   */
  loadEngine?: () => Promise<InferenceEngine>;
  /** Default: the PostgreSQL gallery of the configuration (galleryOptions), enrolling through `pipeline`. */
  openGallery?: (pipeline: InferencePipeline, logger: Logger) => Promise<Gallery>;
  /** Per-connection work on realtime results (realtime.ts, ConnectionStage). Default: tracking (tracking/stage.ts). */
  openConnectionStage?: OpenConnectionStage;
}

/** The gallery the configuration names, enrolling stored images with the pipeline's extractor. */
export function galleryOptions(config: Config, pipeline: InferencePipeline, logger: Logger): GalleryOptions {
  const { recognizer } = pipeline.engine;
  return {
    databaseUrl: config.databaseUrl,
    databaseSchema: config.databaseSchema,
    dataDir: config.dataDir,
    model: recognizer.name,
    dimension: recognizer.dimension,
    extractor: pipeline.extractor,
    pollMs: config.gallery.pollMs,
    batchSize: config.gallery.batchSize,
    concurrency: config.gallery.concurrency,
    logger,
  };
}

export class Service implements ServiceParts {
  readonly scheduler: InferenceScheduler;
  readonly metrics: ServiceMetrics;
  readonly startedAt = Date.now();
  readonly logger: Logger;
  /** Every camera's visits, for all its connections. */
  readonly arrivals: ArrivalLedger;
  /** Null without WEBHOOK_URL. */
  readonly webhooks: WebhookSender | null;
  readonly app: FastifyInstance;
  private state: { engine: InferenceEngine; pipeline: InferencePipeline } | null = null;
  /** The worker pool this service started (an engine handed in is its owner's to close). */
  private pool: EnginePool | null = null;
  private currentGallery: Gallery | null = null;
  private starting: Promise<void> | null = null;
  private closeRequested = false;

  constructor(
    readonly config: Config,
    private readonly options: ServiceOptions = {},
  ) {
    this.logger = options.logger ?? createLogger(config.logLevel);
    this.scheduler = new InferenceScheduler(config.inference);
    this.metrics = new ServiceMetrics({ scheduler: this.scheduler, gallery: () => this.currentGallery });
    this.arrivals = new ArrivalLedger(config.events.cooldownS);
    const { webhook } = config.events;
    this.webhooks = webhook ? new WebhookSender({ ...webhook, metrics: this.metrics, log: this.logger }) : null;
    const openConnectionStage = options.openConnectionStage ?? trackingStage({ arrivals: this.arrivals, webhooks: this.webhooks });
    this.app = buildApp(this, { logger: this.logger, version: options.version ?? '0.0.0', openConnectionStage });
  }

  get engine(): InferenceEngine | null {
    return this.state?.engine ?? null;
  }

  get pipeline(): InferencePipeline | null {
    return this.state?.pipeline ?? null;
  }

  get gallery(): Gallery | null {
    return this.currentGallery;
  }

  get closing(): boolean {
    return this.closeRequested;
  }

  /** From now on requests are answered with this engine, through its one pipeline. */
  useEngine(engine: InferenceEngine): InferencePipeline {
    const pipeline = new InferencePipeline(engine, this.scheduler, this.config, this.metrics);
    this.state = { engine, pipeline };
    return pipeline;
  }

  /** From now on recognition searches this gallery. */
  useGallery(gallery: Gallery): void {
    this.currentGallery = gallery;
  }

  /** Listens on HOST:PORT (the routes answer `not_ready` until start() has loaded the models); resolves to the address. */
  listen(): Promise<string> {
    return this.app.listen({ host: this.config.host, port: this.config.port });
  }

  /** Loads the models, then starts the gallery (which enrols through the engine's pipeline). */
  start(): Promise<void> {
    this.starting ??= this.load();
    return this.starting;
  }

  /**
   * Refuses new requests at once, finishes the work in flight (HTTP and WebSocket), then closes
   * the gallery and its database (waiting for a gallery still starting, so that it is closed too)
   * while the webhook delivers the events still queued (those it cannot within its grace are
   * counted abandoned), and last the inference workers, which the gallery's extraction may still be using.
   */
  async close(): Promise<void> {
    // Before app.close(): Fastify marks itself closing only once its async close hooks have run.
    this.closeRequested = true;
    await this.app.close();
    const closeGallery = async (): Promise<void> => {
      await this.starting?.catch(() => undefined);
      await this.currentGallery?.close();
    };
    await Promise.all([closeGallery(), this.webhooks?.close()]);
    await this.pool?.close();
  }

  private async load(): Promise<void> {
    const { config, logger } = this;
    const engine = await (this.options.loadEngine ?? (() => this.startPool()))();
    logger.info({ detector: engine.detectorName, recognizer: engine.recognizer.name, workers: this.pool?.size ?? 0 }, 'models loaded');
    if (this.closing) return;
    const pipeline = this.useEngine(engine);
    const open = this.options.openGallery ?? ((p: InferencePipeline, log: Logger) => startGallery(galleryOptions(config, p, log)));
    this.useGallery(await open(pipeline, logger));
  }

  private async startPool(): Promise<EnginePool> {
    const { inference } = this.config;
    this.pool = await EnginePool.start({
      ...engineOptions(this.config),
      onProgress: downloadProgressReporter(),
      workers: inference.workers,
      tasksPerWorker: Math.ceil(inference.concurrency / inference.workers),
    });
    return this.pool;
  }
}

/** The service, its app ready (every plugin loaded, their order checked), not yet listening nor started. */
export async function createService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const service = new Service(config, options);
  await service.app.ready();
  return service;
}
