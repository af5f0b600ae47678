// `npm run soak`: the real service driven at saturation on every route and by WebSocket cameras,
// with bursts beyond its queue and a client over its rate limit; every answer checked, RSS and
// event-loop delay sampled over time. The report (markdown, and the same as JSON beside it) says
// what the run did, with which settings, and whether anything unexpected happened or memory grew.
// The pieces: tools/soak/workload.ts (what is sent and what must come back), drivers.ts (how),
// sampler.ts (measurements), report.ts, run.ts.
//
//   npm run soak -- --minutes 10 --report docs/soak/10min.md [--env MALLOC_ARENA_MAX=2 ...]
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderMarkdown, runSoak, type SoakOptions } from './soak/run.js';

/** The shortest run whose warm-up leaves samples after it. */
const MIN_DURATION_S = 20;
const MIN_WARMUP_S = 15;
const MAX_WARMUP_S = 60;

function environment(pairs: string[]): Record<string, string> {
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf('=');
      if (at < 1) throw new Error(`--env ${pair}: expected NAME=value`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '1' },
      report: { type: 'string' },
      'http-workers': { type: 'string', default: '6' },
      'ws-clients': { type: 'string', default: '4' },
      'sample-every': { type: 'string', default: '10' },
      env: { type: 'string', multiple: true, default: [] },
    },
  });
  const serviceEnv = environment(values.env);
  const durationS = Math.round(Number(values.minutes) * 60);
  if (!(durationS >= MIN_DURATION_S)) throw new Error(`--minutes ${values.minutes}: expected at least ${MIN_DURATION_S} seconds' worth`);
  const options: SoakOptions = {
    durationS,
    warmupS: Math.min(MAX_WARMUP_S, Math.max(MIN_WARMUP_S, Math.round(durationS / 5))),
    httpWorkers: Number(values['http-workers']),
    wsClients: Number(values['ws-clients']),
    sampleEveryS: Number(values['sample-every']),
    graceS: durationS,
    serviceEnv,
    log: (line) => process.stderr.write(`${line}\n`),
  };
  const report = await runSoak(options);
  const extra = Object.entries(serviceEnv).map(([k, v]) => `, ${k}=${v}`).join('');
  const markdown = renderMarkdown(report, `Soak: ${values.minutes} minute${Number(values.minutes) === 1 ? '' : 's'}${extra}`);
  if (values.report) {
    const target = resolve(values.report);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, markdown);
    await writeFile(target.replace(/\.md$/, '.json'), `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`report: ${target}\n`);
  } else {
    process.stdout.write(markdown);
  }
  process.exitCode = report.verdict.pass ? 0 : 1;
}

main().catch((error) => {
  process.stderr.write(`soak: ${(error as Error).message}\n`);
  process.exit(2);
});
