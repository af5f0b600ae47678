// The service as `npm start` runs it (node dist/server/main.js; `npm run bench` builds it first),
// in a child process with its embedded PostgreSQL under a temporary DATA_DIR, measured from outside:
// its HTTP answers, /health, and its resident memory from /proc. The face-recog CLI runs against
// the same DATA_DIR, joining the service's PostgreSQL.
import pino from 'pino';
import { openDatabase, type OpenDatabase } from '../src/gallery/connect.js';
import { DEFAULT_DATABASE_SCHEMA } from '../src/gallery/service-schema.js';
import { EVENT_LOOP_RESOLUTION_MS } from '../src/server/metrics.js';
import { closedPort, launchService, type Memory, type ServiceProcess } from '../test/helpers/service-process.js';
import { RECOGNIZER } from './common.js';

export type { Memory };

const START_TIMEOUT_MS = 120_000;

export interface GalleryHealth {
  faces: number;
  failed: number;
  syncing: boolean;
}

/** Seconds summed and calls counted per pipeline stage (decode, detect, embed, search). */
export type StageTotals = Record<string, { sum: number; count: number }>;

/** Mean milliseconds per call of each stage between two snapshots. */
export function stageMeansMs(before: StageTotals, after: StageTotals): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after).flatMap(([stage, a]) => {
      const calls = a.count - (before[stage]?.count ?? 0);
      return calls > 0 ? [[stage, Math.round(((a.sum - (before[stage]?.sum ?? 0)) / calls) * 1e5) / 100]] : [];
    }),
  );
}

export class Service {
  private constructor(
    readonly dataDir: string,
    readonly url: string,
    private readonly process: ServiceProcess,
  ) {}

  /** The service's inference histograms (sum and count of seconds per model/stage), from /metrics. */
  async inferenceTotals(): Promise<StageTotals> {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const totals: StageTotals = {};
    for (const m of text.matchAll(/^face_recog_inference_seconds_(sum|count)\{model="([^"]+)",stage="([^"]+)"\} (\S+)$/gm)) {
      const [, kind, , stage, value] = m;
      totals[stage] ??= { sum: 0, count: 0 };
      totals[stage][kind as 'sum' | 'count'] += Number(value);
    }
    return totals;
  }

  /**
   * The event loop's delay p99 since the previous scrape of /metrics (the histogram restarts at
   * each one), in ms: the service samples it every EVENT_LOOP_RESOLUTION_MS, and a sample is the
   * time between two ticks of that timer, so the interval itself is taken off.
   */
  async eventLoopDelayP99Ms(): Promise<number> {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const match = /^face_recog_nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
    if (!match) throw new Error('/metrics has no face_recog_nodejs_eventloop_lag_p99_seconds');
    return Math.max(0, Number(match[1]) * 1000 - EVENT_LOOP_RESOLUTION_MS);
  }

  /**
   * Starts the built service (warnings and errors logged only, so on a port chosen here) and
   * resolves once /health is 200 (models loaded, database up).
   */
  static async start(dataDir: string): Promise<Service> {
    const port = await closedPort();
    const service = launchService({ entry: 'built', env: { PORT: String(port), DATA_DIR: dataDir, RECOGNIZER, LOG_LEVEL: 'warn' } });
    await service.healthy(START_TIMEOUT_MS);
    return new Service(dataDir, await service.url(), service);
  }

  get pid(): number {
    return this.process.pid;
  }

  get wsUrl(): string {
    return `${this.url.replace(/^http/, 'ws')}/ws/realtime`;
  }

  async gallery(): Promise<GalleryHealth> {
    const body = (await (await fetch(`${this.url}/health`)).json()) as { gallery: GalleryHealth | null };
    if (!body.gallery) throw new Error('/health has no gallery yet');
    return body.gallery;
  }

  /** Resolves once the gallery has done with `images` stored images (searchable faces plus failed ones) and is not syncing. */
  waitForImages(images: number, timeoutMs: number): Promise<GalleryHealth> {
    return this.process.until(
      `the gallery to hold ${images} images`,
      async () => {
        const gallery = await this.gallery();
        return gallery.faces + gallery.failed >= images && !gallery.syncing ? gallery : undefined;
      },
      timeoutMs,
    );
  }

  /** Resident memory of the service process, in whole MB. */
  memory(): Memory {
    const { rssMb, peakMb } = this.process.memory();
    return { rssMb: Math.round(rssMb), peakMb: Math.round(peakMb) };
  }

  /** The embedded PostgreSQL this service runs, joined (closing it leaves the server running). */
  database(): Promise<OpenDatabase> {
    return openDatabase({ databaseUrl: null, dataDir: this.dataDir, databaseSchema: DEFAULT_DATABASE_SCHEMA }, pino({ level: 'warn' }));
  }

  /** `face-recog <args>` on this service's DATA_DIR; returns its stdout. */
  cli(args: string[]): Promise<string> {
    return this.process.cli(args);
  }

  /** SIGTERM, then waits for the graceful exit (which stops the embedded PostgreSQL). */
  async stop(): Promise<void> {
    await this.process.stop('SIGTERM');
  }
}
