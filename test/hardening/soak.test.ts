// The 30-second soak (tools/soak.ts) as a test: the real service at saturation on every route,
// WebSocket cameras, a burst beyond the queue and a client over its rate limit. It asserts the
// verdict (no unexpected answer, RSS flat after the warm-up, clean exit) and that every kind of
// traffic was answered as designed: correctness and counts, not speed.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { renderMarkdown, runSoak, type SoakReport } from '../../tools/soak.js';
import { REPO_ROOT, fixturesMissing } from '../helpers/fixtures.js';
import { Reliability } from './helpers/reliability.js';

const reliability = new Reliability('soak', 'Overload: the 30-second soak', 'test/hardening/soak.test.ts');
const OPTIONS = { durationS: 30, warmupS: 15, httpWorkers: 6, wsClients: 4, sampleEveryS: 3 };

describe.skipIf(fixturesMissing)('soak', () => {
  let report: SoakReport;
  afterAll(() => reliability.save());

  it('30 seconds at saturation: no unexpected answer, RSS flat after the warm-up, exit 0 on SIGTERM', { timeout: 300_000 }, async () => {
    report = await runSoak(OPTIONS);
    const dir = join(REPO_ROOT, 'test-output', 'soak');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ci-30s.md'), renderMarkdown(report, 'Soak: 30 seconds (test/hardening/soak.test.ts)'));
    await writeFile(join(dir, 'ci-30s.json'), `${JSON.stringify(report, null, 2)}\n`);

    const name = '30 s at saturation: 6 HTTP workers on every route, 4 WebSocket cameras, bursts beyond the queue, a client over its rate limit';
    reliability.record(name, report.verdict.pass ? 'no unexpected answer, RSS flat within 10% of the warm-up, exit 0' : `FAIL: ${report.verdict.reasons.join('; ')}`);
    const eventLoopP99 = Math.max(...report.samples.map((s) => s.eventLoopP99Ms).filter(Number.isFinite));
    reliability.note(
      `Soak: ${report.answered} answers in ${OPTIONS.durationS} s (${Object.entries(report.outcomes).map(([o, n]) => `${o} ${n}`).join(', ')}); RSS highest in the warm-up ${report.rss.baselineMb} MB, after it ${report.rss.maxAfterWarmupMb} MB (${report.rss.growthPct}%); worst event-loop delay p99 ${eventLoopP99} ms. Full report: test-output/soak/ci-30s.md.`,
    );
    expect(report.unexpected.examples).toEqual([]);
    expect(report.verdict.reasons).toEqual([]);
  });

  it('answered every route as designed, the overload answers included', () => {
    const byRoute = new Map(report.routes.map((r) => [r.route, r.outcomes]));
    const answered = (route: string, outcome: string) => byRoute.get(route)?.[outcome] ?? 0;
    const expectations: [string, string][] = [
      ['POST /api/v1/recognize', '200'],
      ['POST /api/v1/detect', '200'],
      ['POST /api/v1/extract-features', '200'],
      ['POST /api/v1/extract', '200'],
      ['POST /api/v1/verify', '200'],
      ['GET /health', '200'],
      ['GET /openapi.json', '200'],
      ['GET /metrics (sampler)', '200'],
      ['POST /api/v1/detect (junk image)', '400 invalid_image'],
      ['POST /api/v1/recognize (truncated JPEG)', '400 invalid_image'],
      ['POST /api/v1/recognize (bad JSON)', '400 invalid_request'],
      ['POST /api/v1/detect (wrong key)', '401 unauthorized'],
      ['GET /api/v2/nothing', '404 not_found'],
      ['WebSocket frame', 'results'],
      ['WebSocket frame', 'error invalid_image'],
      // The designed answers to overload: a burst larger than the queue, a client over its budget.
      ['POST /api/v1/recognize (burst)', '503 overloaded'],
      ['POST /api/v1/detect (client over its rate limit, body not JSON)', '429 rate_limited'],
    ];
    for (const [route, outcome] of expectations) {
      const count = answered(route, outcome);
      reliability.record(`soak traffic: ${route}`, count > 0 ? `answered ${outcome}` : `NEVER ${outcome}`);
      expect(count, `${route} answered ${outcome}`).toBeGreaterThan(0);
    }
  });

  it('docs/reliability.md shows these tallies', () => {
    expect(reliability.differencesFromDoc()).toEqual([]);
  });
});
