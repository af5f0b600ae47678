// The soak's report: what the run did (its settings as used, recorded in the report itself),
// every answer by route and outcome with latencies, memory and event-loop delay over time, and
// the verdict. renderMarkdown reads only the report, so an old report renders as it ran.
import { percentile } from '../../bench/common.js';
import type { DriverSettings } from './drivers.js';
import type { Sample } from './sampler.js';
import type { Tally } from './workload.js';

export interface RouteSummary {
  route: string;
  count: number;
  outcomes: Record<string, number>;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface SoakReport {
  startedAt: string;
  /** The commit the service ran from, and whether src/ had uncommitted changes. */
  code: string;
  /** How the run was set up, as used. */
  run: {
    durationS: number;
    /** How long it really ran: past durationS while a designed answer was still missing. */
    ranS: number;
    warmupS: number;
    httpWorkers: number;
    wsClients: number;
    sampleEveryS: number;
    visitors: number;
    drivers: DriverSettings;
  };
  /** The service's settings as it read them (defaults included), and what was added to its environment. */
  service: { settings: Record<string, string | number>; extraEnv: Record<string, string> };
  answered: number;
  routes: RouteSummary[];
  /** Answers by status and code over every route, WebSocket included. */
  outcomes: Record<string, number>;
  unexpected: { count: number; examples: string[] };
  /** Designed answers (workload.ts DESIGNED_ANSWERS) never seen. */
  missing: string[];
  samples: Sample[];
  /** baselineMb: the highest RSS of the warm-up; growthPct: the highest after it, relative to that. */
  rss: { baselineMb: number; maxAfterWarmupMb: number; lastMb: number; growthPct: number; limitPct: number; flat: boolean };
  serviceLog: { errorLines: number; keyLeaks: number };
  exitCode: number | null;
  /** Wrong answers, designed answers missing, log or exit problems: everything but memory. */
  problems: string[];
  verdict: { pass: boolean; reasons: string[] };
}

const round = (v: number | undefined) => (v === undefined ? NaN : Math.round(v));

export function summarise(tally: Tally): RouteSummary[] {
  return [...tally.outcomes.entries()].map(([route, outcomes]) => {
    const latencies = tally.latencies.get(route) ?? [];
    const at = (q: number) => (latencies.length ? round(percentile(latencies, q)) : NaN);
    return {
      route,
      count: [...outcomes.values()].reduce((a, b) => a + b, 0),
      outcomes: Object.fromEntries([...outcomes.entries()].sort(([, a], [, b]) => b - a)),
      p50Ms: at(0.5),
      p90Ms: at(0.9),
      p99Ms: at(0.99),
      maxMs: latencies.length ? Math.round(Math.max(...latencies)) : NaN,
    };
  });
}

/**
 * Samples are taken after a full garbage collection. The warm-up's level is its highest sample;
 * after the warm-up, no sample may exceed it by more than `limitPct`.
 */
export function rssVerdict(samples: Sample[], warmupS: number, limitPct: number): SoakReport['rss'] {
  const during = samples.filter((s) => s.atS < warmupS);
  const after = samples.filter((s) => s.atS >= warmupS);
  const baselineMb = Math.max(...during.map((s) => s.rssMb));
  const maxAfterWarmupMb = Math.max(...after.map((s) => s.rssMb));
  const growthPct = Math.round(((maxAfterWarmupMb - baselineMb) / baselineMb) * 1000) / 10;
  const flat = during.length > 0 && after.length >= 2 && growthPct <= limitPct;
  return { baselineMb, maxAfterWarmupMb, lastMb: after.at(-1)?.rssMb ?? NaN, growthPct, limitPct, flat };
}

// Missing values are NaN in a run and null once read back from its JSON.
const cell = (v: number | null) => (v === null || Number.isNaN(v) ? '-' : String(v));
const pairs = (record: Record<string, string | number>) => Object.entries(record).map(([k, v]) => `${k}=${v}`).join(' ');

export function renderMarkdown(report: SoakReport, title: string): string {
  const { run, rss } = report;
  const d = run.drivers;
  const extra = Object.keys(report.service.extraEnv).length ? `; added to its environment: ${pairs(report.service.extraEnv)}` : '';
  const lines = [
    `# ${title}`,
    '',
    `Run ${report.startedAt} on commit ${report.code} by \`npm run soak\` (tools/soak.ts): ${run.durationS} s` +
      `${run.ranS > run.durationS ? ` (ran ${run.ranS} s, until every designed answer had been seen)` : ''}, warm-up ${run.warmupS} s, ` +
      `${run.httpWorkers} HTTP workers, ${run.wsClients} WebSocket cameras (a frame every ${d.frameEveryMs} ms, every ${d.junkFrameEvery}th one junk and sent alone), ` +
      `a burst of ${d.burstSize} recognize requests at ${d.firstBurstS} s and then every ${d.burstEveryS} s, ` +
      `one client over its rate limit (sending ${d.noisyOverBudget}x its budget of ${d.rateLimitPerMinute} requests per minute).`,
    `The service ran as \`npm start\` does, in its own process, with the embedded PostgreSQL and ${run.visitors} enrolled visitors; its settings: ${pairs(report.service.settings)}${extra}.`,
    'Every answer was checked: status and code, and for 200s the content (recognised visitors, face counts, match or not). 503 overloaded / timeout (with Retry-After) and 429 for the client over its limit are the designed answers to overload.',
    '',
    `## Verdict: ${report.verdict.pass ? 'PASS' : 'FAIL'}`,
    '',
    ...(report.verdict.pass
      ? ['No unexpected answer, every designed answer seen, no server fault, RSS flat after the warm-up, clean exit on SIGTERM.']
      : report.verdict.reasons.map((r) => `- ${r}`)),
    '',
    `- Answers: ${report.answered} (${Math.round(report.answered / run.ranS)} per second), unexpected: ${report.unexpected.count}`,
    `- RSS: highest during the warm-up ${rss.baselineMb} MB, highest after it ${rss.maxAfterWarmupMb} MB (${rss.growthPct >= 0 ? '+' : ''}${rss.growthPct}%, limit +${rss.limitPct}%), last ${rss.lastMb} MB`,
    `- Service log: ${report.serviceLog.errorLines} error lines, ${report.serviceLog.keyLeaks} lines with a key; exit code on SIGTERM: ${report.exitCode}`,
    ...(report.unexpected.examples.length ? ['', `Unexpected answers (first ${report.unexpected.examples.length}):`, '', ...report.unexpected.examples.map((e) => `- ${e}`)] : []),
    '',
    '## Answers by status and code',
    '',
    '| answer | count |',
    '|---|---|',
    ...Object.entries(report.outcomes).map(([o, n]) => `| ${o} | ${n} |`),
    '',
    '## Latency per route (ms, answers that succeeded)',
    '',
    '| route | answers | outcomes | p50 | p90 | p99 | max |',
    '|---|---|---|---|---|---|---|',
    ...report.routes.map(
      (r) => `| ${r.route} | ${r.count} | ${Object.entries(r.outcomes).map(([o, n]) => `${o} ×${n}`).join(', ')} | ${cell(r.p50Ms)} | ${cell(r.p90Ms)} | ${cell(r.p99Ms)} | ${cell(r.maxMs)} |`,
    ),
    '',
    'WebSocket latency is from sending a frame to its results; dropped frames were replaced by a newer one while one was processed.',
    '',
    '## RSS and event-loop delay over time',
    '',
    "RSS and heap are sampled right after a full garbage collection (through the service's local inspector); event-loop delay covers the time since the previous sample.",
    '',
    '| t (s) | RSS (MB) | JS heap used (MB) | event-loop delay p99 (ms) | max (ms) | answers so far |',
    '|---|---|---|---|---|---|',
    ...report.samples.map((s) => `| ${s.atS}${s.atS < run.warmupS ? ' (warm-up)' : ''} | ${s.rssMb} | ${cell(s.heapUsedMb)} | ${cell(s.eventLoopP99Ms)} | ${cell(s.eventLoopMaxMs)} | ${s.answered} |`),
    '',
  ];
  return lines.join('\n');
}
