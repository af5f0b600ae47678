// The shape of bench/results/latest.json (times in ms, medians unless named), and the issue's
// targets judged from it.
import type { Latency, machine } from './common.js';
import type { Burst, Throughput } from './http.js';
import type { RealtimeRate } from './realtime.js';
import type { EngineResult } from './engine.js';

/** Keyed by gallery size (faces or visitors) or by client count, as JSON object keys. */
export type BySize<T> = Record<string, T>;

export interface BenchResults {
  generated_by: string;
  mode: 'full' | 'quick';
  machine: ReturnType<typeof machine>;
  recognizer: string;
  duration_s: number;
  engine: {
    detect_640x480: number;
    detect_1920x1080: number;
    embed: number;
    /** YuNet forward on the 640x640 blob that OpenCV is given too. */
    ort_yunet_raw: number;
    opencv_yunet_raw: number | null;
    opencv_version: string | null;
    detail: EngineResult;
  };
  /** A 640x480 one-face JPEG, one request at a time, with the 100-visitor gallery. */
  http: {
    detect: Latency;
    extract_features: Latency;
    recognize: Latency;
    gallery_faces: number;
    /** The service's event-loop delay p99 (ms) while 16 clients sent recognize requests. */
    event_loop_delay_p99_ms: number;
  };
  throughput_rps: { detect: BySize<number>; recognize: BySize<number> };
  throughput_detail: { detect: Throughput[]; recognize: Throughput[] };
  /** 64 clients at once, 5 recognize requests each, Retry-After ignored. */
  burst: Burst & { served_fraction: number };
  /** Results per second over all connections, each streaming 30 frames/s. */
  realtime_fps: BySize<number>;
  realtime_detail: RealtimeRate[];
  gallery: {
    recognize_p50: BySize<number>;
    recognize_p95: BySize<number>;
    /** The 1280x720 eight-face JPEG, recognize p50. */
    recognize_8faces_p50: BySize<number>;
    rss_mb: BySize<number>;
    peak_rss_mb: BySize<number>;
    /** Per size, the service's mean ms per pipeline stage during the recognize requests (its /metrics). */
    recognize_stage_ms: BySize<Record<string, number>>;
    /** Seconds `face-recog gallery synth` took to write the synthetic faces added for this size. */
    synth_s: BySize<number>;
    /** Seconds from starting the service to every face searchable. */
    load_s: BySize<number>;
    on_the_fly_p50: BySize<number>;
    on_the_fly_p95: BySize<number>;
    on_the_fly_requests: BySize<number>;
    reconcile_images_per_s: number;
    reconcile: { images: number; seconds: number };
    /** Stored image size: longer side in px. */
    stored_max_side: number;
  };
  targets: Target[];
}

export interface Target {
  id: 'scale' | 'on_the_fly' | 'opencv' | 'rss' | 'http_overhead' | 'throughput' | 'eight_faces' | 'reconcile' | 'burst' | 'event_loop';
  what: string;
  /** The measured figure, as shown. */
  measured: string;
  goal: string;
  /** Null when a figure it needs was not measured (quick run). */
  met: boolean | null;
}

// Issue 16's targets, judged within one run.
const MAX_SCALE = 1.25;
const MIN_OPENCV_SPEEDUP = 3;
const MAX_HTTP_OVERHEAD = 1.25;
const MIN_PARALLEL_GAIN = 1.5;
const MAX_EIGHT_FACES_SCALE = 1.3;
const MIN_RECONCILE_PACE = 1;
const MIN_BURST_SERVED = 0.95;

const fmt = (v: number, digits = 1) => v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

export function judgeTargets(r: Omit<BenchResults, 'targets'>): Target[] {
  const g = r.gallery;
  const at100 = g.recognize_p50['100'];
  const at1m = g.recognize_p50['1000000'];
  const sizesAbove1000 = Object.keys(g.recognize_p50).map(Number).filter((n) => n >= 1000).sort((a, b) => a - b);
  const ours1000 = sizesAbove1000.length ? g.recognize_p50[String(sizesAbove1000[0])] : undefined;
  const guide1000 = g.on_the_fly_p50['1000'];
  const rss1m = g.rss_mb['1000000'];
  const { ort_yunet_raw: ort, opencv_yunet_raw: opencv } = r.engine;
  return [
    {
      id: 'scale',
      what: 'recognize p50 at 1,000,000 faces vs at 100',
      measured: at1m === undefined ? 'not measured' : `${fmt(at1m)} ms vs ${fmt(at100)} ms: ${fmt(at1m / at100, 2)}x`,
      goal: '<= 1.25x',
      met: at1m === undefined ? null : at1m <= MAX_SCALE * at100,
    },
    {
      id: 'on_the_fly',
      what: `recognize p50 at 1,000 visitors: the guide's on-the-fly design vs ours (ours at ${sizesAbove1000[0]?.toLocaleString('en-US') ?? '-'} faces)`,
      measured:
        guide1000 === undefined || ours1000 === undefined
          ? 'not measured'
          : `${fmt(guide1000, 0)} ms vs ${fmt(ours1000)} ms: ${fmt(guide1000 / ours1000, 0)}x faster`,
      goal: '>= 20x faster',
      met: guide1000 === undefined || ours1000 === undefined ? null : guide1000 >= 20 * ours1000,
    },
    {
      id: 'opencv',
      what: 'YuNet forward on the same 640x640 blob: onnxruntime (ours) vs OpenCV DNN',
      measured: opencv === null ? `${fmt(ort, 2)} ms vs not measured` : `${fmt(ort, 2)} ms vs ${fmt(opencv, 2)} ms`,
      goal: `ours >= ${MIN_OPENCV_SPEEDUP}x faster`,
      met: opencv === null ? null : MIN_OPENCV_SPEEDUP * ort <= opencv,
    },
    {
      id: 'rss',
      what: 'service RSS with 1,000,000 faces',
      measured: rss1m === undefined ? 'not measured' : `${rss1m} MB`,
      goal: '<= 1536 MB (1.5 GB)',
      met: rss1m === undefined ? null : rss1m <= 1536,
    },
      ...pipelineTargets(r),
  ];
}

/** Issue 16: the service against its own in-process pipeline, its cores, crowds and many faces. */
function pipelineTargets(r: Omit<BenchResults, 'targets'>): Target[] {
  const inProcess = r.engine.detail.jpeg_640x480.decode_detect_embed_ms;
  const oneClient = r.http.recognize.p50;
  const c16 = r.throughput_rps.recognize.c16;
  const eight = r.gallery.recognize_8faces_p50;
  const reconcile = r.gallery.reconcile_images_per_s;
  const ratio = (v: number) => `${fmt(v, 2)}x`;
  return [
    {
      id: 'http_overhead',
      what: 'recognize p50 over HTTP vs decode + detect + embed in process (640x480)',
      measured: `${fmt(oneClient)} ms vs ${fmt(inProcess)} ms: ${ratio(oneClient / inProcess)}`,
      goal: `<= ${MAX_HTTP_OVERHEAD}x`,
      met: oneClient <= MAX_HTTP_OVERHEAD * inProcess,
    },
    {
      id: 'throughput',
      what: 'recognize throughput at 16 clients x one-client latency (both cores used)',
      measured: `${fmt(c16)} /s x ${fmt(oneClient)} ms = ${fmt((c16 * oneClient) / 1000, 2)}`,
      goal: `>= ${MIN_PARALLEL_GAIN}`,
      met: (c16 * oneClient) / 1000 >= MIN_PARALLEL_GAIN,
    },
    {
      id: 'eight_faces',
      what: 'recognize p50 of one 8-face image at 1,000,000 faces vs at 100',
      measured: eight['1000000'] === undefined ? 'not measured' : `${fmt(eight['1000000'])} ms vs ${fmt(eight['100'])} ms: ${ratio(eight['1000000'] / eight['100'])}`,
      goal: `<= ${MAX_EIGHT_FACES_SCALE}x`,
      met: eight['1000000'] === undefined ? null : eight['1000000'] <= MAX_EIGHT_FACES_SCALE * eight['100'],
    },
    {
      id: 'reconcile',
      what: 'reconcile rate x single-stream pipeline time (decode + detect + embed in process)',
      measured: `${fmt(reconcile)} images/s x ${fmt(inProcess)} ms = ${fmt((reconcile * inProcess) / 1000, 2)}`,
      goal: `>= ${MIN_RECONCILE_PACE}`,
      met: (reconcile * inProcess) / 1000 >= MIN_RECONCILE_PACE,
    },
    {
      id: 'burst',
      what: `a burst of ${r.burst.clients} clients, ${r.burst.requests / r.burst.clients} requests each: share served`,
      measured: `${r.burst.served} of ${r.burst.requests} (${fmt(100 * r.burst.served_fraction)}%)`,
      goal: `>= ${100 * MIN_BURST_SERVED}%`,
      met: r.burst.served_fraction >= MIN_BURST_SERVED,
    },
    {
      id: 'event_loop',
      what: 'event-loop delay p99 under 16 recognize clients vs one-client recognize p50',
      measured: `${fmt(r.http.event_loop_delay_p99_ms, 2)} ms vs ${fmt(oneClient)} ms`,
      goal: '<=',
      met: r.http.event_loop_delay_p99_ms <= oneClient,
    },
  ];
}
