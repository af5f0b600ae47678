// One soak run: the real service (its own process, embedded PostgreSQL in a temporary DATA_DIR,
// the workload's visitors enrolled) driven at saturation for `durationS` and then until every
// designed answer has been seen, sampled over time, stopped with SIGTERM, and reported.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig, type Config } from '../../src/config.js';
import { startEmbeddedPostgres } from '../../src/gallery/embedded.js';
import { REPO_ROOT } from '../../test/helpers/paths.js';
import { closedPort, launchService } from '../../test/helpers/service-process.js';
import { bursts, camera, httpWorker, noisyClient, pause, type DriverSettings } from './drivers.js';
import { renderMarkdown, rssVerdict, summarise, type SoakReport } from './report.js';
import { Inspector, sample, type Sample } from './sampler.js';
import { Tally, VISITORS, b64 } from './workload.js';

export { renderMarkdown, type SoakReport };

export interface SoakOptions {
  durationS: number;
  /** Samples before this are warm-up: RSS flatness is judged on the ones after. */
  warmupS: number;
  httpWorkers: number;
  wsClients: number;
  sampleEveryS: number;
  /** How long past durationS the run may go on while a designed answer has not been seen yet. */
  graceS: number;
  /** Over the defaults below. */
  drivers?: Partial<DriverSettings>;
  /** Extra environment for the service (e.g. MALLOC_ARENA_MAX=2), shown in the report. */
  serviceEnv?: Record<string, string>;
  /** Progress lines (one per sample); silent when unset. */
  log?: (line: string) => void;
}

// Low enough that the noisy client passes it soon even when the service's workers keep both cores
// busy and the client's own process gets little CPU (about 23 requests/s measured so).
const RATE_LIMIT_PER_MINUTE = 600;
/**
 * The service admits requests while they can finish within the request timeout, so a burst sized
 * from the default queue bound (256) would be hundreds of requests at once; a bound of 32 keeps the
 * burst one the service must refuse, at a size the machine can send.
 */
const SOAK_QUEUE = 32;
const DEFAULT_DRIVERS: Omit<DriverSettings, 'rateLimitPerMinute' | 'burstSize'> = {
  firstBurstS: 5,
  burstEveryS: 20,
  frameEveryMs: 150,
  junkFrameEvery: 10,
  noisyOverBudget: 4,
  noisyInFlight: 16,
};
/** A burst is this many times what the service holds at once (running plus queued): well beyond its queue. */
const BURST_OVER_CAPACITY = 2;
/** RSS after the warm-up may exceed the warm-up's highest by this much before the soak fails. */
const RSS_FLAT_LIMIT_PCT = 10;
const SERVICE_ENV = { LOG_LEVEL: 'warn', GALLERY_POLL_MS: '500' };
/** How often the end of the run checks whether the designed answers are all in. */
const COVERAGE_CHECK_MS = 250;
const START_TIMEOUT_MS = 180_000;

function codeVersion(): string {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--', 'src') ? ' with uncommitted changes in src/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

async function enrolVisitors(dataDir: string): Promise<void> {
  const database = await startEmbeddedPostgres({ dataDir, logger: pino({ level: 'silent' }) });
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  for (const [id, photo] of VISITORS) await client.query('INSERT INTO visitors (visitor_id, base64image) VALUES ($1, $2)', [id, b64(photo)]);
  await client.end();
}

/** The settings the service runs with, as it reads them from its environment (defaults included). */
function serviceSettings(config: Config, env: Record<string, string>): Record<string, string | number> {
  return {
    RECOGNIZER: config.models.recognizer,
    LOG_LEVEL: config.logLevel,
    INFERENCE_WORKERS: config.inference.workers,
    INFERENCE_CONCURRENCY: config.inference.concurrency,
    INFERENCE_QUEUE: config.inference.maxQueue,
    REQUEST_TIMEOUT_MS: config.inference.timeoutMs,
    ORT_THREADS: config.inference.intraOpThreads,
    RATE_LIMIT_PER_MINUTE: config.rateLimitPerMinute,
    GALLERY_POLL_MS: config.gallery.pollMs,
    MALLOC_ARENA_MAX: env.MALLOC_ARENA_MAX ?? 'unset',
  };
}

/** Aborts once `durationS` has passed and every designed answer has been seen, or `graceS` later at the latest. */
async function endOfRun(options: SoakOptions, tally: Tally, stop: AbortController): Promise<void> {
  await delay(options.durationS * 1000);
  const latest = performance.now() + options.graceS * 1000;
  while (tally.missing().length > 0 && performance.now() < latest) await delay(COVERAGE_CHECK_MS);
  stop.abort();
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  const dataDir = await mkdtemp(join(tmpdir(), 'face-recog-soak-'));
  const keys = [
    ...Array.from({ length: options.httpWorkers }, (_, i) => `soak-http-${i}`),
    ...Array.from({ length: options.wsClients }, (_, i) => `soak-ws-${i}`),
    'soak-burst',
    'soak-noisy',
    'soak-sampler',
  ];
  // A port chosen here: at LOG_LEVEL=warn the service does not log the one it listens on.
  const port = await closedPort();
  const env = {
    PORT: String(port),
    DATA_DIR: dataDir,
    API_KEYS: keys.join(','),
    RATE_LIMIT_PER_MINUTE: String(RATE_LIMIT_PER_MINUTE),
    INFERENCE_QUEUE: String(SOAK_QUEUE),
    ...SERVICE_ENV,
    ...options.serviceEnv,
  };
  const service = launchService({ env, nodeOptions: ['--inspect=127.0.0.1:0'] });
  const config = loadConfig(service.env);
  const drivers: DriverSettings = {
    ...DEFAULT_DRIVERS,
    rateLimitPerMinute: config.rateLimitPerMinute,
    burstSize: BURST_OVER_CAPACITY * (config.inference.maxQueue + config.inference.concurrency),
    ...options.drivers,
  };
  try {
    const url = await service.url();
    await service.healthy(START_TIMEOUT_MS);
    await enrolVisitors(dataDir);
    await service.until(
      'the visitors in the gallery',
      async () => ((await (await fetch(`${url}/health`)).json()).gallery?.faces >= VISITORS.length ? true : undefined),
      START_TIMEOUT_MS,
    );
    const inspector = await Inspector.connect(service);
    log(`service pid ${service.pid} at ${url}; ${VISITORS.length} visitors enrolled; running ${options.durationS} s`);

    const tally = new Tally();
    const startedAt = performance.now();
    const startedIso = new Date().toISOString();
    const stopping = new AbortController();
    const stop = stopping.signal;
    const samples: Sample[] = [];
    const sampler = (async () => {
      while (!stop.aborted) {
        const s = await sample(service, inspector, url, startedAt, tally);
        samples.push(s);
        log(`${s.atS}s rss ${s.rssMb} MB heap ${s.heapUsedMb} MB event loop p99 ${s.eventLoopP99Ms} ms max ${s.eventLoopMaxMs} ms answered ${s.answered} unexpected ${tally.unexpected}`);
        await pause(options.sampleEveryS * 1000, stop);
      }
    })();
    await Promise.all([
      ...Array.from({ length: options.httpWorkers }, (_, i) => httpWorker(url, `soak-http-${i}`, i * 3, stop, tally)),
      ...Array.from({ length: options.wsClients }, (_, i) => camera(url, `soak-ws-${i}`, drivers, stop, tally)),
      bursts(url, drivers, stop, tally),
      noisyClient(url, drivers, stop, tally),
      sampler,
      endOfRun(options, tally, stopping),
    ]);
    const ranS = Math.round((performance.now() - startedAt) / 1000);
    samples.push(await sample(service, inspector, url, startedAt, tally));
    inspector.close();

    const exit = await service.stop('SIGTERM');
    const logs = [...service.stdout, ...service.stderr];
    const serviceLog = {
      errorLines: logs.filter((line) => /"level":(50|60)/.test(line)).length,
      keyLeaks: logs.filter((line) => keys.some((key) => line.includes(key))).length,
    };
    const routes = summarise(tally);
    const outcomes: Record<string, number> = {};
    for (const r of routes) for (const [o, n] of Object.entries(r.outcomes)) outcomes[o] = (outcomes[o] ?? 0) + n;
    const rss = rssVerdict(samples, options.warmupS, RSS_FLAT_LIMIT_PCT);
    const missing = tally.missing();
    const problems = [
      ...(tally.unexpected > 0 ? [`${tally.unexpected} unexpected answers`] : []),
      ...(missing.length > 0 ? [`never answered as designed within ${options.graceS} s past the duration: ${missing.join('; ')}`] : []),
      ...(serviceLog.errorLines > 0 ? [`${serviceLog.errorLines} error lines in the service log`] : []),
      ...(serviceLog.keyLeaks > 0 ? [`${serviceLog.keyLeaks} log lines carry a key`] : []),
      ...(exit.code === 0 ? [] : [`the service exited with ${exit.code ?? exit.signal} on SIGTERM`]),
    ];
    const reasons = [...problems, ...(rss.flat ? [] : [`RSS grew ${rss.growthPct}% after the warm-up (limit ${rss.limitPct}%)`])];
    return {
      startedAt: startedIso,
      code: codeVersion(),
      run: {
        durationS: options.durationS,
        ranS,
        warmupS: options.warmupS,
        httpWorkers: options.httpWorkers,
        wsClients: options.wsClients,
        sampleEveryS: options.sampleEveryS,
        visitors: VISITORS.length,
        drivers,
      },
      service: { settings: serviceSettings(config, service.env), extraEnv: options.serviceEnv ?? {} },
      answered: tally.total,
      routes,
      outcomes: Object.fromEntries(Object.entries(outcomes).sort(([, a], [, b]) => b - a)),
      unexpected: { count: tally.unexpected, examples: tally.examples },
      missing,
      samples,
      rss,
      serviceLog,
      exitCode: exit.code,
      problems,
      verdict: { pass: reasons.length === 0, reasons },
    };
  } finally {
    await service.stop('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
}
