// The 30-second soak (tools/soak/) as a test: the real service at saturation on every route,
// WebSocket cameras, bursts beyond the queue and a client over its rate limit. It asserts what
// must hold however loaded the machine is: no unexpected answer, every kind of traffic answered
// as designed (the run goes on past its 30 s until it has been), no error line or key in the log,
// exit 0 on SIGTERM. Memory and latency are the soak's figures: written to test-output/soak/ and
// noted in docs/reliability.md, never asserted here.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderMarkdown, runSoak, type SoakReport } from '../../tools/soak/run.js';
import { DESIGNED_ANSWERS } from '../../tools/soak/workload.js';
import { REPO_ROOT, fixturesMissing } from '../helpers/fixtures.js';
import { Reliability } from './helpers/reliability.js';

const reliability = new Reliability('soak', 'Overload: the 30-second soak', 'test/hardening/soak.test.ts');
const OPTIONS = { durationS: 30, warmupS: 15, httpWorkers: 6, wsClients: 4, sampleEveryS: 3, graceS: 180 };
/** Starting the service and enrolling, the run, the grace past it, and the shutdown. */
const SOAK_TIMEOUT_MS = 480_000;

describe.skipIf(fixturesMissing)('soak', () => {
  let report: SoakReport;
  beforeAll(async () => {
    report = await runSoak(OPTIONS);
    const dir = join(REPO_ROOT, 'test-output', 'soak');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'ci-30s.md'), renderMarkdown(report, 'Soak: 30 seconds (test/hardening/soak.test.ts)'));
    await writeFile(join(dir, 'ci-30s.json'), `${JSON.stringify(report, null, 2)}\n`);
    const eventLoopP99 = Math.max(...report.samples.map((s) => s.eventLoopP99Ms).filter(Number.isFinite));
    const figures =
      `Soak: ${report.answered} answers in ${report.run.ranS} s (${Object.entries(report.outcomes).map(([o, n]) => `${o} ${n}`).join(', ')}); ` +
      `RSS highest in the warm-up ${report.rss.baselineMb} MB, after it ${report.rss.maxAfterWarmupMb} MB (${report.rss.growthPct}%); ` +
      `worst event-loop delay p99 ${eventLoopP99} ms. Full report: test-output/soak/ci-30s.md.`;
    reliability.note(figures);
    console.log(figures);
  }, SOAK_TIMEOUT_MS);
  afterAll((suite) => reliability.finish(suite));

  it('30 seconds at saturation: no unexpected answer, nothing in the log, exit 0 on SIGTERM', () => {
    const name = '30 s at saturation: 6 HTTP workers on every route, 4 WebSocket cameras, bursts beyond the queue, a client over its rate limit';
    reliability.record(name, report.problems.length === 0 ? 'no unexpected answer, no error line or key in the log, exit 0' : `FAIL: ${report.problems.join('; ')}`);
    expect(report.unexpected.examples).toEqual([]);
    expect(report.problems).toEqual([]);
  });

  it('answered every route as designed, the overload answers included', () => {
    const byRoute = new Map(report.routes.map((r) => [r.route, r.outcomes]));
    for (const [route, outcome] of DESIGNED_ANSWERS) {
      const count = byRoute.get(route)?.[outcome] ?? 0;
      reliability.record(`soak traffic: ${route}`, count > 0 ? `answered ${outcome}` : `NEVER ${outcome}`);
      expect(count, `${route} answered ${outcome}`).toBeGreaterThan(0);
    }
  });
});
