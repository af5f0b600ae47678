// The benchmark targets table (bench/targets.ts) as judged (bench/results.ts) and shown
// (bench/report.ts): a figure of the results or a ratio of two, held to a limit; a figure a run
// did not measure is "not measured", never met; the page lists every target and includes the
// hand-written notes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { markdown } from '../../bench/report.js';
import { judgeTarget, type BenchResults } from '../../bench/results.js';
import { TARGETS } from '../../bench/targets.js';
import { REPO_ROOT } from '../helpers/paths.js';

const results = {
  gallery: { recognize_p50: { '100': 30, '1000000': 57 }, rss_mb: { '100': 250 } },
  http: { recognize: { p50: 30 } },
  throughput_rps: { recognize: { c16: 60 } },
  burst: { served_fraction: 0.9 },
};

describe('benchmark targets', () => {
  it('judges a ratio against an upper limit', () => {
    const spec = { id: 'scale', what: 'w', figure: 'gallery.recognize_p50.1000000', per: 'gallery.recognize_p50.100', unit: 'ms' as const, atMost: 2 };
    expect(judgeTarget(spec, results)).toMatchObject({ measured: '57 ms vs 30 ms: 1.9x', goal: '<= 2x', met: true });
    expect(judgeTarget({ ...spec, atMost: 1.5 }, results).met).toBe(false);
  });

  it('judges a plain figure against a lower limit', () => {
    const spec = { id: 'rss', what: 'w', figure: 'gallery.rss_mb.100', unit: 'MB' as const, atLeast: 300 };
    expect(judgeTarget(spec, results)).toMatchObject({ measured: '250 MB', goal: '>= 300 MB', met: false });
  });

  it('judges a rate times a time in ms, a count, against a lower limit', () => {
    const spec = { id: 'throughput', what: 'w', figure: 'throughput_rps.recognize.c16', times: 'http.recognize.p50', unit: '/s' as const, atLeast: 1.5 };
    expect(judgeTarget(spec, results)).toMatchObject({ measured: '60 /s x 30 ms = 1.8', goal: '>= 1.5', met: true });
    expect(judgeTarget({ ...spec, atLeast: 2 }, results).met).toBe(false);
    expect(judgeTarget({ ...spec, times: 'http.detect.p50' }, results)).toMatchObject({ measured: 'not measured', met: null });
  });

  it('shows a share as a percentage', () => {
    const spec = { id: 'burst', what: 'w', figure: 'burst.served_fraction', unit: 'share' as const, atLeast: 0.95 };
    expect(judgeTarget(spec, results)).toMatchObject({ measured: '90%', goal: '>= 95%', met: false });
  });

  it('holds every issue target of the table: ids once each, one limit, at most one other figure', () => {
    const ids = TARGETS.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(['scale', 'on_the_fly', 'opencv', 'rss', 'http_overhead', 'throughput', 'eight_faces', 'reconcile', 'burst', 'event_loop']));
    for (const t of TARGETS) {
      expect((t.atMost === undefined) !== (t.atLeast === undefined), t.id).toBe(true);
      expect(t.per !== undefined && t.times !== undefined, t.id).toBe(false);
    }
  });

  it('calls a figure the run has not got "not measured", neither met nor missed', () => {
    const spec = { id: 'x', what: 'w', figure: 'gallery.rss_mb.1000000', unit: 'MB' as const, atMost: 1536 };
    expect(judgeTarget(spec, results)).toMatchObject({ measured: 'not measured', met: null });
    expect(judgeTarget({ ...spec, figure: 'gallery.recognize_p50.100', per: 'engine.opencv_yunet_raw' }, results).met).toBeNull();
  });

  it('the page lists every target of the table, and the notes without their header comment', () => {
    const saved = JSON.parse(readFileSync(join(REPO_ROOT, 'bench', 'results', 'latest.json'), 'utf8')) as BenchResults;
    const page = markdown(saved, 'chart.svg');
    for (const spec of TARGETS) expect(page).toContain(`| ${spec.id} | ${spec.what} |`);
    const notes = readFileSync(join(REPO_ROOT, 'bench', 'NARRATIVE.md'), 'utf8');
    expect(page).toContain(notes.slice(notes.indexOf('## What profiling changed'), notes.indexOf('## If a target is missed')).trim());
    expect(page).not.toContain('<!--');
  });
});
