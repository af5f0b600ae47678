// The benchmarks' targets, one line each: `npm run bench` judges them (bench/results.ts, into
// bench/results/latest.json) and BENCHMARKS.md lists them (bench/report.ts, which judges the
// saved results again, so a line added here shows on `npm run bench:report` without measuring).
//
// A target is a figure of the results, named by its path in bench/results/latest.json
// (`gallery.rss_mb.1000000`), or that figure over another (`per`), held to `atMost` or `atLeast`.
// A figure a run did not measure (a quick run, a key not written yet) is "not measured".
// Why a target can be missed is written, by hand, in bench/NARRATIVE.md.

export interface TargetSpec {
  id: string;
  what: string;
  /** Path of the figure in the results. */
  figure: string;
  /** Path of the figure it is divided by: the target is then on the ratio. */
  per?: string;
  /** The figures' unit, as shown. */
  unit: 'ms' | 'MB';
  atMost?: number;
  atLeast?: number;
}

export const TARGETS: TargetSpec[] = [
  { id: 'scale', what: 'recognize p50 at 1,000,000 faces over the same at 100', figure: 'gallery.recognize_p50.1000000', per: 'gallery.recognize_p50.100', unit: 'ms', atMost: 2 },
  { id: 'on_the_fly', what: "recognize p50 at 1,000 visitors, the guide's on-the-fly design over ours (at 10,000 faces)", figure: 'gallery.on_the_fly_p50.1000', per: 'gallery.recognize_p50.10000', unit: 'ms', atLeast: 20 },
  { id: 'opencv', what: 'YuNet forward on the same 640x640 blob, onnxruntime (ours) over OpenCV DNN', figure: 'engine.ort_yunet_raw', per: 'engine.opencv_yunet_raw', unit: 'ms', atMost: 1 },
  { id: 'rss', what: 'service RSS with 1,000,000 faces', figure: 'gallery.rss_mb.1000000', unit: 'MB', atMost: 1536 },
];
