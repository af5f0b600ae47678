// `npm run bench [-- --quick] [-- --only SECTION,...]`: every benchmark in one run on this machine,
// section after section: engine stages and OpenCV, then the real service in its own process (HTTP
// latency with one and eight faces, throughput and the event loop's delay meanwhile, a burst of
// clients, WebSocket), the guide's on-the-fly design, reconcile, and the gallery grown to
// 1,000,000 faces. Full run: bench/results/latest.json, bench/results/chart.svg and BENCHMARKS.md
// (<= 15 min). --quick (CI, <= 2 min): smaller counts, written under bench/results/tmp/ so the
// published page stays. --only (sections: engine, http, throughput, burst, realtime, on-the-fly,
// reconcile, sizes): just those, their figures printed and written to bench/results/tmp/only.json.
// Figures are printed, never asserted; a wrong answer or a crash fails the run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FaceEngine } from '../src/engine/engine.js';
import { DEFAULT_IMAGE_LIMITS } from '../src/engine/image.js';
import { BURST, MODELS_DIR, QUICK, RECOGNIZER, REPO_ROOT, RESULTS_DIR, machine, round2, timeInTurn, timeRuns } from './common.js';
import { benchEngine, inProcessPipeline, printEngine } from './engine.js';
import { growTo, reconcileRate, serviceWithVisitors, type SizePoint } from './gallery.js';
import { burst, checkedRequest, expectEightFaces, expectFaces, expectFeatures, expectQueryVisitor, throughput, timeRequests, type Burst, type Check, type Throughput } from './http.js';
import { STORED_MAX_SIDE, eightFaceJpeg, jpegAt, storedPhotos } from './inputs.js';
import { benchOnTheFly, type OnTheFlyPoint } from './on-the-fly.js';
import { realtimeRate, type RealtimeRate } from './realtime.js';
import { benchReplicas, type ReplicasResult } from './replicas.js';
import { headlineTable, targetsTable, writeReport } from './report.js';
import { judgeTargets, type BenchResults } from './results.js';
import { Service, stageMeansMs } from './service.js';

const PLAN = QUICK
  ? {
      requests: 15,
      throughputSeconds: 2,
      realtimeSeconds: 3,
      onTheFly: [{ visitors: 100, requests: 1 }],
      reconcileImages: 100,
      sizes: [10_000],
    }
  : {
      requests: 150,
      throughputSeconds: 10,
      realtimeSeconds: 10,
      // 1,000 visitors take about half a minute per request: three are timed.
      onTheFly: [
        { visitors: 100, requests: 5 },
        { visitors: 1_000, requests: 3 },
      ],
      reconcileImages: 1_000,
      sizes: [10_000, 100_000, 1_000_000],
    };
const VISITORS = 100;
/** Every this many of the reconciled photos, one is enrolled one at a time in process (the reconcile target's base). */
const RECONCILE_SAMPLE_EVERY = 20;
const CONCURRENCY = [1, 4, 16];
const CONNECTIONS = [1, 4];

const SECTIONS = ['engine', 'replicas', 'http', 'throughput', 'burst', 'realtime', 'on-the-fly', 'reconcile', 'sizes'] as const;
type Section = (typeof SECTIONS)[number];
const ONLY: Section[] | null = (() => {
  const at = process.argv.indexOf('--only');
  if (at < 0) return null;
  const names = (process.argv[at + 1] ?? '').split(',').filter(Boolean);
  const unknown = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length > 0) throw new Error(`--only takes sections from ${SECTIONS.join(', ')}; got '${process.argv[at + 1] ?? ''}'`);
  return names as Section[];
})();
const wanted = (section: Section) => ONLY === null || ONLY.includes(section);

const runStarted = performance.now();

function section(title: string): void {
  console.log(`\n== ${title} [${Math.round((performance.now() - runStarted) / 1000)} s]`);
}

/** Runs `measure` and the service's mean time per pipeline stage over it. */
async function withStageMeans<T>(service: Service, measure: () => Promise<T>): Promise<[T, Record<string, number>]> {
  const before = await service.inferenceTotals();
  const result = await measure();
  return [result, stageMeansMs(before, await service.inferenceTotals())];
}

function bySize<T, V>(items: T[], key: (item: T) => number | string, value: (item: T) => V): Record<string, V> {
  return Object.fromEntries(items.map((item) => [String(key(item)), value(item)]));
}

/** What `measure` returns, and the service's event-loop delay p99 (ms) while it ran. */
async function withLoopDelay<T>(service: Service, measure: () => Promise<T>): Promise<[T, number]> {
  await service.eventLoopDelayP99Ms(); // restarts the service's histogram
  const result = await measure();
  return [result, round2(await service.eventLoopDelayP99Ms())];
}

async function main(): Promise<void> {
  const machineAtStart = machine();
  console.log(`face-recog benchmarks (${QUICK ? 'quick' : 'full'}${ONLY ? `, only ${ONLY.join(', ')}` : ''}): ${machineAtStart.cpus} x ${machineAtStart.model}, load average ${machineAtStart.load_average.join(' ')}`);
  const only: Record<string, unknown> = {};

  let engine: Awaited<ReturnType<typeof benchEngine>> | undefined;
  if (wanted('engine')) {
    section('engine stages and OpenCV DNN (in process)');
    engine = await benchEngine();
    printEngine(engine);
    only.engine = engine;
  }
  let replicas: ReplicasResult | null = null;
  if (wanted('replicas')) {
    section('replicas: three services on one PostgreSQL');
    replicas = await benchReplicas();
    if (replicas) console.log(`a new image recognised by all ${replicas.replicas}: p50 ${replicas.recognised_by_all_ms.p50} ms, slowest ${replicas.recognised_by_all_ms.max} ms; takeover ${replicas.takeover_ms} ms`);
    only.replicas = replicas;
  }
  if (ONLY?.every((name) => name === 'engine' || name === 'replicas')) return writeOnly(only);

  const queryJpeg = await jpegAt(640, 480);
  const query = queryJpeg.toString('base64');
  const queryBody = JSON.stringify({ image: query });
  const eightBody = JSON.stringify({ image: (await eightFaceJpeg()).toString('base64') });
  const photos = await storedPhotos(Math.max(VISITORS + PLAN.reconcileImages, ...PLAN.onTheFly.map((p) => p.visitors)));

  const dataDir = await mkdtemp(join(tmpdir(), 'face-recog-bench-'));
  section(`starting the service; enrolling ${VISITORS} visitors`);
  const started = await serviceWithVisitors(dataDir, photos.slice(0, VISITORS));
  let service = started.service;
  try {
    const database = await service.database();
    const api = (path: string) => `${service.url}/api/v1/${path}`;
    // The service's pipeline in this process, timed in turn with the HTTP recognize; also the guide's on-the-fly service's engine.
    const localEngine = await FaceEngine.load({ dir: MODELS_DIR, offline: true, detector: 'yunet-2023mar', recognizer: RECOGNIZER });

    let http: Omit<BenchResults['http'], 'event_loop_delay_p99_ms'> | undefined;
    const points: SizePoint[] = [];
    if (wanted('http') || wanted('sizes')) {
      section('HTTP latency, 640x480 one-face JPEG and 1280x720 eight-face JPEG');
      const detect = await timeRequests(api('detect'), queryBody, PLAN.requests, expectFaces);
      const extractFeatures = await timeRequests(api('extract-features'), queryBody, PLAN.requests, expectFeatures);
      const [{ recognize: recognize100, pipeline }, stages100] = await withStageMeans(service, () =>
        timeInTurn(PLAN.requests, { recognize: checkedRequest(api('recognize'), queryBody, expectQueryVisitor), pipeline: inProcessPipeline(localEngine, queryJpeg) }),
      );
      const eight100 = await timeRequests(api('recognize'), eightBody, PLAN.requests, expectEightFaces);
      http = { detect, extract_features: extractFeatures, recognize: recognize100, pipeline_in_process_ms: pipeline.p50, gallery_faces: started.faces };
      console.table({ ...http, recognize_8faces: eight100 });
      points.push({ faces: VISITORS, recognize: recognize100, recognize8: eight100, stagesMs: stages100, beside100: null, memory: service.memory(), synthSeconds: null, loadSeconds: null, afterLoad: null });
      only.http = http;
      only.recognize_8faces_100 = eight100;
    }

    const tp: { detect: Throughput[]; recognize: Throughput[] } = { detect: [], recognize: [] };
    let loopDelayMs: number | undefined;
    if (wanted('throughput')) {
      section(`throughput, ${CONCURRENCY.join('/')} clients, ${PLAN.throughputSeconds} s each; the event loop's delay under 16 recognize clients`);
      for (const [endpoint, check] of [['detect', expectFaces], ['recognize', expectQueryVisitor]] as const) {
        for (const c of CONCURRENCY) {
          const [result, delay] = await withLoopDelay(service, () => throughput(api(endpoint), queryBody, c, PLAN.throughputSeconds, check));
          tp[endpoint].push(result);
          if (endpoint === 'recognize' && c === 16) loopDelayMs = delay;
        }
      }
      console.table([...tp.detect.map((t) => ({ endpoint: 'detect', ...t })), ...tp.recognize.map((t) => ({ endpoint: 'recognize', ...t }))]);
      console.log(`event loop delay p99 under 16 recognize clients: ${loopDelayMs} ms`);
      only.throughput = tp;
      only.event_loop_delay_p99_ms = loopDelayMs;
    }

    let crowd: Burst | undefined;
    if (wanted('burst')) {
      section(`burst: ${BURST.clients} clients at once, ${BURST.requestsEach} recognize requests each, Retry-After ignored`);
      crowd = await burst(api('recognize'), queryBody, BURST.clients, BURST.requestsEach, expectQueryVisitor);
      console.log(`${crowd.served} of ${crowd.requests} served (${crowd.servedFraction}), ${crowd.refused} refused, in ${crowd.seconds} s`);
      only.burst = crowd;
    }

    const realtime: RealtimeRate[] = [];
    if (wanted('realtime')) {
      section(`WebSocket, ${CONNECTIONS.join('/')} connections streaming 30 frames/s, ${PLAN.realtimeSeconds} s each`);
      for (const c of CONNECTIONS) realtime.push(await realtimeRate(service.wsUrl, query, c, PLAN.realtimeSeconds));
      console.table(realtime);
      only.realtime = realtime;
    }

    let onTheFly: OnTheFlyPoint[] = [];
    if (wanted('on-the-fly')) {
      section("the guide's on-the-fly design");
      onTheFly = await benchOnTheFly(localEngine, database.db, photos, queryBody, { sizes: PLAN.onTheFly });
      only.on_the_fly = onTheFly;
    }

    let reconcile: (Awaited<ReturnType<typeof reconcileRate>> & { singleStreamMs: number }) | undefined;
    if (wanted('reconcile')) {
      section(`reconcile: ${PLAN.reconcileImages} new images inserted while the service runs`);
      const reconciled = photos.slice(VISITORS, VISITORS + PLAN.reconcileImages);
      // The rate's base: a sample of the same stored photos enrolled one at a time in this process
      // (decode, detect with the quarter turns, embed), just before and just after. Not the 640x480
      // query's pipeline, measured minutes earlier: the stored photos are larger (most 636x636, so
      // YuNet runs on 640x640) and that pipeline drifted from 14.8 to 24.3 ms over three runs while
      // the rate stayed at 40 images/s.
      const sample = reconciled.filter((_, i) => i % RECONCILE_SAMPLE_EVERY === 0).map((p) => Buffer.from(p.base64, 'base64'));
      const oneAtATime = () => {
        let next = 0;
        return timeRuns(sample.length, () => localEngine.enrolImage(sample[next++], DEFAULT_IMAGE_LIMITS), 0);
      };
      const before = await oneAtATime();
      const rate = await reconcileRate(service, database.db, reconciled, VISITORS);
      const times = [...before, ...(await oneAtATime())];
      reconcile = { ...rate, singleStreamMs: round2(times.reduce((sum, t) => sum + t, 0) / times.length) };
      console.log(
        `INSERT of ${reconcile.images} images: ${reconcile.insertSeconds} s; all searchable ${reconcile.seconds} s after its commit: ${reconcile.imagesPerS} images/s; ` +
          `${sample.length} of them enrolled one at a time in process, before and after: ${reconcile.singleStreamMs} ms each`,
      );
      only.reconcile = reconcile;
    }
    await database.close();

    if (wanted('sizes')) {
      // A second service holding the 100 visitors only: each size's requests are timed in turn with
      // the same requests to it, so that the ratio to 100 faces is the gallery's cost, not drift.
      section(`a second service with the ${VISITORS} visitors only, timed in turn with each size`);
      const besideDir = await mkdtemp(join(tmpdir(), 'face-recog-bench-100-'));
      const beside = (await serviceWithVisitors(besideDir, photos.slice(0, VISITORS))).service;
      const besideApi = (path: string) => `${beside.url}/api/v1/${path}`;
      try {
        for (const faces of PLAN.sizes) {
          section(`gallery of ${faces.toLocaleString('en-US')} faces`);
          const growth = await growTo(service, faces);
          service = growth.service;
          console.log(`${growth.added} stored faces written: ${growth.synthSeconds} s; restart to searchable: ${growth.loadSeconds} s`);
          // Kept apart from the timed requests: right after the load the service still works for a
          // few seconds (its first pass over the tables, which calibrates how often to look again;
          // the load's garbage), and at 1,000,000 faces the first 150 requests took 41.2 ms p50
          // against 34.4-36.0 ms in the next two sets (2026-12-04, PostgreSQL 13 ms of CPU per
          // request in them against 0.7).
          const afterLoad = await timeRequests(api('recognize'), queryBody, PLAN.requests, expectQueryVisitor, 0);
          console.log(`first ${PLAN.requests} requests after the load: p50 ${afterLoad.p50} ms, p95 ${afterLoad.p95} ms`);
          const inTurn = (body: string, check: Check) =>
            timeInTurn(PLAN.requests, { size: checkedRequest(api('recognize'), body, check), beside: checkedRequest(besideApi('recognize'), body, check) });
          const [one, stagesMs] = await withStageMeans(service, () => inTurn(queryBody, expectQueryVisitor));
          const eight = await inTurn(eightBody, expectEightFaces);
          points.push({
            faces,
            recognize: one.size,
            recognize8: eight.size,
            stagesMs,
            beside100: { recognize: one.beside, recognize8: eight.beside },
            memory: service.memory(),
            synthSeconds: growth.synthSeconds,
            loadSeconds: growth.loadSeconds,
            afterLoad,
          });
          console.log(
            `recognize p50 ${one.size.p50} ms (100 faces in turn: ${one.beside.p50}), p95 ${one.size.p95} ms; 8 faces p50 ${eight.size.p50} ms (100 faces in turn: ${eight.beside.p50}); RSS ${points.at(-1)!.memory.rssMb} MB`,
          );
        }
      } finally {
        await beside.stop();
        await rm(besideDir, { recursive: true, force: true });
      }
      only.sizes = points;
    }

    if (ONLY) return writeOnly(only);
    if (!engine || !http || !reconcile || !crowd || loopDelayMs === undefined) throw new Error('a full run measures every section');
    const partial: Omit<BenchResults, 'targets'> = {
      generated_by: `npm run bench${QUICK ? ' -- --quick' : ''}`,
      mode: QUICK ? 'quick' : 'full',
      machine: machineAtStart,
      recognizer: RECOGNIZER,
      duration_s: round2((performance.now() - runStarted) / 1000),
      engine: {
        detect_640x480: engine.jpeg_640x480.detect_ms,
        detect_1920x1080: engine.jpeg_1920x1080.detect_ms,
        embed: engine.jpeg_640x480.embed_ms,
        ort_yunet_raw: engine.yunet_640x640_blob.ort_ms,
        opencv_yunet_raw: engine.yunet_640x640_blob.opencv_ms,
        opencv_version: engine.yunet_640x640_blob.opencv,
        detail: engine,
      },
      http: { ...http, event_loop_delay_p99_ms: loopDelayMs },
      throughput_rps: {
        detect: bySize(tp.detect, (t) => `c${t.concurrency}`, (t) => t.rps),
        recognize: bySize(tp.recognize, (t) => `c${t.concurrency}`, (t) => t.rps),
      },
      throughput_detail: tp,
      burst: { served_fraction: crowd.servedFraction, ...crowd },
      replicas,
      realtime_fps: bySize(realtime, (t) => `c${t.connections}`, (t) => t.resultsPerS),
      realtime_detail: realtime,
      gallery: {
        recognize_p50: bySize(points, (p) => p.faces, (p) => p.recognize.p50),
        recognize_p95: bySize(points, (p) => p.faces, (p) => p.recognize.p95),
        recognize_8faces_p50: bySize(points, (p) => p.faces, (p) => p.recognize8.p50),
        rss_mb: bySize(points, (p) => p.faces, (p) => p.memory.rssMb),
        peak_rss_mb: bySize(points, (p) => p.faces, (p) => p.memory.peakMb),
        recognize_stage_ms: bySize(points, (p) => p.faces, (p) => p.stagesMs),
        beside_100: {
          recognize_p50: bySize(points.filter((p) => p.beside100), (p) => p.faces, (p) => p.beside100!.recognize.p50),
          recognize_8faces_p50: bySize(points.filter((p) => p.beside100), (p) => p.faces, (p) => p.beside100!.recognize8.p50),
        },
        synth_s: bySize(points.filter((p) => p.synthSeconds !== null), (p) => p.faces, (p) => p.synthSeconds!),
        load_s: bySize(points.filter((p) => p.loadSeconds !== null), (p) => p.faces, (p) => p.loadSeconds!),
        after_load_p50: bySize(points.filter((p) => p.afterLoad !== null), (p) => p.faces, (p) => p.afterLoad!.p50),
        on_the_fly_p50: bySize(onTheFly, (p) => p.visitors, (p) => p.latency.p50),
        on_the_fly_p95: bySize(onTheFly, (p) => p.visitors, (p) => p.latency.p95),
        on_the_fly_requests: bySize(onTheFly, (p) => p.visitors, (p) => p.latency.n),
        reconcile_images_per_s: reconcile.imagesPerS,
        reconcile: { images: reconcile.images, seconds: reconcile.seconds, insert_seconds: reconcile.insertSeconds, single_stream_ms: reconcile.singleStreamMs },
        stored_max_side: STORED_MAX_SIDE,
      },
    };
    const results: BenchResults = { ...partial, targets: judgeTargets(partial) };
    const outDir = QUICK ? join(RESULTS_DIR, 'tmp') : RESULTS_DIR;
    mkdirSync(outDir, { recursive: true });
    const resultsPath = join(outDir, QUICK ? 'quick.json' : 'latest.json');
    writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
    const markdownPath = QUICK ? join(outDir, 'BENCHMARKS.md') : join(REPO_ROOT, 'BENCHMARKS.md');
    writeReport(results, markdownPath, join(outDir, 'chart.svg'));

    section('headline');
    console.log(headlineTable(results));
    console.log(`\n${targetsTable(results)}`);
    console.log(`\nwrote ${resultsPath}, ${markdownPath} and its chart in ${Math.round(results.duration_s)} s`);
  } finally {
    await service.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** An --only run: its figures, apart from the published results. */
function writeOnly(measured: Record<string, unknown>): void {
  const outDir = join(RESULTS_DIR, 'tmp');
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, 'only.json');
  writeFileSync(path, `${JSON.stringify({ machine: machine(), sections: ONLY, ...measured }, null, 2)}\n`);
  console.log(`\nwrote ${path}`);
}

await main();
