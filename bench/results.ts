// The shape of bench/results/latest.json (times in ms, medians unless named), and the targets
// of bench/targets.ts judged from it.
import type { Latency, machine } from './common.js';
import type { Burst, Throughput } from './http.js';
import type { RealtimeRate } from './realtime.js';
import type { ReplicasResult } from './replicas.js';
import type { EngineResult } from './engine.js';
import { TARGETS, type FigureUnit, type TargetSpec } from './targets.js';

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
    /** Decode + detect + embed of the same JPEG in the benchmark's process, p50, timed in turn with those requests. */
    pipeline_in_process_ms: number;
    gallery_faces: number;
    /** The service's event-loop delay p99 (ms) while 16 clients sent recognize requests. */
    event_loop_delay_p99_ms: number;
  };
  throughput_rps: { detect: BySize<number>; recognize: BySize<number> };
  throughput_detail: { detect: Throughput[]; recognize: Throughput[] };
  /** 64 clients at once, 5 recognize requests each, Retry-After ignored. */
  burst: Burst & { served_fraction: number };
  /** Three replicas on one PostgreSQL server; null where none is installed. */
  replicas: ReplicasResult | null;
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
    /** Per size, p50s of a second service holding the 100 visitors only, timed in turn with that size's requests. */
    beside_100: { recognize_p50: BySize<number>; recognize_8faces_p50: BySize<number> };
    /** Seconds taken to write the stored faces added for this size (rows and cached faces, bench/stored-faces.ts). */
    synth_s: BySize<number>;
    /** Seconds from starting the service to every face searchable. */
    load_s: BySize<number>;
    /** p50 of the first recognize requests after that load, before the timed ones (not in recognize_p50). */
    after_load_p50?: BySize<number>;
    on_the_fly_p50: BySize<number>;
    on_the_fly_p95: BySize<number>;
    on_the_fly_requests: BySize<number>;
    reconcile_images_per_s: number;
    /**
     * seconds: from the INSERT's commit to every image searchable; insert_seconds: the INSERT itself;
     * single_stream_ms: the rate's base, mean ms per photo of a sample of the same photos enrolled one
     * at a time in process, just before and after.
     */
    reconcile: { images: number; seconds: number; insert_seconds: number; single_stream_ms: number };
    /** Stored image size: longer side in px. */
    stored_max_side: number;
  };
  targets: Target[];
}

/** A target of bench/targets.ts, judged on one run's figures. */
export interface Target {
  id: string;
  what: string;
  /** The measured figure, as shown. */
  measured: string;
  goal: string;
  /** Null when a figure it needs was not measured (quick run). */
  met: boolean | null;
}

const fmt = (v: number) => v.toLocaleString('en-US', { maximumFractionDigits: v >= 1000 ? 0 : v >= 10 ? 1 : 2 });
const MS_PER_S = 1000;

/** A figure in its unit, as shown. */
function shown(value: number, unit: FigureUnit): string {
  return unit === 'share' ? `${fmt(100 * value)}%` : `${fmt(value)} ${unit}`;
}

/** The number at a dotted path of the results (`gallery.rss_mb.1000000`), or undefined. */
function figureAt(r: object, path: string): number | undefined {
  const value = path.split('.').reduce<unknown>((at, key) => (at !== null && typeof at === 'object' ? (at as Record<string, unknown>)[key] : undefined), r);
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** The value a target holds to its limit, as shown, or undefined when a figure it needs was not measured. */
function valueOf(spec: TargetSpec, r: object): { value: number; measured: string } | undefined {
  const figure = figureAt(r, spec.figure);
  if (figure === undefined) return undefined;
  if (spec.per !== undefined) {
    const per = figureAt(r, spec.per);
    if (per === undefined) return undefined;
    return { value: figure / per, measured: `${shown(figure, spec.unit)} vs ${shown(per, spec.unit)}: ${fmt(figure / per)}x` };
  }
  if (spec.times !== undefined) {
    const timeMs = figureAt(r, spec.times);
    if (timeMs === undefined) return undefined;
    const product = (figure * timeMs) / MS_PER_S;
    return { value: product, measured: `${shown(figure, spec.unit)} x ${fmt(timeMs)} ms = ${fmt(product)}` };
  }
  return { value: figure, measured: shown(figure, spec.unit) };
}

export function judgeTarget(spec: TargetSpec, r: object): Target {
  const limit = spec.atMost ?? spec.atLeast!;
  const limitShown = spec.per !== undefined ? `${fmt(limit)}x` : spec.times !== undefined ? fmt(limit) : shown(limit, spec.unit);
  const goal = `${spec.atMost !== undefined ? '<=' : '>='} ${limitShown}`;
  const judged = valueOf(spec, r);
  if (judged === undefined) return { id: spec.id, what: spec.what, measured: 'not measured', goal, met: null };
  const met = spec.atMost !== undefined ? judged.value <= spec.atMost : judged.value >= limit;
  return { id: spec.id, what: spec.what, measured: judged.measured, goal, met };
}

export function judgeTargets(r: Omit<BenchResults, 'targets'>): Target[] {
  return TARGETS.map((spec) => judgeTarget(spec, r));
}
