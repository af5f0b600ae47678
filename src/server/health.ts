// /health: ok as soon as the models are loaded and the database answers (even while the gallery is
// still reconciling); otherwise starting or degraded, with the reasons. A permission the service's
// database role lacks degrades it, and the reason carries the SQL that grants it.
import { describeProblem, isBlocking } from '../gallery/problems.js';
import type { GalleryStatus } from '../gallery/types.js';
import type { ServiceParts } from './parts.js';
import type { HealthBody } from './schemas.js';

function galleryView(status: GalleryStatus): NonNullable<HealthBody['gallery']> {
  return {
    database: status.database,
    syncing: status.syncing,
    faces: status.faces,
    visitors: status.visitors,
    failed: status.failed,
    model: status.model,
    last_sync_at: status.lastSyncAt,
    error: status.error,
    problems: status.problems,
    role: status.role,
  };
}

export function healthReport(parts: ServiceParts): { statusCode: 200 | 503; body: HealthBody } {
  const { engine, gallery, scheduler } = parts;
  const galleryStatus = gallery?.status() ?? null;
  const starting: string[] = [];
  const degraded: string[] = [];

  if (!engine) starting.push('models are loading');
  if (!galleryStatus) {
    starting.push('the visitor gallery is starting');
  } else if (galleryStatus.database === 'down') {
    const neverConnected = galleryStatus.lastSyncAt === null && galleryStatus.error === null;
    if (neverConnected) starting.push('the database is not connected yet');
    else degraded.push(`the database is unavailable${galleryStatus.error ? `: ${galleryStatus.error}` : ''}`);
  } else {
    degraded.push(...galleryStatus.problems.filter(isBlocking).map(describeProblem));
  }

  const status = degraded.length > 0 ? 'degraded' : starting.length > 0 ? 'starting' : 'ok';
  const recognizer = engine?.recognizer;
  return {
    statusCode: status === 'ok' ? 200 : 503,
    body: {
      status,
      reasons: [...degraded, ...starting],
      models:
        engine && recognizer
          ? {
              detector: engine.detectorName,
              recognizer: recognizer.name,
              dimension: recognizer.dimension,
              match_threshold: parts.config.matchThreshold ?? recognizer.defaultThreshold,
            }
          : null,
      gallery: galleryStatus && galleryView(galleryStatus),
      queue: {
        running: scheduler.running,
        waiting: scheduler.depth('request'),
        background: scheduler.depth('background'),
      },
      uptime_s: Math.round((Date.now() - parts.startedAt) / 1000),
    },
  };
}
