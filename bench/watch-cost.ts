// `npx tsx bench/watch-cost.ts [--quick]`: what watching the visitor tables costs the backend's
// database, per mechanism and table size (10,000, 100,000 and 1,000,000 stored image rows), on
// Debian's PostgreSQL started with wal_level=logical. The cost is the CPU time the server's
// processes serving the watcher spent (from /proc: backends and, for logical replication, the
// walsender) per second of an idle window, as a share of one core; each pass's own time is given
// beside it (client wall time, and the server's from EXPLAIN ANALYZE). Prints a table and writes
// bench/results/watch-cost.json.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import pino from 'pino';
import { Database } from '../src/gallery/db.js';
import { listSourceRows, NOTIFY_CHANNEL, scanSource, introspectSources } from '../src/gallery/sources.js';
import { installTriggers, uninstallTriggers } from '../src/gallery/triggers.js';
import { migrate } from '../src/gallery/migrations.js';
import { IDLE_BUDGET, SourceWatcher } from '../src/gallery/watch.js';
import { startPostgresServer, type PostgresServer } from '../test/helpers/postgres-server.js';
import { QUICK, RESULTS_DIR, machine, median, round2, writeResult } from './common.js';

const SIZES = QUICK ? [10_000] : [10_000, 100_000, 1_000_000];
/** Idle seconds measured per mechanism and size. */
const WINDOW_S = QUICK ? 4 : 20;
const POLL_MS = 500;
/** Kernel clock ticks per second (/proc/<pid>/stat counts CPU time in them). */
const TICKS_PER_S = 100;
const DATABASE = 'watch';
const APP = 'watch-cost';
const logger = pino({ level: 'warn' });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** user + system CPU seconds of a process, null once it has exited. */
function cpuSeconds(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return null;
  }
}

interface Mechanism {
  name: string;
  /** Starts watching; resolves once its start-up work (a first listing) is done; returns how to stop. */
  start: () => Promise<() => Promise<void>>;
  /** Idle seconds measured: the service's watcher passes seldom on big tables, so its window spans passes. */
  windowS: number;
}

/** The server processes serving our watchers: their backends and walsenders. */
async function watcherPids(server: PostgresServer): Promise<number[]> {
  const rows = await server.sql<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'face-recog%' OR application_name = $1`,
    [APP],
  );
  return rows.map((r) => r.pid);
}

/** How often the window looks for the watcher's processes: pooled connections come and go. */
const SAMPLE_MS = 250;

async function idleCost(server: PostgresServer, mechanism: Mechanism): Promise<number> {
  const windowS = mechanism.windowS;
  const stop = await mechanism.start();
  try {
    await sleep(1_000);
    // CPU seconds per process: when the window first saw it (0 for one started during the window:
    // its start-up is the watcher's cost too) and when it last did.
    const seen = new Map<number, { first: number; last: number }>();
    const sample = async (starting: boolean) => {
      for (const pid of await watcherPids(server)) {
        const cpu = cpuSeconds(pid);
        if (cpu === null) continue;
        const known = seen.get(pid);
        if (known) known.last = cpu;
        else seen.set(pid, { first: starting ? cpu : 0, last: cpu });
      }
    };
    await sample(true);
    const end = performance.now() + windowS * 1_000;
    while (performance.now() < end) {
      await sleep(SAMPLE_MS);
      await sample(false);
    }
    const spent = [...seen.values()].reduce((sum, { first, last }) => sum + last - first, 0);
    return spent / windowS;
  } finally {
    await stop();
  }
}

/** A plain client that runs `sql` every POLL_MS. */
function polling(url: string, sql: string): Mechanism['start'] {
  return async () => {
    const client = new pg.Client({ connectionString: url, application_name: APP });
    await client.connect();
    let running = true;
    const loop = (async () => {
      while (running) {
        await client.query(sql);
        await sleep(POLL_MS);
      }
    })();
    return async () => {
      running = false;
      await loop;
      await client.end();
    };
  };
}

/** The service's own watcher (watch.ts) in its loop, as the extractor runs it; with the triggers, also LISTENing. */
function serviceWatcher(db: Database): Mechanism['start'] {
  return async () => {
    const watcher = new SourceWatcher(db, POLL_MS, logger);
    let wake: () => void = () => undefined;
    const listener = await db.listen([NOTIFY_CHANNEL], () => {
      watcher.nudge();
      wake();
    }, () => undefined);
    let running = true;
    const first = await watcher.look();
    if (first.kind !== 'nothing') first.done();
    const loop = (async () => {
      while (running) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, watcher.nextLookInMs());
        });
        const work = await watcher.look();
        if (work.kind !== 'nothing') work.done();
      }
    })();
    return async () => {
      running = false;
      wake();
      await loop;
      await listener.close();
    };
  };
}

/** A publication on visitor_images streamed with pgoutput; the walsender decodes every change of the database. */
function logicalReplication(server: PostgresServer): Mechanism['start'] {
  return async () => {
    await server.sql(`CREATE PUBLICATION face_recog_watch FOR TABLE visitor_images`, [], DATABASE);
    await server.sql(`SELECT pg_create_logical_replication_slot('face_recog_watch', 'pgoutput')`, [], DATABASE);
    const service = new LogicalReplicationService(
      { connectionString: server.url({ database: DATABASE }), application_name: APP },
      { acknowledge: { auto: true, timeoutSeconds: 10 } },
    );
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['face_recog_watch'] });
    void service.subscribe(plugin, 'face_recog_watch').catch(() => undefined);
    await sleep(500);
    return async () => {
      await service.stop();
      await sleep(200);
      await server.sql(`SELECT pg_drop_replication_slot('face_recog_watch')`, [], DATABASE);
      await server.sql(`DROP PUBLICATION face_recog_watch`, [], DATABASE);
    };
  };
}

async function grow(server: PostgresServer, to: number): Promise<void> {
  const [{ n }] = await server.sql<{ n: string }>(`SELECT count(*)::text AS n FROM visitor_images`, [], DATABASE);
  // The image column holds a short text: the heap row is as wide as one whose image was moved to
  // TOAST (the 18-byte pointer), which is what a pass reads; the images themselves are never read.
  await server.sql(
    `INSERT INTO visitor_images (visitor_id, "base64Image") SELECT 'v' || i, 'toast-pointer-sized-' || i FROM generate_series($1::int + 1, $2::int) AS i`,
    [Number(n), to],
    DATABASE,
  );
  await server.sql(`VACUUM ANALYZE visitor_images`, [], DATABASE);
}

/** Server time of one pass of the former poll (count + sum(xmin) over the heap), from EXPLAIN ANALYZE. */
async function scanServerMs(server: PostgresServer): Promise<number> {
  const rows = await server.sql<{ 'QUERY PLAN': [{ 'Execution Time': number }] }>(
    `EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*), coalesce(sum(xmin::text::bigint), 0) FROM visitor_images WHERE "base64Image" IS NOT NULL AND visitor_id IS NOT NULL`,
    [],
    DATABASE,
  );
  return rows[0]['QUERY PLAN'][0]['Execution Time'];
}

/** How long after a commit the table's insert counter moves, for a connection that wrote a moment before (statistics are flushed at most once a second per backend). */
async function counterDelayMs(server: PostgresServer): Promise<number> {
  const writer = new pg.Client({ connectionString: server.url({ database: DATABASE }) });
  await writer.connect();
  const counter = async () =>
    Number((await server.sql<{ n: string }>(`SELECT pg_stat_get_tuples_inserted('visitor_images'::regclass)::text AS n`, [], DATABASE))[0].n);
  try {
    await writer.query(`INSERT INTO visitor_images (visitor_id, "base64Image") VALUES ('delay-a', 'x')`);
    await sleep(300);
    const before = await counter();
    await writer.query(`INSERT INTO visitor_images (visitor_id, "base64Image") VALUES ('delay-b', 'x')`);
    const committed = performance.now();
    while ((await counter()) <= before) await sleep(10);
    return performance.now() - committed;
  } finally {
    await writer.query(`DELETE FROM visitor_images WHERE visitor_id LIKE 'delay-%'`);
    await writer.end();
  }
}

async function main(): Promise<void> {
  const server = await startPostgresServer({ wal_level: 'logical', max_replication_slots: '4', max_wal_senders: '4' });
  const results: Record<string, Record<string, number>> = {};
  try {
    await server.createDatabase(DATABASE);
    await server.sql(`CREATE TABLE visitor_images (id serial PRIMARY KEY, visitor_id text NOT NULL, "base64Image" text)`, [], DATABASE);
    const db = new Database(server.url({ database: DATABASE }), logger);
    await migrate(db);
    const counterDelay = await counterDelayMs(server);
    console.log(`insert counter moved ${Math.round(counterDelay)} ms after a commit (writer had written 300 ms before)`);
    const formerPoll = `SELECT count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text FROM visitor_images WHERE "base64Image" IS NOT NULL AND visitor_id IS NOT NULL`;
    const counters = `SELECT pg_stat_get_tuples_inserted(o), pg_stat_get_tuples_updated(o), pg_stat_get_tuples_deleted(o) FROM unnest(ARRAY['visitor_images'::regclass::oid]) AS o`;
    for (const size of SIZES) {
      await grow(server, size);
      const [source] = (await introspectSources(db, db.schema.name)).sources;
      const { window } = await listSourceRows(db, source);
      const passes: number[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        await scanSource(db, source, window.lo);
        passes.push(performance.now() - started);
      }
      // Two idle intervals of the service's watcher (watch.ts: a pass every pass_ms / IDLE_BUDGET), so that its figure counts its passes.
      const watcherWindowS = Math.max(WINDOW_S, Math.ceil((2 * median(passes)) / IDLE_BUDGET / 1_000) + 2);
      const mechanisms: Mechanism[] = [
        { name: 'former poll: count + sum(xmin) every 500 ms', start: polling(server.url({ database: DATABASE }), formerPoll), windowS: WINDOW_S },
        { name: 'write counters every 500 ms', start: polling(server.url({ database: DATABASE }), counters), windowS: WINDOW_S },
        { name: 'default: counters + adaptive pass', start: serviceWatcher(db), windowS: watcherWindowS },
        {
          name: 'triggers (NOTIFY) + adaptive safety-net pass',
          start: async () => {
            await installTriggers(db);
            const stop = await serviceWatcher(db)();
            return async () => {
              await stop();
              await uninstallTriggers(db);
            };
          },
          windowS: watcherWindowS,
        },
        { name: 'logical replication (pgoutput)', start: logicalReplication(server), windowS: WINDOW_S },
      ];
      const row: Record<string, number> = { pass_ms: round2(median(passes)), scan_server_ms: round2(await scanServerMs(server)), watcher_window_s: watcherWindowS };
      for (const mechanism of mechanisms) {
        row[mechanism.name] = round2((await idleCost(server, mechanism)) * 100);
        console.log(`${size} rows, ${mechanism.name}: ${row[mechanism.name]}% of a core`);
      }
      results[String(size)] = row;
    }
    await db.close();
    console.table(results);
    if (QUICK) mkdirSync(join(RESULTS_DIR, 'tmp'), { recursive: true });
    const path = writeResult(QUICK ? 'tmp/watch-cost' : 'watch-cost', {
      generated_by: `npx tsx bench/watch-cost.ts${QUICK ? ' --quick' : ''}`,
      machine: machine(),
      window_s: WINDOW_S,
      idle_budget: IDLE_BUDGET,
      poll_ms: POLL_MS,
      unit: 'percent of one database core while idle (CPU of the server processes serving the watcher); pass_ms: one pass, client wall time; scan_server_ms: the former poll query, EXPLAIN ANALYZE',
      counter_delay_ms: round2(counterDelay),
      sizes: results,
    });
    console.log(`wrote ${path}`);
  } finally {
    await server.destroy();
  }
}

await main();
