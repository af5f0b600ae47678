// What the app's plugins read of the running service (service.ts is the one place that builds
// it): the parts that exist from the start, and those that exist once loaded (null until then).
import type { Config } from '../config.js';
import type { InferenceEngine } from '../engine/analysis.js';
import { FaceRecogError } from '../errors.js';
import type { Gallery } from '../gallery/types.js';
import type { ServiceMetrics } from './metrics.js';
import type { InferencePipeline } from './pipeline.js';
import type { InferenceScheduler } from './scheduler.js';

export interface ServiceParts {
  readonly config: Config;
  readonly scheduler: InferenceScheduler;
  readonly metrics: ServiceMetrics;
  /** Date.now() at start, for /health's uptime. */
  readonly startedAt: number;
  /** True from the moment the service begins to shut down: new requests are refused. */
  readonly closing: boolean;
  /** Null while the models load. */
  readonly engine: InferenceEngine | null;
  /** The engine's one pipeline; null while the models load. */
  readonly pipeline: InferencePipeline | null;
  /** Null while the gallery starts. */
  readonly gallery: Gallery | null;
}

/** The pipeline, or `not_ready` while the models load. */
export function readyPipeline(parts: ServiceParts): InferencePipeline {
  if (!parts.pipeline) throw new FaceRecogError('not_ready', 'the models are still loading; retry shortly', { retryAfterS: 5 });
  return parts.pipeline;
}

/** The threshold a request gets unless it sends one: MATCH_THRESHOLD, else the recognizer's own. */
export function defaultThreshold(parts: ServiceParts, pipeline: InferencePipeline): number {
  return parts.config.matchThreshold ?? pipeline.engine.recognizer.defaultThreshold;
}
