// BENCHMARKS.md and its chart, generated from a results file (bench/results/latest.json) and the
// hand-written notes in bench/NARRATIVE.md: figures come from the results only, the targets from
// bench/targets.ts (judged again here, so the page follows the table), the prose about them from
// the notes. `npm run bench:report` rewrites both from the saved results without measuring again.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { DEFAULT_DETECT_SIZE } from '../src/engine/engine.js';
import { latencyChart } from './chart.js';
import { REPO_ROOT, RESULTS_DIR, TURN_BLOCK, WARMUP_RUNS } from './common.js';
import { CAMERA_FPS } from './realtime.js';
import { judgeTargets, type BenchResults, type BySize, type Target } from './results.js';

/** What the integration guide quotes for its own design: the ranges drawn on the chart and named in the tables. */
const GUIDE_SMALL = { visitors: [50, 100] as [number, number], ms: [200, 500] as [number, number] };
const GUIDE_MEDIUM = { visitors: [100, 1000] as [number, number], ms: [500, 2000] as [number, number] };
const NARRATIVE = join(REPO_ROOT, 'bench', 'NARRATIVE.md');
/** The notes' own header comment, which says how to edit them, stays out of the page. */
const NOTES_COMMENT = /^<!--[\s\S]*?-->\s*/;
/** The gallery size the guide's design is compared at. */
const GUIDE_COMPARED_AT = 1000;
/** A stored-image count the page extrapolates the guide's design to. */
const MILLION = 1_000_000;

const n = (v: number) => v.toLocaleString('en-US');
const ms = (v: number | undefined, digits = 1) =>
  v === undefined || v === null ? 'not measured' : `${v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })} ms`;
const sizeKeys = (record: Record<string, unknown>) => Object.keys(record).map(Number).sort((a, b) => a - b);

function table(headers: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

function status(target: Target): string {
  if (target.met === null) return 'not measured';
  return target.met ? '**met**' : '**missed**';
}

const quoted = (range: [number, number]) => `quoted ${n(range[0])}-${n(range[1])} ms`;
const measured = (v: number | undefined) => (v === undefined ? 'not measured' : `measured ${ms(v, 0)}`);

export function headlineTable(r: BenchResults): string {
  const g = r.gallery;
  const sizes = sizeKeys(g.recognize_p50);
  const oursAtGuideSize = sizes.find((s) => s >= GUIDE_COMPARED_AT);
  const largest = sizes[sizes.length - 1];
  const rows: string[][] = [
    ['recognize p50, 100 visitors (HTTP, 640x480 JPEG)', ms(g.recognize_p50['100']), `${quoted(GUIDE_SMALL.ms)}; ${measured(g.on_the_fly_p50['100'])}`],
    [
      `**recognize p50, ${n(GUIDE_COMPARED_AT)} visitors**`,
      oursAtGuideSize === undefined ? 'not measured' : `${ms(g.recognize_p50[String(oursAtGuideSize)])} (at ${n(oursAtGuideSize)} faces)`,
      `${quoted(GUIDE_MEDIUM.ms)}; ${measured(g.on_the_fly_p50[String(GUIDE_COMPARED_AT)])}`,
    ],
    [`**recognize p50, ${n(largest)} faces**`, `${ms(g.recognize_p50[String(largest)])} (p95 ${ms(g.recognize_p95[String(largest)])})`, 'guide: "consider caching features"'],
    ['**YuNet forward, same 640x640 blob**', `onnxruntime ${ms(r.engine.ort_yunet_raw, 2)}`, `OpenCV ${r.engine.opencv_version ?? ''} DNN ${ms(r.engine.opencv_yunet_raw ?? undefined, 2)}`],
    [`**service RSS, ${n(largest)} faces**`, `${g.rss_mb[String(largest)]} MB (peak ${g.peak_rss_mb[String(largest)]} MB)`, '-'],
    ['detect / extract-features p50 (HTTP)', `${ms(r.http.detect.p50)} / ${ms(r.http.extract_features.p50)}`, '-'],
    [
      'throughput, 1 / 4 / 16 clients (req/s)',
      `detect ${['c1', 'c4', 'c16'].map((c) => r.throughput_rps.detect[c]).join(' / ')}; recognize ${['c1', 'c4', 'c16'].map((c) => r.throughput_rps.recognize[c]).join(' / ')}`,
      '-',
    ],
    ['WebSocket results/s, 1 / 4 connections', `${r.realtime_fps.c1} / ${r.realtime_fps.c4}`, '-'],
    [`reconcile ${n(g.reconcile.images)} new images`, `${g.reconcile_images_per_s} images/s (${g.reconcile.seconds} s)`, 'no reconcile: every request re-extracts every image'],
  ];
  return table(['', 'ours', "guide's design / OpenCV"], rows);
}

/** Every target of bench/targets.ts, judged on these results. */
export function targetsTable(r: BenchResults): string {
  const targets = judgeTargets(r);
  const rows = targets.map((t) => [t.id, t.what, t.goal, t.measured, status(t)]);
  const missed = targets.filter((t) => t.met === false).map((t) => t.id);
  return [
    table(['target', 'what', 'goal', 'measured', 'result'], rows),
    '',
    missed.length === 0 ? 'Every target measured in this run was met.' : `Missed in this run: ${missed.join(', ')}; "If a target is missed" below says what to look at.`,
  ].join('\n');
}

function engineSection(r: BenchResults): string {
  const d = r.engine.detail;
  const rows = [d.jpeg_640x480, d.jpeg_1920x1080].map((s) => [
    `JPEG ${s.size}`,
    s.decode_ms,
    s.detect_ms,
    `${s.ort_yunet_raw_ms} (${s.detect_input})`,
    s.align_ms,
    s.embed_ms,
    s.decode_detect_embed_ms,
  ]);
  const b = d.yunet_640x640_blob;
  return [
    `In-process, median ms over ${d.runs} runs. "detect" is the whole call (resize to the ${DEFAULT_DETECT_SIZE} px detection size, blob, network, decode, NMS); "ORT raw" is the network alone on its input blob.`,
    '',
    table(['image', 'decode', 'detect', 'ORT YuNet raw (input)', 'align', 'embed', 'decode+detect+embed'], rows),
    '',
    `YuNet on the same 640x640 blob (written once, read by both): onnxruntime-node ${b.ort_ms} ms, OpenCV ${b.opencv ?? '-'} DNN (Debian python3-opencv, its default threads) ${b.opencv_ms ?? 'not measured'} ms` +
      (b.ort_over_opencv ? `: onnxruntime takes ${b.ort_over_opencv}x OpenCV's time.` : '.'),
  ].join('\n');
}

function httpSection(r: BenchResults): string {
  const { http } = r;
  const rows = (['detect', 'extract_features', 'recognize'] as const).map((k) => [`POST /api/v1/${k.replace('_', '-')}`, http[k].p50, http[k].p95, http[k].n]);
  const tp = (['detect', 'recognize'] as const).flatMap((endpoint) =>
    r.throughput_detail[endpoint].map((t) => [endpoint, t.concurrency, t.rps, t.ok, t.status429, t.status503, t.seconds]),
  );
  return [
    `One 640x480 one-face JPEG (${http.gallery_faces} visitors enrolled), one request at a time, after ${WARMUP_RUNS} unmeasured ones; ms. ` +
      `The recognize requests alternate, ${TURN_BLOCK} at a time after an unmeasured one, with the same decode + detect + embed in the benchmark's process: ${http.pipeline_in_process_ms ?? '-'} ms (the base of http_overhead).`,
    '',
    table(['request', 'p50', 'p95', 'requests'], rows),
    '',
    '### Throughput',
    '',
    'Each client sends its next request as soon as the previous one is answered; answers completed within the window are counted. ' +
      '429 and 503 are counted apart from successes.',
    '',
    table(['endpoint', 'clients', 'answers/s', 'answers', '429', '503', 'window s'], tp),
  ].join('\n');
}

function replicasSection(r: BenchResults): string {
  const rep = r.replicas;
  if (!rep) return 'Not measured (no PostgreSQL server installed for bench/replicas.ts).';
  const recognised = rep.recognised_by_all_ms;
  return [
    `${rep.replicas} services on one PostgreSQL server (Debian's, the README's narrow role), as replicas behind a load balancer. ` +
      `${recognised.n} new stored images are inserted one at a time; each is timed from its commit until every replica's /health counts its face, ` +
      'and then recognised by every replica. The idle extractor is then killed (SIGKILL), timed until another replica holds its lease.',
    '',
    table(['recognised by all, p50', 'p95', 'slowest', 'takeover after SIGKILL'], [[recognised.p50, recognised.p95, recognised.max, rep.takeover_ms]]),
  ].join('\n');
}

function realtimeSection(r: BenchResults): string {
  const rows = r.realtime_detail.map((t) => [t.connections, t.sentPerS, t.resultsPerS, t.droppedPerS, t.latencyP50Ms, t.seconds]);
  return [
    `Each connection streams the 640x480 JPEG as a camera would, ${CAMERA_FPS} frames/s, without waiting for answers; the service answers ` +
      'the newest waiting frame and reports skipped ones as dropped. Results/s is what the cameras get in total.',
    '',
    table(['connections', 'frames sent/s', 'results/s', 'dropped/s', 'latency_ms p50 (service-reported)', 'window s'], rows),
  ].join('\n');
}

function gallerySection(r: BenchResults): string {
  const g = r.gallery;
  const rows = sizeKeys(g.recognize_p50).map((size) => {
    const k = String(size);
    const stages = g.recognize_stage_ms?.[k];
    const stage = (name: string) => stages?.[name]?.toFixed(1) ?? '-';
    const beside = (figure: BySize<number> | undefined) => figure?.[k] ?? '-';
    return [n(size), g.recognize_p50[k], g.recognize_p95[k], beside(g.beside_100?.recognize_p50), g.recognize_8faces_p50[k] ?? '-', beside(g.beside_100?.recognize_8faces_p50), stage('decode'), stage('detect'), stage('embed'), stage('search'), g.rss_mb[k], g.peak_rss_mb[k], g.synth_s[k] ?? '-', g.load_s[k] ?? '-', g.after_load_p50?.[k] ?? '-'];
  });
  return [
    `Recognize over HTTP (the same 640x480 JPEG, p50/p95 ms) as the gallery grows. The first ${n(100)} faces are real visitors (test photos ` +
      `stored as JPEG, longer side <= ${g.stored_max_side} px, in \`visitors\`); the ${n(g.reconcile.images)} reconciled images join them; beyond that the ` +
      'gallery is filled with stored faces (bench/stored-faces.ts: rows in `visitor_images`, each with its cached face, a random unit vector) and the service is restarted to load them. ' +
      'RSS is the service process (VmRSS, and VmHWM as the peak) after the timed requests; PostgreSQL runs in its own processes and is not counted. ' +
      '"store s" is the time to write the added rows and their cached faces, "load s" the time from starting the service to every face searchable, ' +
      '"p50 after load" that of the first requests after it, which are not timed with the rest: the service is still busy for a few seconds then (its first pass over the tables, the load\'s garbage). ' +
      'The stage columns are the service\'s own mean times per recognize request (from its /metrics), so they show where the time goes as the gallery grows. ' +
      `From ${n(10000)} faces on, a second service holding the ${n(100)} visitors only answers the same requests in turn with each size's, ${TURN_BLOCK} in a row after an unmeasured one ("100 in turn"): ` +
      'the machine\'s speed drifts over the minutes between sizes, and the scale targets divide by that figure.',
    '',
    table(['faces', 'recognize p50', 'p95', '100 in turn', '8 faces p50', '8 faces, 100 in turn', 'decode', 'detect', 'embed', 'search', 'RSS MB', 'peak RSS MB', 'store s', 'load s', 'p50 after load'], rows),
    ...rssPerFace(r),
  ].join('\n');
}

/** RSS per face added between the smallest and the largest gallery of the run. */
function rssPerFace(r: BenchResults): string[] {
  const sizes = sizeKeys(r.gallery.rss_mb);
  const [smallest, largest] = [sizes[0], sizes[sizes.length - 1]];
  if (sizes.length < 2) return [];
  const bytes = ((r.gallery.rss_mb[String(largest)] - r.gallery.rss_mb[String(smallest)]) * 2 ** 20) / (largest - smallest);
  return ['', `RSS per face added from ${n(smallest)} to ${n(largest)} faces: about ${n(Math.round(bytes))} bytes.`];
}

function onTheFlySection(r: BenchResults): string {
  const g = r.gallery;
  const rows = sizeKeys(g.on_the_fly_p50).map((v) => [n(v), g.on_the_fly_p50[String(v)], g.on_the_fly_p95[String(v)], g.on_the_fly_requests[String(v)]]);
  const atGuideSize = g.on_the_fly_p50[String(GUIDE_COMPARED_AT)];
  const perImage = atGuideSize !== undefined ? atGuideSize / GUIDE_COMPARED_AT : g.on_the_fly_p50['100'] / 100;
  const withinMs = GUIDE_SMALL.ms[1];
  return [
    "The guide's design, implemented faithfully for this comparison only (`bench/on-the-fly.ts`): each recognize request runs the guide's " +
      'SELECT on `visitors` and `visitor_images`, then decodes, detects and embeds every stored image one after another with the same engine ' +
      'and models, and answers with the most similar visitor. It is served over HTTP from the benchmark process, against its own database ' +
      'in the same PostgreSQL, holding the same stored photos (one per visitor).',
    '',
    table(['visitors', 'recognize p50 ms', 'p95 ms', 'requests timed'], rows),
    '',
    `That is about ${perImage.toFixed(0)} ms per stored image, and the cost grows linearly with the images stored: ${n(MILLION)} visitors ` +
      `would take about ${((perImage * MILLION) / 3_600_000).toFixed(1)} hours per request (extrapolated, not measured). The guide ` +
      `${quoted(GUIDE_SMALL.ms)} under ${n(GUIDE_SMALL.visitors[1])} visitors and ${n(GUIDE_MEDIUM.ms[0])}-${n(GUIDE_MEDIUM.ms[1])} ms at ` +
      `${n(GUIDE_MEDIUM.visitors[0])}-${n(GUIDE_MEDIUM.visitors[1])}; on this machine its design stays within ${withinMs} ms only up to about ` +
      `${Math.floor(withinMs / perImage)} stored images.`,
    ...(atGuideSize === undefined
      ? ['', `${n(GUIDE_COMPARED_AT)} visitors not measured in this run (one request would take about ${Math.round((perImage * GUIDE_COMPARED_AT) / 1000)} s).`]
      : []),
    '',
    '### Reconcile',
    '',
    `${n(g.reconcile.images)} new distinct images inserted into \`visitor_images\` in one statement while the service ran; no call told it. ` +
      `Every one was searchable ${g.reconcile.seconds} s after the INSERT committed: **${g.reconcile_images_per_s} images/s** ` +
      '(each image read, decoded, detected, embedded and saved to the feature cache). ' +
      `The INSERT itself, the backend's write, took ${g.reconcile.insert_seconds} s more; nothing of it is visible to the service before it commits. ` +
      (g.reconcile.single_stream_ms === undefined ? '' : `A sample of the same photos enrolled one at a time in process, just before and after, took ${g.reconcile.single_stream_ms} ms each (the reconcile target's base).`),
  ].join('\n');
}

export function chartSvg(r: BenchResults): string {
  const g = r.gallery;
  const points = (record: Record<string, number>) => sizeKeys(record).map((s) => [s, record[String(s)]] as [number, number]);
  return latencyChart(
    'Recognize latency against gallery size',
    [
      { label: 'ours, p50', colour: '#1f77b4', points: points(g.recognize_p50) },
      { label: 'ours, p95', colour: '#1f77b4', dashed: true, points: points(g.recognize_p95) },
      { label: "guide's on-the-fly design, measured p50", colour: '#d62728', points: points(g.on_the_fly_p50) },
    ],
    [
      { label: 'guide quotes <100 visitors', x: GUIDE_SMALL.visitors, y: GUIDE_SMALL.ms },
      { label: 'guide quotes 100-1,000 visitors', x: GUIDE_MEDIUM.visitors, y: GUIDE_MEDIUM.ms },
    ],
  );
}

/** The hand-written notes (bench/NARRATIVE.md), without their header comment. */
function notes(): string {
  return readFileSync(NARRATIVE, 'utf8').replace(NOTES_COMMENT, '').trim();
}

export function markdown(r: BenchResults, chartLink: string): string {
  const m = r.machine;
  return `# Benchmarks

_Generated by \`npm run bench\` from \`bench/results/latest.json\`, the targets of \`bench/targets.ts\` and the hand-written notes of
\`bench/NARRATIVE.md\` (the last sections); do not edit by hand. Measure again with \`npm run bench\` (\`npm run bench -- --quick\` is a
short check that leaves this page alone), or rewrite this page from the saved results and the notes with \`npm run bench:report\`._

${r.mode === 'quick' ? '**Quick run: fewer requests and sizes; not the published figures.**\n\n' : ''}Machine: ${m.cpus} x ${m.model}, Node ${m.node}, ${m.date.slice(0, 16).replace('T', ' ')} UTC; load average ${m.load_average.join(' / ')} when the run started; the whole run took ${Math.round(r.duration_s / 60)} min.
Models: YuNet 2023mar detector; recognizer **${r.recognizer}** (see "About these figures" below).
Everything below comes from one run, section after section, on the same machine. The service runs as \`npm start\` runs it (\`node dist/server/main.js\`, default settings, an embedded PostgreSQL under a temporary DATA_DIR) in its own process; clients run in the benchmark process. Medians unless named; ms unless named.

## Headline

${headlineTable(r)}

![Recognize latency against gallery size](${chartLink})

## Targets

${targetsTable(r)}

## Engine stages

${engineSection(r)}

## HTTP

${httpSection(r)}

## Replicas

${replicasSection(r)}

## WebSocket

${realtimeSection(r)}

## Gallery at scale

${gallerySection(r)}

## The guide's on-the-fly design

${onTheFlySection(r)}

${notes()}
`;
}

/** Writes the page and its chart; the page links the chart relative to itself. */
export function writeReport(r: BenchResults, markdownPath: string, chartPath: string): void {
  writeFileSync(chartPath, chartSvg(r));
  writeFileSync(markdownPath, markdown(r, relative(dirname(markdownPath), chartPath)));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const results = JSON.parse(readFileSync(join(RESULTS_DIR, 'latest.json'), 'utf8')) as BenchResults;
  writeReport(results, join(REPO_ROOT, 'BENCHMARKS.md'), join(RESULTS_DIR, 'chart.svg'));
  console.log('wrote BENCHMARKS.md and bench/results/chart.svg');
}
